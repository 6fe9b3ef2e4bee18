// The reference evaluation of a stored adaptor (FORMAT.md, "The adaptor"), which both runtime
// builds reproduce bit for bit.
//
// Arithmetic: f32 throughout, every operation rounded with Math.fround (a JS double holds the exact
// product of two f32 values' significands, and rounding a double sum, quotient or square root of
// f32 values to f32 gives the correctly rounded f32 result). Every sum is FORMAT.md's eight-lane
// sum, the order the SIMD kernels take. The weights are converted once per adaptor to f32 (exact
// for int8 and FP16 values), which keeps the loops monomorphic.
import * as F from "../../assembly/format.ts";
import { F16_TO_F32 } from "../fp16.ts";
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
  return m.scales === null ? { values: halves(m.values as Uint16Array), scales: null } : { values: Float32Array.from(m.values as Int8Array), scales: halves(m.scales) };
}

function prepare(adaptor: StoredAdaptor): PreparedAdaptor {
  let p = prepared.get(adaptor);
  if (p === undefined) {
    p = {
      table: prepareMatrix(adaptor.table),
      layers: adaptor.layers.map((l) => ({ weights: prepareMatrix(l.weights), bias: halves(l.bias), gamma: l.gamma && halves(l.gamma), beta: l.beta && halves(l.beta) })),
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
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
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
