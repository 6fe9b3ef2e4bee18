// The corrective adaptor (the paper's "CA"): gamma(t) = sigma1(sigma0[t]), sigma0 a per-token table
// of m0 values, sigma1 an MLP with ReLU then LayerNorm after each hidden layer and a linear last
// layer. Two forms: float (what training produces) and stored (what a blob holds, FORMAT.md v1.2),
// with the stored form's exact size in bytes.
import * as F from "../../assembly/format.ts";

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

/** Bytes of one stored matrix of rows × width (values, then int8 scales). */
function matrixBytes(int8: boolean, rows: number, width: number): number {
  return int8 ? rows * width + 2 * rows : 2 * rows * width;
}

/** Bytes of the ADAPTOR_MLP section for these widths. */
export function mlpSectionBytes(int8: boolean, widths: readonly number[]): number {
  let bytes = 8 + 4 * widths.length;
  for (let k = 0; k + 1 < widths.length; k++) {
    const out = widths[k + 1];
    bytes += matrixBytes(int8, out, widths[k]) + 2 * out + (k + 2 < widths.length ? 4 * out : 0);
  }
  return bytes;
}

/** Bytes of one ADAPTOR_TABLE record. */
export function tableRowBytes(int8: boolean, m0: number): number {
  return int8 ? 2 + m0 : 2 * m0;
}

/** Bytes of both adaptor sections (ADAPTOR_TABLE and ADAPTOR_MLP) of a stored adaptor. */
export function storedAdaptorBytes(adaptor: StoredAdaptor): number {
  const widths = adaptorWidths(adaptor);
  return (
    F.ADAPTOR_TABLE_HEADER_BYTES +
    adaptor.rows * tableRowBytes(adaptor.table.scales !== null, adaptor.m0) +
    mlpSectionBytes(adaptor.layers[0].weights.scales !== null, widths)
  );
}

/** int8 when the matrix has scales, else FP16. */
export function precisionOf(m: StoredMatrix): AdaptorPrecision {
  return m.scales === null ? "fp16" : "int8";
}

/** The layer widths m0 -> ... -> n of an adaptor. */
export function adaptorWidths(adaptor: { m0: number; layers: readonly { outputs: number }[] }): number[] {
  return [adaptor.m0, ...adaptor.layers.map((layer) => layer.outputs)];
}

/** How far a drawn adaptor's values spread: each value is draw(scale), e.g. uniform in ±scale/2. */
export interface DrawScales {
  table: number;
  weights: number;
  bias: number;
}

/**
 * A float adaptor of `widths` (m0 ... n) whose values come from `draw`, in one fixed order: the
 * table, then per layer its weights, its bias and, on hidden layers, gamma (1 + draw(1)) and beta
 * (draw(0.2)). Tests and the fuzzer build random adaptors with it, so the same draws give the
 * same adaptor everywhere.
 */
export function drawFloatAdaptor(
  rows: number,
  widths: readonly number[],
  draw: (scale: number) => number,
  scale: DrawScales,
): FloatAdaptor {
  const values = (count: number, s: number) => Float32Array.from({ length: count }, () => draw(s));
  return {
    rows,
    m0: widths[0],
    table: values(rows * widths[0], scale.table),
    layers: widths.slice(1).map((outputs, k) => {
      const hidden = k + 2 < widths.length;
      return {
        inputs: widths[k],
        outputs,
        weights: values(outputs * widths[k], scale.weights),
        bias: values(outputs, scale.bias),
        gamma: hidden ? values(outputs, 1).map((v) => 1 + v) : null,
        beta: hidden ? values(outputs, 0.2) : null,
      };
    }),
  };
}
