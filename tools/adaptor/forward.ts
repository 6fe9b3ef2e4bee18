// The reference evaluation of a stored adaptor (FORMAT.md, "The adaptor"): what the runtime must
// reproduce to a relative difference of 1e-5 per row.
import * as F from "../../assembly/format.ts";
import { F16_TO_F32 } from "../fp16.ts";
import type { StoredAdaptor, StoredMatrix } from "./model.ts";

/** Row r's value i of a stored matrix, dequantized (int8: one f32 multiply by the row's scale). */
function valueAt(m: StoredMatrix, r: number, width: number, i: number): number {
  return m.scales === null ? F16_TO_F32[m.values[r * width + i]] : Math.fround(F16_TO_F32[m.scales[r]] * m.values[r * width + i]);
}

/** y = W·x + b for one layer, int8 as scale·(Σ w·x), FP16 as Σ f32(w)·x. */
function linear(m: StoredMatrix, outputs: number, inputs: number, x: Float32Array, bias: Uint16Array, y: Float32Array): void {
  for (let o = 0; o < outputs; o++) {
    let sum = 0;
    if (m.scales === null) {
      for (let i = 0; i < inputs; i++) sum += F16_TO_F32[m.values[o * inputs + i]] * x[i];
    } else {
      for (let i = 0; i < inputs; i++) sum += m.values[o * inputs + i] * x[i];
      sum *= F16_TO_F32[m.scales[o]];
    }
    y[o] = sum + F16_TO_F32[bias[o]];
  }
}

/** ReLU then LayerNorm, in place. */
function reluLayerNorm(y: Float32Array, width: number, gamma: Uint16Array, beta: Uint16Array): void {
  let mean = 0;
  for (let o = 0; o < width; o++) {
    y[o] = Math.max(0, y[o]);
    mean += y[o];
  }
  mean /= width;
  let variance = 0;
  for (let o = 0; o < width; o++) variance += (y[o] - mean) ** 2;
  const inverse = 1 / Math.sqrt(variance / width + F.ADAPTOR_LN_EPS);
  for (let o = 0; o < width; o++) y[o] = (y[o] - mean) * inverse * F16_TO_F32[gamma[o]] + F16_TO_F32[beta[o]];
}

/** Adds gamma(t) to out[at, at + n). */
export function addAdaptorRow(adaptor: StoredAdaptor, t: number, out: Float32Array, at: number): void {
  let x = new Float32Array(adaptor.m0);
  for (let i = 0; i < adaptor.m0; i++) x[i] = valueAt(adaptor.table, t, adaptor.m0, i);
  for (let k = 0; k < adaptor.layers.length; k++) {
    const layer = adaptor.layers[k];
    const y = new Float32Array(layer.outputs);
    linear(layer.weights, layer.outputs, layer.inputs, x, layer.bias, y);
    if (layer.gamma !== null && layer.beta !== null) reluLayerNorm(y, layer.outputs, layer.gamma, layer.beta);
    x = y;
  }
  for (let j = 0; j < x.length; j++) out[at + j] = Math.fround(out[at + j] + x[j]);
}
