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
import { Worker } from "node:worker_threads";
import { CarvqError } from "../errors.ts";
import { originalEvaluation } from "./sample.ts";
import type { Matrix } from "../matrix.ts";
import { checkMetricSize } from "../quant/metric.ts";
import type { RowMetric } from "../quant/objective.ts";
import { workerBundle } from "../quant/parallel.ts";
import { createRandomAt } from "../random.ts";
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
  /** Cotangent draws per sequence (default 8). */
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

/** One sequence's share of the estimate: the gradient rows of its input tokens, for each draw. */
export interface SequenceRows {
  /** The sequence's input tokens, in first-use order. */
  readonly inputs: Int32Array;
  /** samples x inputs x cols: draw k's gradient row of inputs[i] at (k * inputs + i) * cols. */
  readonly rows: Float64Array;
}

/** What one sequence's draws need: its tokens and original log-probs, and where in the random stream they start. */
export interface SequenceJob {
  readonly tokens: Int32Array;
  readonly logProbs: Float64Array;
  /** The number of random draws the sequences before it took (the stream is jumped ahead by it). */
  readonly skip: number;
  readonly seed: number;
  readonly samples: number;
  readonly kind: CotangentKind;
}

/** The expensive part, run inline or on a worker (tools/llama2c/fisher-worker.ts): `samples` draws and their backward passes. */
export function sequenceRows(model: Llama2cModel, table: Matrix, job: SequenceJob): SequenceRows {
  const positions = job.tokens.length - 1;
  const vocab = model.config.vocabSize;
  const cols = table.cols;
  const random = createRandomAt(job.seed, job.skip);
  const draws = Array.from({ length: job.samples }, () => drawCotangents(job.logProbs, positions, vocab, random, job.kind));
  const inputs = Int32Array.from(new Set(job.tokens.subarray(0, positions)));
  const rows = new Float64Array(job.samples * inputs.length * cols);
  logitGradients(model, table, job.tokens, draws).forEach((gradient, k) => {
    inputs.forEach((t, i) => rows.set(gradient.subarray(t * cols, (t + 1) * cols), (k * inputs.length + i) * cols));
  });
  return { inputs, rows };
}

/** Adds scale * g g^T of every draw's row to its token's block, draw by draw (the order fixes the sums' rounding). */
function addOuterProducts(into: Float64Array, share: SequenceRows, cols: number, scale: number): void {
  const count = share.inputs.length;
  for (let at = 0; at < share.rows.length; at += cols) {
    const block = share.inputs[(at / cols) % count] * cols * cols;
    for (let a = 0; a < cols; a++) {
      const ga = share.rows[at + a];
      if (ga === 0) continue;
      // (g_a g_b) before the scale: the product commutes exactly, so the block is exactly symmetric.
      for (let b = 0; b < cols; b++) into[block + a * cols + b] += ga * share.rows[at + b] * scale;
    }
  }
}

/** How many random draws a sequence's cotangents take. */
function drawCount(positions: number, vocab: number, samples: number, kind: CotangentKind): number {
  return samples * positions * (kind === "label" ? 1 : vocab);
}

/** Everything an estimate needs before its sequences are run: one job per sequence with a token to predict. */
interface FisherPlan {
  readonly rows: number;
  readonly cols: number;
  readonly sequences: number;
  /** Job of sequence s, or null when it predicts nothing. */
  readonly jobs: (SequenceJob | null)[];
  /** 1 / (predicted positions * samples): E[g g^T] = sum_p J_p^T Cov_p J_p per sequence, and the KL is a mean over all N positions. */
  readonly scale: number;
}

function planFisher(model: Llama2cModel, text: Partial<SampleOptions>, options: FisherOptions): FisherPlan {
  const { vocabSize: rows, dim: cols } = model.config;
  checkMetricSize(rows, cols, model.path);
  const samples = options.samples ?? 8;
  if (!Number.isInteger(samples) || samples < 1)
    throw new CarvqError(`embeddingFisher: samples must be a whole number >= 1, got ${samples}`);
  const kind = options.cotangents ?? "rademacher";
  const seed = options.seed ?? 0;
  const { sequences, logProbs } = originalEvaluation(model, text);
  let total = 0;
  let skip = 0;
  const jobs = sequences.map((tokens, s) => {
    const positions = tokens.length - 1;
    if (positions < 1) return null;
    total += positions;
    const job = { tokens, logProbs: logProbs[s], skip, seed, samples, kind };
    skip += drawCount(positions, rows, samples, kind);
    return job;
  });
  return { rows, cols, sequences: sequences.length, jobs, scale: 1 / (total * samples) };
}

/**
 * The estimated Fisher of the mean KL (on the text sampled with `text`) with respect to each row of
 * `model`'s input embedding, at the original table; rows never used as an input are 0. Deterministic.
 */
export function embeddingFisher(model: Llama2cModel, text: Partial<SampleOptions>, options: FisherOptions = {}): RowMetric {
  const plan = planFisher(model, text, options);
  const table: Matrix = inputEmbedding(model);
  const data = new Float64Array(plan.rows * plan.cols * plan.cols);
  plan.jobs.forEach((job, s) => {
    if (job !== null) addOuterProducts(data, sequenceRows(model, table, job), plan.cols, plan.scale);
    options.onSequence?.(s + 1, plan.sequences);
  });
  return { rows: plan.rows, cols: plan.cols, data };
}

/**
 * `embeddingFisher` with the sequences' backward passes on `threads` worker threads (each loads the
 * model from its file); the shares are added in sequence order, so the result is the same to the
 * bit for any number of threads. One thread runs on the caller; more need dist/fisher-worker.mjs.
 */
export async function embeddingFisherParallel(
  model: Llama2cModel,
  text: Partial<SampleOptions>,
  threads: number,
  options: FisherOptions = {},
): Promise<RowMetric> {
  if (threads <= 1) return embeddingFisher(model, text, options);
  const path = workerBundle("fisher-worker.mjs");
  const plan = planFisher(model, text, options);
  const data = new Float64Array(plan.rows * plan.cols * plan.cols);
  const waiting = new Map<number, SequenceRows>();
  let next = 0; // the next sequence to add, in order
  const flush = () => {
    for (; next < plan.sequences && (plan.jobs[next] === null || waiting.has(next)); next++) {
      const share = waiting.get(next);
      if (share !== undefined) addOuterProducts(data, share, plan.cols, plan.scale);
      waiting.delete(next);
      options.onSequence?.(next + 1, plan.sequences);
    }
  };
  const queue = plan.jobs.flatMap((job, s) => (job === null ? [] : [s]));
  const workers = Array.from({ length: Math.min(threads, queue.length) }, () => new Worker(path, { workerData: { path: model.path } }));
  try {
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            const take = () => {
              const s = queue.shift();
              if (s === undefined) return resolve();
              worker.postMessage({ s, job: plan.jobs[s] });
            };
            worker.on("message", (message: { s: number; share: SequenceRows }) => {
              waiting.set(message.s, message.share);
              flush();
              take();
            });
            worker.once("error", reject);
            worker.once("exit", (code) => (code === 0 ? resolve() : reject(new CarvqError(`curvature worker exited with code ${code}`))));
            take();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  flush();
  return { rows: plan.rows, cols: plan.cols, data };
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
