// A llama2.c model's KL as an objective of its input-embedding table, with the gradient that
// `--tune-kl` descends (tools/quant/tune.ts): the mean KL(original ‖ modified) of next-token
// distributions on a calibration text sampled from the model with other seeds than the evaluation
// text `carvq ppl` and the report measure, so nothing is tuned on the text it is judged on. Its
// curvature (`--kl-encode`) is the Fisher estimated on the same calibration text.
import { klGradient } from "../llama2c/backward.ts";
import { embeddingFisher, embeddingFisherParallel, regularizedCurvature } from "../llama2c/fisher.ts";
import type { Llama2cModel } from "../llama2c/model.ts";
import { CALIBRATION_SAMPLE_OPTIONS, type SampleOptions } from "../llama2c/sample.ts";
import type { RowMetric, TableObjective } from "../quant/objective.ts";
import { evaluatePerplexity, originalEvaluation } from "./perplexity.ts";

/** The tuning text: 64 sequences of 300 tokens (19,200 positions), 8 sequences a batch. */
export const TUNING_TEXT: Partial<SampleOptions> = { sequences: 64 };
const SEQUENCES_PER_BATCH = 8;
/** The curvature's cotangent draws per calibration sequence, and their seed. */
const FISHER_SAMPLES = 8;
const FISHER_SEED = 20261123;

/** The KL objective on the calibration text (`text` overrides its sampling, e.g. a shorter text in tests). */
export function calibrationKlObjective(model: Llama2cModel, text: Partial<SampleOptions> = TUNING_TEXT): TableObjective {
  const options = { ...CALIBRATION_SAMPLE_OPTIONS, ...text };
  const { sequences, logProbs } = originalEvaluation(model, options);
  const batches = Math.ceil(sequences.length / SEQUENCES_PER_BATCH);
  let curvature: RowMetric | undefined; // estimated once per objective: a report's runs share it
  const fisherOptions = { samples: FISHER_SAMPLES, seed: FISHER_SEED };
  return {
    name: "kl",
    batches,
    evaluate(table, batch) {
      const from = (batch % batches) * SEQUENCES_PER_BATCH;
      const { kl, gradient } = klGradient(
        model,
        table,
        sequences.slice(from, from + SEQUENCES_PER_BATCH),
        logProbs.slice(from, from + SEQUENCES_PER_BATCH),
      );
      return { loss: kl, gradient };
    },
    loss: (table) => evaluatePerplexity(model, table, options).kl,
    curvature: (onProgress) =>
      (curvature ??= regularizedCurvature(embeddingFisher(model, options, { ...fisherOptions, onSequence: onProgress }))),
    async prepareCurvature(threads, onProgress) {
      curvature ??= regularizedCurvature(
        await embeddingFisherParallel(model, options, threads, { ...fisherOptions, onSequence: onProgress }),
      );
    },
  };
}
