// A llama2.c model's KL as an objective of its input-embedding table, with the gradient that
// `--tune-kl` descends (tools/quant/tune.ts): the mean KL(original ‖ modified) of next-token
// distributions on the calibration text, never on the evaluation text `carvq ppl` reports.
import { klGradient } from "../llama2c/backward.ts";
import type { Llama2cModel } from "../llama2c/model.ts";
import { CALIBRATION_SAMPLE_OPTIONS, type SampleOptions } from "../llama2c/sample.ts";
import type { TableObjective } from "../quant/tune.ts";
import { originalEvaluation } from "./perplexity.ts";

/** The KL objective on the calibration text (`text` overrides its sampling, e.g. a shorter text in tests). */
export function calibrationKlObjective(model: Llama2cModel, text: Partial<SampleOptions> = {}): TableObjective {
  const { sequences, logProbs } = originalEvaluation(model, { ...CALIBRATION_SAMPLE_OPTIONS, ...text });
  return {
    name: "kl",
    evaluate(table) {
      const { kl, gradient } = klGradient(model, table, sequences, logProbs);
      return { loss: kl, gradient };
    },
  };
}
