// From trained f32 parameters to what a blob stores: int8 with one FP16 scale per row / output
// channel (symmetric, scale = max|w| / 127), or FP16; biases and LayerNorm parameters FP16.
import { F16_TO_F32, f32ToF16, F16_MAX } from "../fp16.ts";
import type { AdaptorPrecision, FloatAdaptor, StoredAdaptor, StoredMatrix } from "./model.ts";

function toF16(values: Float32Array): Uint16Array {
  return Uint16Array.from(values, (v) => f32ToF16(Math.max(-F16_MAX, Math.min(F16_MAX, v))));
}

/** Quantizes a rows × width matrix row by row. */
export function quantizeMatrix(values: Float32Array, rows: number, width: number, precision: AdaptorPrecision): StoredMatrix {
  if (precision === "fp16") return { values: toF16(values), scales: null };
  const quantized = new Int8Array(rows * width);
  const scales = new Uint16Array(rows);
  for (let r = 0; r < rows; r++) {
    let maxAbs = 0;
    for (let i = r * width; i < (r + 1) * width; i++) maxAbs = Math.max(maxAbs, Math.abs(values[i]));
    scales[r] = f32ToF16(Math.min(F16_MAX, maxAbs / 127));
    const scale = F16_TO_F32[scales[r]];
    for (let i = r * width; i < (r + 1) * width; i++)
      quantized[i] = scale > 0 ? Math.max(-127, Math.min(127, Math.round(values[i] / scale))) : 0;
  }
  return { values: quantized, scales };
}

/** The stored form of trained parameters; the table and the MLP weights may differ in precision. */
export function quantizeAdaptor(
  adaptor: FloatAdaptor,
  precision: AdaptorPrecision,
  tablePrecision: AdaptorPrecision = precision,
): StoredAdaptor {
  return {
    rows: adaptor.rows,
    m0: adaptor.m0,
    table: quantizeMatrix(adaptor.table, adaptor.rows, adaptor.m0, tablePrecision),
    layers: adaptor.layers.map((layer) => ({
      inputs: layer.inputs,
      outputs: layer.outputs,
      weights: quantizeMatrix(layer.weights, layer.outputs, layer.inputs, precision),
      bias: toF16(layer.bias),
      gamma: layer.gamma ? toF16(layer.gamma) : null,
      beta: layer.beta ? toF16(layer.beta) : null,
    })),
  };
}
