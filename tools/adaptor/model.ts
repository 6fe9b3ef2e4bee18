// The corrective adaptor (the paper's "CA"): gamma(t) = sigma1(sigma0[t]), sigma0 a per-token table
// of m0 values, sigma1 an MLP with ReLU then LayerNorm after each hidden layer and a linear last
// layer. Two forms: float (what training produces) and stored (what a blob holds, FORMAT.md v1.2).

export type AdaptorPrecision = "int8" | "fp16";

/** Training-time f32 parameters. Layer k: weights outputs × inputs, output-channel-major. */
export interface FloatAdaptor {
  rows: number;
  m0: number;
  table: Float32Array;
  layers: FloatLayer[];
}

export interface FloatLayer {
  inputs: number;
  outputs: number;
  weights: Float32Array;
  bias: Float32Array;
  /** LayerNorm parameters of a hidden layer; null on the last (linear) layer. */
  gamma: Float32Array | null;
  beta: Float32Array | null;
}

/**
 * The adaptor as stored. int8: `values` are Int8Array with one FP16 scale per table row or per
 * output channel; fp16: `values` are FP16 bit patterns and `scales` is null. Biases and LayerNorm
 * parameters are always FP16 bit patterns.
 */
export interface StoredAdaptor {
  rows: number;
  m0: number;
  table: StoredMatrix;
  layers: StoredLayer[];
}

export interface StoredMatrix {
  /** int8: Int8Array; fp16: FP16 bit patterns. Row-major (rows × width). */
  values: Int8Array | Uint16Array;
  /** int8: one FP16 scale per row; fp16: null. */
  scales: Uint16Array | null;
}

export interface StoredLayer {
  inputs: number;
  outputs: number;
  weights: StoredMatrix;
  bias: Uint16Array;
  gamma: Uint16Array | null;
  beta: Uint16Array | null;
}

/** int8 when the matrix has scales, else FP16. */
export function precisionOf(m: StoredMatrix): AdaptorPrecision {
  return m.scales === null ? "fp16" : "int8";
}

/** The layer widths m0 -> ... -> n of an adaptor. */
export function adaptorWidths(adaptor: { m0: number; layers: readonly { outputs: number }[] }): number[] {
  return [adaptor.m0, ...adaptor.layers.map((layer) => layer.outputs)];
}
