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
import { createRandom, deriveSeed } from "../random.ts";
import { heapFloats, TrainHeap, type GemmJob } from "./kernels.ts";
import type { FloatAdaptor } from "./model.ts";
import { GemmPool } from "./pool.ts";
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
export function trainPlan(rows: number, widths: readonly number[], o: Pick<TrainOptions, "batch" | "epochs">): { batch: number; stepsPerEpoch: number; epochs: number } {
  const batch = Math.max(1, Math.min(o.batch, rows));
  const stepsPerEpoch = Math.ceil(rows / batch);
  const byCompute = Math.floor(MAX_AUTO_FLOPS / epochFlops(rows, widths));
  const epochs = o.epochs > 0 ? o.epochs : Math.max(MIN_AUTO_EPOCHS, Math.min(MAX_AUTO_EPOCHS, byCompute, Math.ceil(TARGET_STEPS / stepsPerEpoch)));
  return { batch, stepsPerEpoch, epochs };
}

/** Flops of one training epoch (forward and backward products) for these widths. */
export function epochFlops(rows: number, widths: readonly number[]): number {
  let perToken = 0;
  for (let k = 0; k + 1 < widths.length; k++) perToken += 2 * widths[k] * widths[k + 1] * 3;
  return rows * perToken;
}

interface Layer {
  inputs: number;
  outputs: number;
  hidden: boolean;
  /** Offsets into the heap (floats). */
  wt: number; // inputs × outputs (master weights, transposed)
  w: number; // outputs × inputs (copy for backprop)
  b: number;
  g: number;
  be: number;
  dwt: number;
  db: number;
  dg: number;
  dbe: number;
  /** Adam moments of wt, b, g, be (in that order, contiguous per parameter). */
  mwt: number;
  vwt: number;
  mb: number;
  vb: number;
  mg: number;
  vg: number;
  mbe: number;
  vbe: number;
  /** Activations of the current batch: input x (batch × inputs), pre-activation z, normalised xhat, 1/std. */
  x: number;
  z: number;
  xhat: number;
  rstd: number;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;

/** Gaussian from two uniforms (Box–Muller), deterministic. */
function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/**
 * A training run's state on one heap: parameters, Adam moments and the activations of one batch.
 * Construct, `init`, then `step` through epochs (see trainAdaptor).
 */
class Trainer {
  readonly heap: TrainHeap;
  readonly f: Float32Array;
  readonly layers: Layer[] = [];
  readonly batch: number;
  readonly rows: number;
  readonly m0: number;
  readonly n: number;
  readonly table: number;
  readonly tm: number;
  readonly tv: number;
  readonly target: number;
  readonly dx0: number;
  sigma = 1;
  meanAbs = 1;
  flops = 0;
  adamStep = 0;

  constructor(readonly residual: Matrix, readonly widths: readonly number[], batch: number, simd: boolean) {
    this.rows = residual.rows;
    this.m0 = widths[0];
    this.n = widths[widths.length - 1];
    this.batch = batch;
    const sizes: number[] = [3 * this.rows * this.m0, batch * this.n, batch * this.m0];
    for (let k = 0; k + 1 < widths.length; k++) {
      const [i, o] = [widths[k], widths[k + 1]];
      sizes.push(i * o * 5, o * 12, batch * i, batch * o * 2, batch);
    }
    this.heap = new TrainHeap(heapFloats(sizes) + 64 * widths.length * 20, simd);
    this.f = this.heap.f32;
    const h = this.heap;
    this.table = h.alloc(this.rows * this.m0);
    this.tm = h.alloc(this.rows * this.m0);
    this.tv = h.alloc(this.rows * this.m0);
    this.target = h.alloc(batch * this.n);
    this.dx0 = h.alloc(batch * this.m0);
    for (let k = 0; k + 1 < widths.length; k++) {
      const [inputs, outputs] = [widths[k], widths[k + 1]];
      const hidden = k + 2 < widths.length;
      const io = inputs * outputs;
      this.layers.push({
        inputs,
        outputs,
        hidden,
        wt: h.alloc(io),
        w: h.alloc(io),
        dwt: h.alloc(io),
        mwt: h.alloc(io),
        vwt: h.alloc(io),
        b: h.alloc(outputs),
        g: h.alloc(outputs),
        be: h.alloc(outputs),
        db: h.alloc(outputs),
        dg: h.alloc(outputs),
        dbe: h.alloc(outputs),
        mb: h.alloc(outputs),
        vb: h.alloc(outputs),
        mg: h.alloc(outputs),
        vg: h.alloc(outputs),
        mbe: h.alloc(outputs),
        vbe: h.alloc(outputs),
        x: h.alloc(batch * inputs),
        z: h.alloc(batch * outputs),
        xhat: h.alloc(batch * outputs),
        rstd: h.alloc(batch),
      });
    }
  }

  /** Random MLP (uniform ±1/sqrt(fan-in), last layer zero so training starts from gamma = 0) and the table. */
  init(seed: number, how: TrainOptions["init"]): void {
    const { f, residual } = this;
    let sumSq = 0;
    let sumAbs = 0;
    for (let i = 0; i < residual.data.length; i++) {
      const v = residual.data[i];
      sumSq += v * v;
      sumAbs += Math.abs(v);
    }
    const count = residual.data.length;
    this.sigma = sumSq > 0 ? Math.sqrt(sumSq / count) : 1;
    this.meanAbs = sumAbs > 0 ? sumAbs / count / this.sigma : 1;
    this.layers.forEach((layer, k) => {
      const random = createRandom(deriveSeed(seed, 0xada, 1, k));
      const bound = 1 / Math.sqrt(layer.inputs);
      for (let i = 0; i < layer.inputs * layer.outputs; i++) f[layer.wt + i] = layer.hidden ? (2 * random() - 1) * bound : 0;
      for (let o = 0; o < layer.outputs; o++) {
        f[layer.b + o] = layer.hidden ? (2 * random() - 1) * bound : 0;
        f[layer.g + o] = 1;
        f[layer.be + o] = 0;
      }
      this.transpose(layer);
    });
    if (how === "pca") this.initTablePca(seed);
    else {
      const random = createRandom(deriveSeed(seed, 0xada, 2));
      for (let i = 0; i < this.rows * this.m0; i++) f[this.table + i] = gaussian(random);
    }
  }

  /**
   * sigma0 from the residual's top-m0 principal directions: subspace iteration on the second
   * moment of up to 8192 rows (a seeded sample), then each token's coordinates, scaled to unit
   * variance per coordinate. The table then starts out as the best linear code of each row.
   */
  private initTablePca(seed: number): void {
    const { residual, f, m0, rows } = this;
    const n = residual.cols;
    const sampleRows = Math.min(rows, 8192);
    const random = createRandom(deriveSeed(seed, 0xada, 3));
    const picks = new Int32Array(sampleRows);
    if (sampleRows === rows) for (let i = 0; i < rows; i++) picks[i] = i;
    else {
      const order = permutation(rows, random);
      picks.set(order.subarray(0, sampleRows));
      picks.sort();
    }
    const scratch = new TrainHeap(heapFloats([sampleRows * n, n * n, n * m0 * 2, 1024 * n, 1024 * m0]), this.heap.simd);
    const s = scratch.alloc(sampleRows * n);
    const cov = scratch.alloc(n * n);
    const q = scratch.alloc(n * m0);
    const q2 = scratch.alloc(n * m0);
    const chunk = scratch.alloc(1024 * n);
    const codes = scratch.alloc(1024 * m0);
    const inv = 1 / this.sigma;
    for (let r = 0; r < sampleRows; r++) {
      const from = picks[r] * n;
      for (let e = 0; e < n; e++) scratch.f32[s + r * n + e] = residual.data[from + e] * inv;
    }
    const run = (j: GemmJob) => {
      scratch.gemm(j);
      this.flops += 2 * j.m * j.n * j.k;
    };
    run({ a: s, sai: 1, sak: n, b: s, ldb: n, c: cov, ldc: n, m: n, n, k: sampleRows, accumulate: false });
    const qf = scratch.f32;
    for (let i = 0; i < n * m0; i++) qf[q + i] = gaussian(random);
    orthonormalize(qf, q, n, m0);
    for (let iter = 0; iter < 30; iter++) {
      run({ a: cov, sai: n, sak: 1, b: q, ldb: m0, c: q2, ldc: m0, m: n, n: m0, k: n, accumulate: false });
      qf.copyWithin(q, q2, q2 + n * m0);
      orthonormalize(qf, q, n, m0);
    }
    // Codes of every row, chunk by chunk: table = (R / sigma) · Q, then unit variance per column.
    const sumSq = new Float64Array(m0);
    for (let r0 = 0; r0 < rows; r0 += 1024) {
      const count = Math.min(1024, rows - r0);
      for (let r = 0; r < count; r++) {
        const from = (r0 + r) * n;
        for (let e = 0; e < n; e++) qf[chunk + r * n + e] = residual.data[from + e] * inv;
      }
      run({ a: chunk, sai: n, sak: 1, b: q, ldb: m0, c: codes, ldc: m0, m: count, n: m0, k: n, accumulate: false });
      for (let i = 0; i < count * m0; i++) {
        f[this.table + r0 * m0 + i] = qf[codes + i];
        sumSq[i % m0] += qf[codes + i] * qf[codes + i];
      }
    }
    for (let c = 0; c < m0; c++) {
      const scale = sumSq[c] > 0 ? 1 / Math.sqrt(sumSq[c] / rows) : 1;
      for (let r = 0; r < rows; r++) f[this.table + r * m0 + c] *= scale;
    }
  }

  /** w = wtᵀ (outputs × inputs) after the master weights moved. */
  transpose(layer: Layer): void {
    const { f } = this;
    const { inputs, outputs, wt, w } = layer;
    for (let i = 0; i < inputs; i++) {
      const row = wt + i * outputs;
      for (let o = 0; o < outputs; o++) f[w + o * inputs + i] = f[row + o];
    }
  }

  /** One product; `during` is main-thread work on other buffers, overlapped with it (GemmPool.gemm). */
  private gemm(pool: GemmPool, j: GemmJob, during?: () => void): void {
    pool.gemm(j, during);
    this.flops += 2 * j.m * j.n * j.k;
  }

  /**
   * Forward pass of `count` tokens whose inputs are already in layers[0].x; returns the output
   * offset. `during` runs beside the last layer's product (the largest).
   */
  forward(pool: GemmPool, count: number, during?: () => void): number {
    const { f } = this;
    let out = 0;
    this.layers.forEach((layer, k) => {
      const { inputs, outputs, z } = layer;
      for (let r = 0; r < count; r++) f.copyWithin(z + r * outputs, layer.b, layer.b + outputs);
      this.gemm(pool, { a: layer.x, sai: inputs, sak: 1, b: layer.wt, ldb: outputs, c: z, ldc: outputs, m: count, n: outputs, k: inputs, accumulate: true }, layer.hidden ? undefined : during);
      if (!layer.hidden) {
        out = z;
        return;
      }
      const next = this.layers[k + 1].x;
      const { g, be } = layer;
      for (let r = 0; r < count; r++) {
        const zr = z + r * outputs;
        const xr = layer.xhat + r * outputs;
        const yr = next + r * outputs;
        let mean = 0;
        for (let o = 0; o < outputs; o++) {
          const v = f[zr + o] > 0 ? f[zr + o] : 0;
          f[xr + o] = v;
          mean += v;
        }
        mean /= outputs;
        let variance = 0;
        for (let o = 0; o < outputs; o++) {
          const d = f[xr + o] - mean;
          variance += d * d;
        }
        const rstd = 1 / Math.sqrt(variance / outputs + F.ADAPTOR_LN_EPS);
        f[layer.rstd + r] = rstd;
        for (let o = 0; o < outputs; o++) {
          const xhat = (f[xr + o] - mean) * rstd;
          f[xr + o] = xhat;
          f[yr + o] = xhat * f[g + o] + f[be + o];
        }
      }
    });
    return out;
  }

  /** Copies the batch's table rows in as the first layer's input. */
  gatherRows(tokens: Int32Array, from: number, count: number): void {
    const { f, m0 } = this;
    const x = this.layers[0].x;
    for (let r = 0; r < count; r++) {
      const t = tokens[from + r];
      f.copyWithin(x + r * m0, this.table + t * m0, this.table + (t + 1) * m0);
    }
  }

  /** Copies the batch's targets (R / sigma) in; read only by the loss, so it can overlap the forward products. */
  gatherTargets(tokens: Int32Array, from: number, count: number): void {
    const { f, n, residual } = this;
    const inv = 1 / this.sigma;
    for (let r = 0; r < count; r++) {
      const src = tokens[from + r] * n;
      const dst = this.target + r * n;
      for (let e = 0; e < n; e++) f[dst + e] = residual.data[src + e] * inv;
    }
  }

  /**
   * One step on tokens[from, from + count): returns the batch's summed |R/sigma − gamma|.
   *
   * The main thread's work that does not feed the next product runs beside one (GemmPool.gemm's
   * `during`): the targets beside the last forward product; the bias gradient (which, like the
   * weight gradient, only reads dz) and the refresh W = Wtᵀ of the layer above beside each
   * weight-gradient product; each layer's Adam update beside the product that carries the
   * gradient back past it (which reads W, not the master weights Wt that Adam moves). Every
   * buffer is written by one side only, so the bits are those of doing it all in turn.
   */
  step(pool: GemmPool, tokens: Int32Array, from: number, count: number, lr: number, tableLr: number, epoch: number): number {
    const { f, n } = this;
    this.gatherRows(tokens, from, count);
    const out = this.forward(pool, count, () => this.gatherTargets(tokens, from, count));
    // L1: loss = Σ |out − target|; d loss / d out = sign(out − target), in place of the output.
    let loss = 0;
    for (let i = 0; i < count * n; i++) {
      const d = f[out + i] - f[this.target + i];
      loss += Math.abs(d);
      f[out + i] = d > 0 ? 1 : d < 0 ? -1 : 0;
    }
    this.adamStep++;
    // The layer above this one, whose W still has to follow its updated Wt.
    let pending: Layer | null = null;
    for (let k = this.layers.length - 1; k >= 0; k--) {
      const layer = this.layers[k];
      const { inputs, outputs, z } = layer;
      const dz = z; // the gradient with respect to z replaces z
      const above = pending;
      // The bias gradient only reads dz, as the weight-gradient product does.
      const biasGradient = () => {
        if (above !== null) this.transpose(above);
        for (let o = 0; o < outputs; o++) f[layer.db + o] = 0;
        for (let r = 0; r < count; r++) for (let o = 0; o < outputs; o++) f[layer.db + o] += f[dz + r * outputs + o];
      };
      this.gemm(pool, { a: layer.x, sai: 1, sak: inputs, b: dz, ldb: outputs, c: layer.dwt, ldc: outputs, m: inputs, n: outputs, k: count, accumulate: false }, biasGradient);
      // This layer's gradients are complete (dg and dbe came with the layer above): Adam may move Wt.
      const update = () => this.updateLayer(layer, lr);
      // Back to this layer's input: the previous layer's pre-activation, or the batch's table rows.
      if (k > 0) this.layerNormBackward(pool, this.layers[k - 1], dz, layer, count, update);
      else this.gemm(pool, { a: dz, sai: outputs, sak: 1, b: layer.w, ldb: inputs, c: this.dx0, ldc: inputs, m: count, n: inputs, k: outputs, accumulate: false }, update);
      pending = layer;
    }
    if (pending !== null) this.transpose(pending);
    this.updateTable(tokens, from, count, tableLr, epoch);
    return loss;
  }

  /**
   * From the gradient dz of layer `next` back through its input y = LN(relu(z)) of layer `prev`:
   * dy = dz · W into next.x (no longer needed), then the gradient of prev's z in place of prev.z.
   */
  private layerNormBackward(pool: GemmPool, prev: Layer, dzNext: number, next: Layer, count: number, during: () => void): void {
    const { f } = this;
    const w = prev.outputs;
    const dy = next.x;
    this.gemm(pool, { a: dzNext, sai: next.outputs, sak: 1, b: next.w, ldb: next.inputs, c: dy, ldc: w, m: count, n: w, k: next.outputs, accumulate: false }, during);
    for (let o = 0; o < w; o++) {
      f[prev.dg + o] = 0;
      f[prev.dbe + o] = 0;
    }
    for (let r = 0; r < count; r++) {
      const dyr = dy + r * w;
      const xr = prev.xhat + r * w;
      const zr = prev.z + r * w;
      let sumD = 0;
      let sumDX = 0;
      for (let o = 0; o < w; o++) {
        const g = f[dyr + o];
        f[prev.dg + o] += g * f[xr + o];
        f[prev.dbe + o] += g;
        const dxhat = g * f[prev.g + o];
        sumD += dxhat;
        sumDX += dxhat * f[xr + o];
      }
      const meanD = sumD / w;
      const meanDX = sumDX / w;
      const rstd = f[prev.rstd + r];
      for (let o = 0; o < w; o++) {
        const dxhat = f[dyr + o] * f[prev.g + o];
        const da = rstd * (dxhat - meanD - f[xr + o] * meanDX);
        f[zr + o] = f[zr + o] > 0 ? da : 0;
      }
    }
  }

  private adam(param: number, grad: number, m: number, v: number, count: number, lr: number): void {
    const { f } = this;
    const c1 = 1 - BETA1 ** this.adamStep;
    const c2 = 1 - BETA2 ** this.adamStep;
    for (let i = 0; i < count; i++) {
      const g = f[grad + i];
      const mi = BETA1 * f[m + i] + (1 - BETA1) * g;
      const vi = BETA2 * f[v + i] + (1 - BETA2) * g * g;
      f[m + i] = mi;
      f[v + i] = vi;
      f[param + i] -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + ADAM_EPS);
    }
  }

  /** Adam on the layer's Wt, b and LayerNorm parameters; W = Wtᵀ is refreshed separately (transpose). */
  private updateLayer(layer: Layer, lr: number): void {
    this.adam(layer.wt, layer.dwt, layer.mwt, layer.vwt, layer.inputs * layer.outputs, lr);
    this.adam(layer.b, layer.db, layer.mb, layer.vb, layer.outputs, lr);
    if (layer.hidden) {
      this.adam(layer.g, layer.dg, layer.mg, layer.vg, layer.outputs, lr);
      this.adam(layer.be, layer.dbe, layer.mbe, layer.vbe, layer.outputs, lr);
    }
  }

  /** Lazy Adam on the batch's table rows; a row's step count is the epoch (each epoch sees it once). */
  private updateTable(tokens: Int32Array, from: number, count: number, lr: number, epoch: number): void {
    const { f, m0 } = this;
    const c1 = 1 - BETA1 ** (epoch + 1);
    const c2 = 1 - BETA2 ** (epoch + 1);
    for (let r = 0; r < count; r++) {
      const t = tokens[from + r];
      for (let i = 0; i < m0; i++) {
        const at = t * m0 + i;
        const g = f[this.dx0 + r * m0 + i];
        const mi = BETA1 * f[this.tm + at] + (1 - BETA1) * g;
        const vi = BETA2 * f[this.tv + at] + (1 - BETA2) * g * g;
        f[this.tm + at] = mi;
        f[this.tv + at] = vi;
        f[this.table + at] -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + ADAM_EPS);
      }
    }
  }

  /** The trained parameters in the blob's orientation, with sigma folded into the last layer. */
  export(): FloatAdaptor {
    const { f } = this;
    const copy = (at: number, count: number) => Float32Array.from(f.subarray(at, at + count));
    return {
      rows: this.rows,
      m0: this.m0,
      table: copy(this.table, this.rows * this.m0),
      layers: this.layers.map((layer) => {
        const weights = copy(layer.w, layer.inputs * layer.outputs);
        const bias = copy(layer.b, layer.outputs);
        if (!layer.hidden) {
          for (let i = 0; i < weights.length; i++) weights[i] *= this.sigma;
          for (let i = 0; i < bias.length; i++) bias[i] *= this.sigma;
        }
        return {
          inputs: layer.inputs,
          outputs: layer.outputs,
          weights,
          bias,
          gamma: layer.hidden ? copy(layer.g, layer.outputs) : null,
          beta: layer.hidden ? copy(layer.be, layer.outputs) : null,
        };
      }),
    };
  }
}

/** A seeded permutation of 0 .. count − 1 (Fisher–Yates). */
function permutation(count: number, random: () => number): Int32Array {
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** Gram–Schmidt (twice) on the `cols` columns of an n × cols row-major block, in f64. */
function orthonormalize(f: Float32Array, at: number, n: number, cols: number): void {
  const col = Array.from({ length: cols }, (_, c) => Float64Array.from({ length: n }, (_, e) => f[at + e * cols + c]));
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 0; c < cols; c++) {
      for (let p = 0; p < c; p++) {
        let dot = 0;
        for (let e = 0; e < n; e++) dot += col[c][e] * col[p][e];
        for (let e = 0; e < n; e++) col[c][e] -= dot * col[p][e];
      }
      let norm = 0;
      for (let e = 0; e < n; e++) norm += col[c][e] * col[c][e];
      norm = Math.sqrt(norm);
      for (let e = 0; e < n; e++) col[c][e] = norm > 1e-30 ? col[c][e] / norm : e === c % n ? 1 : 0;
    }
  }
  for (let c = 0; c < cols; c++) for (let e = 0; e < n; e++) f[at + e * cols + c] = col[c][e];
}

/** The learning-rate multiplier at `step` of `total`: linear warm-up, then cosine down to `floor`. */
export function learningRate(step: number, total: number, warmup: number, floor: number): number {
  const warm = Math.max(1, Math.round(warmup * total));
  if (step < warm) return (step + 1) / warm;
  const progress = Math.min(1, (step - warm) / Math.max(1, total - warm));
  return floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

function checkWidths(residual: Matrix, widths: readonly number[]): void {
  if (widths.length < 2 || widths.length - 1 > F.MAX_ADAPTOR_LAYERS) throw new RangeError(`an adaptor has 1 to ${F.MAX_ADAPTOR_LAYERS} layers; got widths ${widths.join("-")}`);
  if (widths.some((w) => !Number.isInteger(w) || w < 1 || w > F.MAX_ADAPTOR_WIDTH)) throw new RangeError(`adaptor widths must be 1 to ${F.MAX_ADAPTOR_WIDTH}; got ${widths.join("-")}`);
  if (widths[widths.length - 1] !== residual.cols) throw new RangeError(`the adaptor's output width ${widths[widths.length - 1]} must be the table's ${residual.cols} columns`);
}

interface Run {
  trainer: Trainer;
  o: TrainOptions;
  started: number;
}

function prepareRun(residual: Matrix, widths: readonly number[], options: Partial<TrainOptions>): Run {
  const o: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  checkWidths(residual, widths);
  if (!Number.isInteger(o.epochs) || o.epochs < 0) throw new RangeError(`adaptor epochs must be a whole number >= 0 (0 = auto), got ${o.epochs}`);
  const { batch } = trainPlan(residual.rows, widths, o);
  return { trainer: new Trainer(residual, widths, batch, o.simd), o, started: performance.now() };
}

/** The training loop; yields after every step with the progress so far, returns the result. */
function* steps({ trainer, o, started }: Run, pool: GemmPool): Generator<TrainProgress, TrainResult> {
  const { residual } = trainer;
  const { batch, stepsPerEpoch, epochs } = trainPlan(residual.rows, trainer.widths, o);
  trainer.init(o.seed, o.init);
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
      sum += trainer.step(pool, order, from, count, o.lr * rate, o.tableLr * rate, epoch);
      seen += count;
      step++;
      yield { epoch, epochs, step, steps: total, loss: sum / (seen * residual.cols) / trainer.meanAbs };
    }
    const loss = sum / (residual.rows * residual.cols) / trainer.meanAbs;
    losses.push(loss);
    if (loss < best * (1 - o.minDelta)) {
      best = loss;
      sinceBest = 0;
    } else if (++sinceBest >= patience && step > o.warmup * total) {
      stopped = "plateau";
      break;
    }
  }
  return { adaptor: trainer.export(), losses, epochs: losses.length, steps: step, stopped, sigma: trainer.sigma, flops: trainer.flops, seconds: (performance.now() - started) / 1000 };
}

/**
 * Trains an adaptor of `widths` (m0, hidden..., n) on `residual` (V × n). With `threads` > 1 the
 * products run on worker threads (same bits). Yields to the event loop about ten times a second so
 * a progress bar can draw, and reports progress then.
 */
export async function trainAdaptor(residual: Matrix, widths: readonly number[], options: Partial<TrainOptions> = {}, onProgress?: (p: TrainProgress) => void): Promise<TrainResult> {
  const run = prepareRun(residual, widths, options);
  const pool = await GemmPool.start(run.trainer.heap, run.o.threads);
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
