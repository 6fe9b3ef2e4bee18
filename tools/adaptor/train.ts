// Trains the corrective adaptor gamma(t) = sigma1(sigma0[t]) on the RVQ residual R = M − RVQ(M)
// with an L1 loss: Adam (lazy for the table: a token's row moves only in the step that sees it),
// warm-up then cosine learning rate, seeded mini-batches of tokens (a fresh permutation each
// epoch), and early stopping when the epoch loss stops improving.
//
// Every matrix product runs through GemmPool (SIMD kernel, split over threads, bit-identical to the
// scalar reference for any split); everything else runs on the calling thread in a fixed order.
// So the same residual, widths, options and seed give the same parameters, bit for bit, for any
// thread count and with or without the SIMD kernel.
//
// The residual is trained on at unit RMS (targets divided by sigma = RMS(R)), which makes the
// learning rates independent of the table's scale; sigma is folded into the last layer at the end.
import type { Matrix } from "../matrix.ts";
import { createRandom, deriveSeed, gaussian, permutation } from "../random.ts";
import { trainStep } from "./backprop.ts";
import { initTablePca } from "./pca.ts";
import { GemmPool } from "./pool.ts";
import type { FloatAdaptor } from "./model.ts";
import { exportAdaptor, TrainState, transpose } from "./train-state.ts";
import * as F from "../../assembly/format.ts";

export interface TrainOptions {
  /** Most epochs (passes over every token); early stopping may end sooner. */
  epochs: number;
  /** Tokens per step (capped at V). */
  batch: number;
  /** Peak learning rate of the MLP (Adam). */
  lr: number;
  /** Peak learning rate of the per-token table (lazy Adam: one update per token per epoch). */
  tableLr: number;
  /** Share of the planned steps spent warming the learning rate up linearly. */
  warmup: number;
  /** Final learning rate of the cosine schedule, as a share of the peak. */
  lrFloor: number;
  /**
   * Stop after this many epochs without a relative improvement of at least `minDelta` in the
   * epoch loss (counted as at least `PATIENCE_STEPS` steps when epochs are short).
   */
  patience: number;
  minDelta: number;
  /** Sigma0 initialisation: "pca" (the residual's coordinates in its top-m0 principal directions) or "random" (N(0, 1)). */
  init: "pca" | "random";
  seed: number;
  /** Threads in all (the caller's included). The result does not depend on it. */
  threads: number;
  /** false: the scalar reference kernel even when the SIMD build exists (tests). */
  simd: boolean;
}

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = {
  epochs: 0,
  batch: 1024,
  lr: 2e-3,
  tableLr: 3e-2,
  warmup: 0.03,
  lrFloor: 0.05,
  patience: 4,
  minDelta: 1e-3,
  init: "pca",
  seed: 0,
  threads: 1,
  simd: true,
};

/**
 * The default epoch count: enough epochs for TARGET_STEPS steps (the MLP's updates), at least
 * MIN_AUTO_EPOCHS (sigma0's rows move once per epoch) and at most MAX_AUTO_EPOCHS, and above the
 * minimum no more than MAX_AUTO_FLOPS of products in all (about 13 minutes on two cores). The cap
 * was 2.5e13: on a 128256 x 2048 table with the paper's adaptor it allowed 24 epochs (the 3,000-step
 * count), 1,565 s of training; at 1.6e13 it trains 16 epochs, 809 s, and the table's relMSE moves
 * from 0.21633 to 0.21676 (0.2 %), while the whole compression fits in 15 minutes (899 s measured).
 */
export const TARGET_STEPS = 3000;
export const MIN_AUTO_EPOCHS = 16;
export const MAX_AUTO_EPOCHS = 3000;
export const MAX_AUTO_FLOPS = 1.6e13;

/** Small tables have one or a few steps per epoch; patience then spans at least this many steps. */
export const PATIENCE_STEPS = 300;

export interface TrainProgress {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  /** Mean |R − gamma| / mean |R| over the steps of the current epoch so far (1 = no correction). */
  loss: number;
}

export interface TrainResult {
  adaptor: FloatAdaptor;
  /** Relative L1 loss of each finished epoch (training loss, measured as the epoch ran). */
  losses: number[];
  epochs: number;
  steps: number;
  stopped: "plateau" | "epochs";
  /** RMS of the residual (the training scale). */
  sigma: number;
  /** Products' floating-point operations performed. */
  flops: number;
  seconds: number;
}

/** Batch size and epoch count a run will use. */
export function trainPlan(
  rows: number,
  widths: readonly number[],
  o: Pick<TrainOptions, "batch" | "epochs">,
): { batch: number; stepsPerEpoch: number; epochs: number } {
  const batch = Math.max(1, Math.min(o.batch, rows));
  const stepsPerEpoch = Math.ceil(rows / batch);
  const byCompute = Math.floor(MAX_AUTO_FLOPS / epochFlops(rows, widths));
  const epochs =
    o.epochs > 0 ? o.epochs : Math.max(MIN_AUTO_EPOCHS, Math.min(MAX_AUTO_EPOCHS, byCompute, Math.ceil(TARGET_STEPS / stepsPerEpoch)));
  return { batch, stepsPerEpoch, epochs };
}

/** Flops of one training epoch (forward and backward products) for these widths. */
export function epochFlops(rows: number, widths: readonly number[]): number {
  let perToken = 0;
  for (let k = 0; k + 1 < widths.length; k++) perToken += 2 * widths[k] * widths[k + 1] * 3;
  return rows * perToken;
}

/** Random MLP (uniform ±1/sqrt(fan-in), last layer zero so training starts from gamma = 0) and the table. */
function initialize(s: TrainState, seed: number, how: TrainOptions["init"]): void {
  const { f, residual } = s;
  let sumSq = 0;
  let sumAbs = 0;
  for (let i = 0; i < residual.data.length; i++) {
    const v = residual.data[i];
    sumSq += v * v;
    sumAbs += Math.abs(v);
  }
  const count = residual.data.length;
  s.sigma = sumSq > 0 ? Math.sqrt(sumSq / count) : 1;
  s.meanAbs = sumAbs > 0 ? sumAbs / count / s.sigma : 1;
  s.layers.forEach((layer, k) => {
    const random = createRandom(deriveSeed(seed, 0xada, 1, k));
    const bound = 1 / Math.sqrt(layer.inputs);
    for (let i = 0; i < layer.inputs * layer.outputs; i++) f[layer.wt + i] = layer.hidden ? (2 * random() - 1) * bound : 0;
    for (let o = 0; o < layer.outputs; o++) {
      f[layer.b + o] = layer.hidden ? (2 * random() - 1) * bound : 0;
      f[layer.g + o] = 1;
      f[layer.be + o] = 0;
    }
    transpose(s, layer);
  });
  if (how === "pca") initTablePca(s, seed);
  else {
    const random = createRandom(deriveSeed(seed, 0xada, 2));
    for (let i = 0; i < s.rows * s.m0; i++) f[s.table + i] = gaussian(random);
  }
}

/** The learning-rate multiplier at `step` of `total`: linear warm-up, then cosine down to `floor`. */
export function learningRate(step: number, total: number, warmup: number, floor: number): number {
  const warm = Math.max(1, Math.round(warmup * total));
  if (step < warm) return (step + 1) / warm;
  const progress = Math.min(1, (step - warm) / Math.max(1, total - warm));
  return floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

function checkWidths(residual: Matrix, widths: readonly number[]): void {
  if (widths.length < 2 || widths.length - 1 > F.MAX_ADAPTOR_LAYERS)
    throw new RangeError(`an adaptor has 1 to ${F.MAX_ADAPTOR_LAYERS} layers; got widths ${widths.join("-")}`);
  if (widths.some((w) => !Number.isInteger(w) || w < 1 || w > F.MAX_ADAPTOR_WIDTH))
    throw new RangeError(`adaptor widths must be 1 to ${F.MAX_ADAPTOR_WIDTH}; got ${widths.join("-")}`);
  if (widths[widths.length - 1] !== residual.cols)
    throw new RangeError(`the adaptor's output width ${widths[widths.length - 1]} must be the table's ${residual.cols} columns`);
}

interface Run {
  state: TrainState;
  o: TrainOptions;
  started: number;
}

function prepareRun(residual: Matrix, widths: readonly number[], options: Partial<TrainOptions>): Run {
  const o: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  checkWidths(residual, widths);
  if (!Number.isInteger(o.epochs) || o.epochs < 0)
    throw new RangeError(`adaptor epochs must be a whole number >= 0 (0 = auto), got ${o.epochs}`);
  const { batch } = trainPlan(residual.rows, widths, o);
  return { state: new TrainState(residual, widths, batch, o.simd), o, started: performance.now() };
}

/** The training loop; yields after every step with the progress so far, returns the result. */
function* steps({ state, o, started }: Run, pool: GemmPool): Generator<TrainProgress, TrainResult> {
  const { residual } = state;
  const { batch, stepsPerEpoch, epochs } = trainPlan(residual.rows, state.widths, o);
  initialize(state, o.seed, o.init);
  const total = epochs * stepsPerEpoch;
  const patience = Math.max(o.patience, Math.ceil(PATIENCE_STEPS / stepsPerEpoch));
  const losses: number[] = [];
  let best = Infinity;
  let sinceBest = 0;
  let stopped: TrainResult["stopped"] = "epochs";
  let step = 0;
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = permutation(residual.rows, createRandom(deriveSeed(o.seed, 0xada, 4, epoch)));
    let sum = 0;
    let seen = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      const from = s * batch;
      const count = Math.min(batch, residual.rows - from);
      const rate = learningRate(step, total, o.warmup, o.lrFloor);
      sum += trainStep(state, pool, order, from, count, o.lr * rate, o.tableLr * rate, epoch);
      seen += count;
      step++;
      yield { epoch, epochs, step, steps: total, loss: sum / (seen * residual.cols) / state.meanAbs };
    }
    const loss = sum / (residual.rows * residual.cols) / state.meanAbs;
    losses.push(loss);
    if (loss < best * (1 - o.minDelta)) {
      best = loss;
      sinceBest = 0;
    } else if (++sinceBest >= patience && step > o.warmup * total) {
      stopped = "plateau";
      break;
    }
  }
  return {
    adaptor: exportAdaptor(state),
    losses,
    epochs: losses.length,
    steps: step,
    stopped,
    sigma: state.sigma,
    flops: state.flops,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * Trains an adaptor of `widths` (m0, hidden..., n) on `residual` (V × n). With `threads` > 1 the
 * products run on worker threads (same bits). Yields to the event loop about ten times a second so
 * a progress bar can draw, and reports progress then.
 */
export async function trainAdaptor(
  residual: Matrix,
  widths: readonly number[],
  options: Partial<TrainOptions> = {},
  onProgress?: (p: TrainProgress) => void,
): Promise<TrainResult> {
  const run = prepareRun(residual, widths, options);
  const pool = await GemmPool.start(run.state.heap, run.o.threads);
  try {
    const loop = steps(run, pool);
    let lastReport = performance.now();
    for (;;) {
      const next = loop.next();
      if (next.done) return next.value;
      const p = next.value;
      if (performance.now() - lastReport > 100 || p.step === p.steps) {
        onProgress?.(p);
        await new Promise((resolve) => setImmediate(resolve));
        lastReport = performance.now();
      }
    }
  } finally {
    await pool.close();
  }
}
