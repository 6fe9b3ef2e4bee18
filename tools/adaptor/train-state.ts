// A training run's memory (tools/adaptor/train.ts): one heap (tools/adaptor/kernels.ts) holding the
// per-token table sigma0 with its Adam moments, each layer's parameters, gradients and Adam moments,
// and the activations of one batch, laid out once at the start; and the two copies of each weight
// matrix the products read (master Wt, inputs x outputs; W = Wt transposed for the backward pass).
import type { Matrix } from "../matrix.ts";
import { heapFloats, TrainHeap, type GemmJob } from "./kernels.ts";
import type { FloatAdaptor } from "./model.ts";
import type { GemmPool } from "./pool.ts";

export interface Layer {
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

/** A training run's state on one heap: parameters, Adam moments and the activations of one batch. */
export class TrainState {
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
  /** RMS of the residual: the targets are R / sigma. */
  sigma = 1;
  /** Mean |R| / sigma: the loss of gamma = 0, which reported losses are relative to. */
  meanAbs = 1;
  flops = 0;
  adamStep = 0;

  constructor(
    readonly residual: Matrix,
    readonly widths: readonly number[],
    batch: number,
    simd: boolean,
  ) {
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
}

/** w = wtᵀ (outputs × inputs) after the master weights moved. */
export function transpose(s: TrainState, layer: Layer): void {
  const { f } = s;
  const { inputs, outputs, wt, w } = layer;
  for (let i = 0; i < inputs; i++) {
    const row = wt + i * outputs;
    for (let o = 0; o < outputs; o++) f[w + o * inputs + i] = f[row + o];
  }
}

/** One product; `during` is main-thread work on other buffers, overlapped with it (GemmPool.gemm). */
export function gemm(s: TrainState, pool: GemmPool, j: GemmJob, during?: () => void): void {
  pool.gemm(j, during);
  s.flops += 2 * j.m * j.n * j.k;
}

/** The trained parameters in the blob's orientation, with sigma folded into the last layer. */
export function exportAdaptor(s: TrainState): FloatAdaptor {
  const { f } = s;
  const copy = (at: number, count: number) => Float32Array.from(f.subarray(at, at + count));
  return {
    rows: s.rows,
    m0: s.m0,
    table: copy(s.table, s.rows * s.m0),
    layers: s.layers.map((layer) => {
      const weights = copy(layer.w, layer.inputs * layer.outputs);
      const bias = copy(layer.b, layer.outputs);
      if (!layer.hidden) {
        for (let i = 0; i < weights.length; i++) weights[i] *= s.sigma;
        for (let i = 0; i < bias.length; i++) bias[i] *= s.sigma;
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
