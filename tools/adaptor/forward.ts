// The reference evaluation of a stored adaptor (FORMAT.md, "The adaptor"), which both runtime
// builds reproduce bit for bit, and its batched form for a whole table (addAdaptorRows), which runs
// the same f32 operations in the same order on a SIMD kernel (assembly/train/forward.ts), batched
// over tokens so each weight row is read once per batch: the compressor decodes every row of a
// table to measure it, and on 128256 x 2048 with the paper's adaptor the reference takes minutes,
// the kernel a few seconds. Without the kernel build it runs the reference row by row.
//
// Arithmetic: f32 throughout, every operation rounded with Math.fround (a JS double holds the exact
// product of two f32 values' significands, and rounding a double sum, quotient or square root of
// f32 values to f32 gives the correctly rounded f32 result). Every sum is FORMAT.md's eight-lane
// sum, the order the SIMD kernels take. The weights are converted once per adaptor to f32 (exact
// for int8 and FP16 values), which keeps the loops monomorphic.
import * as F from "../../assembly/format.ts";
import { F16_TO_F32 } from "../fp16.ts";
import { heapFloats, TrainHeap } from "./kernels.ts";
import type { StoredAdaptor, StoredMatrix } from "./model.ts";

/** A stored matrix as exact f32 values, with its scales (int8) or null (FP16). */
interface Prepared {
  values: Float32Array;
  scales: Float32Array | null;
}

interface PreparedAdaptor {
  table: Prepared;
  layers: { weights: Prepared; bias: Float32Array; gamma: Float32Array | null; beta: Float32Array | null }[];
  /** Scratch rows, one per layer output, reused by every call. */
  scratch: Float32Array[];
  input: Float32Array;
}

const prepared = new WeakMap<StoredAdaptor, PreparedAdaptor>();

function halves(values: Uint16Array): Float32Array {
  return Float32Array.from(values, (v) => F16_TO_F32[v]);
}

function prepareMatrix(m: StoredMatrix): Prepared {
  return m.scales === null
    ? { values: halves(m.values as Uint16Array), scales: null }
    : { values: Float32Array.from(m.values as Int8Array), scales: halves(m.scales) };
}

function prepare(adaptor: StoredAdaptor): PreparedAdaptor {
  let p = prepared.get(adaptor);
  if (p === undefined) {
    p = {
      table: prepareMatrix(adaptor.table),
      layers: adaptor.layers.map((l) => ({
        weights: prepareMatrix(l.weights),
        bias: halves(l.bias),
        gamma: l.gamma && halves(l.gamma),
        beta: l.beta && halves(l.beta),
      })),
      scratch: adaptor.layers.map((l) => new Float32Array(l.outputs)),
      input: new Float32Array(adaptor.m0),
    };
    prepared.set(adaptor, p);
  }
  return p;
}

const f32 = Math.fround;
/** The LayerNorm epsilon as the f32 the runtime adds. */
const LN_EPS = f32(F.ADAPTOR_LN_EPS);

/** ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)), in f32. */
function combineLanes(s0: number, s1: number, s2: number, s3: number, s4: number, s5: number, s6: number, s7: number): number {
  return f32(f32(f32(s0 + s4) + f32(s1 + s5)) + f32(f32(s2 + s6) + f32(s3 + s7)));
}

/** The eight-lane sum of f32(w[row + i] · x[i]) for i < n (FORMAT.md, "The adaptor"). */
export function laneDot(w: Float32Array, row: number, x: Float32Array, n: number): number {
  let s0 = 0,
    s1 = 0,
    s2 = 0,
    s3 = 0,
    s4 = 0,
    s5 = 0,
    s6 = 0,
    s7 = 0;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const r = row + i;
    s0 = f32(s0 + f32(w[r] * x[i]));
    s1 = f32(s1 + f32(w[r + 1] * x[i + 1]));
    s2 = f32(s2 + f32(w[r + 2] * x[i + 2]));
    s3 = f32(s3 + f32(w[r + 3] * x[i + 3]));
    s4 = f32(s4 + f32(w[r + 4] * x[i + 4]));
    s5 = f32(s5 + f32(w[r + 5] * x[i + 5]));
    s6 = f32(s6 + f32(w[r + 6] * x[i + 6]));
    s7 = f32(s7 + f32(w[r + 7] * x[i + 7]));
  }
  let total = combineLanes(s0, s1, s2, s3, s4, s5, s6, s7);
  for (; i < n; i++) total = f32(total + f32(w[row + i] * x[i]));
  return total;
}

/** The eight-lane sum of term(y[i]) for i < n, where term is the identity or (y - mean)². */
function laneSum(y: Float32Array, n: number, mean: number | null): number {
  const term = (v: number): number => (mean === null ? v : f32(f32(v - mean) * f32(v - mean)));
  const s = [0, 0, 0, 0, 0, 0, 0, 0];
  let i = 0;
  for (; i + 8 <= n; i += 8) for (let l = 0; l < 8; l++) s[l] = f32(s[l] + term(y[i + l]));
  let total = combineLanes(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
  for (; i < n; i++) total = f32(total + term(y[i]));
  return total;
}

/** y = W·x + b for one layer: int8 as f32(scale · Σ w·x) + b, FP16 as Σ f32(w)·x + b. */
function linear(m: Prepared, outputs: number, inputs: number, x: Float32Array, bias: Float32Array, y: Float32Array): void {
  for (let o = 0; o < outputs; o++) {
    const sum = laneDot(m.values, o * inputs, x, inputs);
    y[o] = f32((m.scales === null ? sum : f32(sum * m.scales[o])) + bias[o]);
  }
}

/** ReLU then LayerNorm, in place, in f32. */
function reluLayerNorm(y: Float32Array, width: number, gamma: Float32Array, beta: Float32Array): void {
  for (let o = 0; o < width; o++) y[o] = Math.max(0, y[o]);
  const mean = f32(laneSum(y, width, null) / width);
  const variance = f32(laneSum(y, width, mean) / width);
  const inverse = f32(1 / f32(Math.sqrt(f32(variance + LN_EPS))));
  for (let o = 0; o < width; o++) y[o] = f32(f32(f32(f32(y[o] - mean) * inverse) * gamma[o]) + beta[o]);
}

/** Adds gamma(t) to out[at, at + n). */
export function addAdaptorRow(adaptor: StoredAdaptor, t: number, out: Float32Array, at: number): void {
  const p = prepare(adaptor);
  const m0 = adaptor.m0;
  let x = p.input;
  const table = p.table;
  // Table row t, dequantized (int8: one f32 multiply by the row's scale).
  if (table.scales === null) for (let i = 0; i < m0; i++) x[i] = table.values[t * m0 + i];
  else for (let i = 0; i < m0; i++) x[i] = Math.fround(table.scales[t] * table.values[t * m0 + i]);
  for (let k = 0; k < adaptor.layers.length; k++) {
    const layer = adaptor.layers[k];
    const pl = p.layers[k];
    const y = p.scratch[k];
    linear(pl.weights, layer.outputs, layer.inputs, x, pl.bias, y);
    if (pl.gamma !== null && pl.beta !== null) reluLayerNorm(y, layer.outputs, pl.gamma, pl.beta);
    x = y;
  }
  for (let j = 0; j < x.length; j++) out[at + j] = Math.fround(out[at + j] + x[j]);
}

interface ForwardExports {
  adaptorLinear(w: number, scales: number, bias: number, x: number, y: number, tokens: number, inputs: number, outputs: number): void;
  adaptorReluLayerNorm(y: number, tokens: number, width: number, gamma: number, beta: number, eps: number): void;
}

/** Tokens per batch: a batch's widest layer input (32 x 512 floats) stays in the first cache levels. */
const BATCH = 32;

interface HeapLayer {
  inputs: number;
  outputs: number;
  w: number;
  /** 0 when the weights are FP16 (no scales). */
  scales: number;
  bias: number;
  gamma: number;
  beta: number;
  /** This layer's outputs for a batch (BATCH × outputs). */
  y: number;
}

function halvesTo(f: Float32Array, at: number, values: Uint16Array): void {
  for (let i = 0; i < values.length; i++) f[at + i] = F16_TO_F32[values[i]];
}

function storedTo(f: Float32Array, at: number, m: StoredMatrix): void {
  if (m.scales === null) halvesTo(f, at, m.values as Uint16Array);
  else f.set(m.values as Int8Array, at);
}

/** The kernel's view of this adaptor: the weights as exact f32 values, once per call. */
function load(adaptor: StoredAdaptor): { heap: TrainHeap; kernel: ForwardExports; layers: HeapLayer[]; x0: number } {
  const sizes = [BATCH * adaptor.m0];
  for (const l of adaptor.layers) sizes.push(l.inputs * l.outputs, l.outputs * 4, BATCH * l.outputs);
  const heap = new TrainHeap(heapFloats(sizes));
  const f = heap.f32;
  const x0 = heap.alloc(BATCH * adaptor.m0);
  const layers = adaptor.layers.map((l): HeapLayer => {
    const layer = {
      inputs: l.inputs,
      outputs: l.outputs,
      w: heap.alloc(l.inputs * l.outputs),
      scales: l.weights.scales === null ? 0 : heap.alloc(l.outputs),
      bias: heap.alloc(l.outputs),
      gamma: heap.alloc(l.outputs),
      beta: heap.alloc(l.outputs),
      y: heap.alloc(BATCH * l.outputs),
    };
    storedTo(f, layer.w, l.weights);
    if (l.weights.scales !== null) halvesTo(f, layer.scales, l.weights.scales);
    halvesTo(f, layer.bias, l.bias);
    if (l.gamma !== null && l.beta !== null) {
      halvesTo(f, layer.gamma, l.gamma);
      halvesTo(f, layer.beta, l.beta);
    }
    return layer;
  });
  return { heap, kernel: heap.kernel as unknown as ForwardExports, layers, x0 };
}

/**
 * Adds gamma(t) to row t of `out` (rows × n, n the adaptor's output width) for every token t <
 * rows: the reference's addAdaptorRow for each row, the same bits.
 */
export function addAdaptorRows(adaptor: StoredAdaptor, out: Float32Array, rows: number): void {
  const n = adaptor.layers[adaptor.layers.length - 1].outputs;
  const { heap, kernel, layers, x0 } = load(adaptor);
  const f = heap.f32;
  const { m0, table } = adaptor;
  const values = table.values;
  const eps = Math.fround(F.ADAPTOR_LN_EPS);
  for (let t0 = 0; t0 < rows; t0 += BATCH) {
    const count = Math.min(BATCH, rows - t0);
    // Table rows, dequantized as the reference does (int8: one f32 multiply by the row's scale).
    for (let r = 0; r < count; r++) {
      const t = t0 + r;
      for (let i = 0; i < m0; i++)
        f[x0 + r * m0 + i] =
          table.scales === null ? F16_TO_F32[values[t * m0 + i]] : Math.fround(F16_TO_F32[table.scales[t]] * values[t * m0 + i]);
    }
    let x = x0;
    for (let li = 0; li < layers.length; li++) {
      const l = layers[li];
      kernel.adaptorLinear(4 * l.w, l.scales === 0 ? 0 : 4 * l.scales, 4 * l.bias, 4 * x, 4 * l.y, count, l.inputs, l.outputs);
      if (adaptor.layers[li].gamma !== null) kernel.adaptorReluLayerNorm(4 * l.y, count, l.outputs, 4 * l.gamma, 4 * l.beta, eps);
      x = l.y;
    }
    for (let i = 0; i < count * n; i++) out[t0 * n + i] = Math.fround(out[t0 * n + i] + f[x + i]);
  }
}
