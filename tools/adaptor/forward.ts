// The reference evaluation of a stored adaptor (FORMAT.md, "The adaptor"): what the runtime must
// reproduce to a relative difference of 1e-5 per row.
//
// Arithmetic: every dot product is summed in f64 (JS numbers) in order of increasing input index,
// int8 as scale·(Σ w·x) and FP16 as Σ f32(w)·x; each layer's outputs are stored as f32. The
// weights are converted once per adaptor to f32 (exact for int8 and FP16 values), which changes
// nothing in the sums and keeps the loops monomorphic.
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

/** y = W·x + b for one layer, int8 as scale·(Σ w·x), FP16 as Σ f32(w)·x. */
function linear(m: Prepared, outputs: number, inputs: number, x: Float32Array, bias: Float32Array, y: Float32Array): void {
  const w = m.values;
  let o = 0;
  // Four outputs at a time, each its own sum in its own order (independent chains, same results).
  for (; o + 4 <= outputs; o += 4) {
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    const r0 = o * inputs;
    const r1 = r0 + inputs;
    const r2 = r1 + inputs;
    const r3 = r2 + inputs;
    for (let i = 0; i < inputs; i++) {
      const xi = x[i];
      s0 += w[r0 + i] * xi;
      s1 += w[r1 + i] * xi;
      s2 += w[r2 + i] * xi;
      s3 += w[r3 + i] * xi;
    }
    if (m.scales !== null) {
      s0 *= m.scales[o];
      s1 *= m.scales[o + 1];
      s2 *= m.scales[o + 2];
      s3 *= m.scales[o + 3];
    }
    y[o] = s0 + bias[o];
    y[o + 1] = s1 + bias[o + 1];
    y[o + 2] = s2 + bias[o + 2];
    y[o + 3] = s3 + bias[o + 3];
  }
  for (; o < outputs; o++) {
    let sum = 0;
    const row = o * inputs;
    for (let i = 0; i < inputs; i++) sum += w[row + i] * x[i];
    if (m.scales !== null) sum *= m.scales[o];
    y[o] = sum + bias[o];
  }
}

/** ReLU then LayerNorm, in place. */
function reluLayerNorm(y: Float32Array, width: number, gamma: Float32Array, beta: Float32Array): void {
  let mean = 0;
  for (let o = 0; o < width; o++) {
    y[o] = Math.max(0, y[o]);
    mean += y[o];
  }
  mean /= width;
  let variance = 0;
  for (let o = 0; o < width; o++) variance += (y[o] - mean) ** 2;
  const inverse = 1 / Math.sqrt(variance / width + F.ADAPTOR_LN_EPS);
  for (let o = 0; o < width; o++) y[o] = (y[o] - mean) * inverse * gamma[o] + beta[o];
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
