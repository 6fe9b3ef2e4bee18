// The score auto-configuration ranks its finalists by when the table belongs to a model it can run.
import { evaluatePerplexity } from "../eval/perplexity.ts";
import { loadLlama2cModel, type Llama2cModel } from "../llama2c/model.ts";
import { CALIBRATION_SAMPLE_OPTIONS } from "../llama2c/sample.ts";
import type { Matrix } from "../matrix.ts";

/**
 * For a llama2.c model: the mean KL of its next-token distributions with a decoded table as its
 * input embedding (tools/eval/perplexity.ts), the score auto-configuration ranks finalists by, on
 * the calibration text (never the evaluation text `carvq ppl` reports on).
 */
export function klScore(model: Llama2cModel): { name: string; of: (decoded: Matrix) => number } {
  return { name: "kl", of: (decoded) => evaluatePerplexity(model, decoded, CALIBRATION_SAMPLE_OPTIONS).kl };
}

/** klScore of the model at `path` when it is a llama2.c checkpoint, else nothing. */
export function modelScore(format: string, path: string): { name: string; of: (decoded: Matrix) => number } | undefined {
  return format === "llama2c" ? klScore(loadLlama2cModel(path)) : undefined;
}
