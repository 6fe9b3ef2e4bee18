// How much each input-embedding row's error costs in the model's KL, as a quadratic form per row:
// what `--kl-encode` (tools/quant/metric.ts) chooses codes by instead of the squared error.
//
// At the original table the KL is 0 and so is its gradient, so to second order
//   KL(original + delta) ~ 1/2 sum_t delta_t^T H_t delta_t
// where H_t is row t's diagonal block of the Hessian (the blocks between rows are dropped: a quantized
// table's row errors are nearly independent). At that point the Hessian is exactly the Fisher
// information of the next-token distributions, 1/N sum_p J_p^T (diag p_p - p_p p_p^T) J_p, with J_p the
// Jacobian of position p's logits and N the predicted positions. We estimate it by sampling: draw at
// every position of a sequence a random logit cotangent r_p with E[r_p r_p^T] = diag p_p - p_p p_p^T,
// and backpropagate g = sum_p J_p^T r_p (tools/llama2c/backward.ts's logitGradients); then
// E[g g^T] = sum_p J_p^T Cov_p J_p, since draws at different positions are independent with mean 0.
// Several draws per sequence share one forward pass.
//
// An estimate from a few thousand outer products is noisy and low-rank, and an encoder that minimises
// it finds the directions it underrates (on stories260K, unregularized, the estimated KL of the codes
// it picked fell 60 % while the real KL rose 3x). `regularizedCurvature` shrinks every row's estimate
// toward its own trace and adds a floor, which keeps the encoder honest and gives the rows the
// calibration text never uses (about 300 of stories260K's 512) plain squared error.
import { CarvqError } from "../errors.ts";
import { originalEvaluation } from "../eval/perplexity.ts";
import type { Matrix } from "../matrix.ts";
import { checkMetricSize, type RowMetric } from "../quant/metric.ts";
import { createRandom } from "../random.ts";
import { logitGradients } from "./backward.ts";
import { inputEmbedding, type Llama2cModel } from "./model.ts";
import type { SampleOptions } from "./sample.ts";

/** The regularization `--kl-encode` uses, chosen on stories260K by the calibration KL (never the evaluation text). */
export const CURVATURE_SHRINK = 0.5;
export const CURVATURE_FLOOR = 0.5;

export type CotangentKind = "label" | "rademacher";

export interface FisherOptions {
  /** How the logit cotangents are drawn (default "rademacher": on stories260K its encodings varied less with the seed). */
  readonly cotangents?: CotangentKind;
  /** Label draws per sequence (default 8). */
  readonly samples?: number;
  /** Seed of the draws. */
  readonly seed?: number;
  /** Called after each sequence. */
  readonly onSequence?: (done: number, total: number) => void;
}

/**
 * Random logit cotangents r_p with E[r_p r_p^T] = diag(p_p) - p_p p_p^T at every position, from the
 * log-softmax rows [positions, vocab]. "label": r = onehot(y) - p with y drawn from p. "rademacher":
 * r = (I - p 1^T)(sqrt(p) * eps) with eps_i = +-1, which spreads each draw over every class.
 */
function drawCotangents(logProbs: Float64Array, positions: number, vocab: number, random: () => number, kind: CotangentKind): Float64Array {
  const r = new Float64Array(positions * vocab);
  for (let p = 0; p < positions; p++) {
    const row = p * vocab;
    if (kind === "label") {
      let u = random();
      let label = vocab - 1;
      for (let i = 0; i < vocab; i++) {
        r[row + i] = -Math.exp(logProbs[row + i]);
        if (u >= 0) {
          u += r[row + i];
          if (u < 0) label = i;
        }
      }
      r[row + label] += 1;
    } else {
      let projection = 0;
      for (let i = 0; i < vocab; i++) {
        const v = (random() < 0.5 ? -1 : 1) * Math.exp(0.5 * logProbs[row + i]);
        r[row + i] = v;
        projection += v;
      }
      for (let i = 0; i < vocab; i++) r[row + i] -= Math.exp(logProbs[row + i]) * projection;
    }
  }
  return r;
}

/** Adds scale * g_t g_t^T to row t's block for every token t that is an input of the sequence. */
function addOuterProducts(into: Float64Array, gradient: Float64Array, inputs: ReadonlySet<number>, cols: number, scale: number): void {
  for (const t of inputs) {
    const at = t * cols * cols;
    for (let a = 0; a < cols; a++) {
      const ga = gradient[t * cols + a];
      if (ga === 0) continue;
      // (g_a g_b) before the scale: the product commutes exactly, so the block is exactly symmetric.
      for (let b = 0; b < cols; b++) into[at + a * cols + b] += ga * gradient[t * cols + b] * scale;
    }
  }
}

/**
 * The estimated Fisher of the mean KL (on the text sampled with `text`) with respect to each row of
 * `model`'s input embedding, at the original table; rows never used as an input are 0. Deterministic.
 */
export function embeddingFisher(model: Llama2cModel, text: Partial<SampleOptions>, options: FisherOptions = {}): RowMetric {
  const table: Matrix = inputEmbedding(model);
  const { rows, cols } = table;
  checkMetricSize(rows, cols, model.path);
  const samples = options.samples ?? 8;
  if (!Number.isInteger(samples) || samples < 1) throw new CarvqError(`embeddingFisher: samples must be a whole number >= 1, got ${samples}`);
  const { sequences, logProbs } = originalEvaluation(model, text);
  const random = createRandom(options.seed ?? 0);
  const kind = options.cotangents ?? "rademacher";
  let total = 0;
  for (const tokens of sequences) total += Math.max(0, tokens.length - 1);
  const data = new Float64Array(rows * cols * cols);
  sequences.forEach((tokens, s) => {
    const positions = tokens.length - 1;
    if (positions >= 1) {
      const draws = Array.from({ length: samples }, () => drawCotangents(logProbs[s], positions, rows, random, kind));
      const inputs = new Set(tokens.subarray(0, positions));
      // E[g g^T] = sum_p J_p^T Cov_p J_p for this sequence; the KL is a mean over all N positions.
      const scale = 1 / (total * samples);
      for (const gradient of logitGradients(model, table, tokens, draws)) addOuterProducts(data, gradient, inputs, cols, scale);
    }
    options.onSequence?.(s + 1, sequences.length);
  });
  return { rows, cols, data };
}

/**
 * Each row's block shrunk toward its own scaled identity, plus a floor shared by all rows:
 * (1 - shrink) H_t + (shrink tr(H_t) / cols + floor * mean_t tr(H_t) / cols) I.
 */
export function regularizedCurvature(fisher: RowMetric, shrink = CURVATURE_SHRINK, floor = CURVATURE_FLOOR): RowMetric {
  const { rows, cols } = fisher;
  const size = cols * cols;
  const traces = new Float64Array(rows);
  let traceSum = 0;
  for (let t = 0; t < rows; t++) {
    for (let a = 0; a < cols; a++) traces[t] += fisher.data[t * size + a * cols + a];
    traceSum += traces[t];
  }
  // A table the text never touches (all traces 0) falls back to plain squared error.
  const floorValue = traceSum > 0 ? (floor * traceSum) / rows / cols : 1;
  const data = new Float64Array(fisher.data.length);
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < size; i++) data[t * size + i] = (1 - shrink) * fisher.data[t * size + i];
    const diagonal = (shrink * traces[t]) / cols + floorValue;
    for (let a = 0; a < cols; a++) data[t * size + a * cols + a] += diagonal;
  }
  return { rows, cols, data };
}
