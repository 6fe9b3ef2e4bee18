// Scalar baselines: symmetric intB quantization with one FP16 scale per block of B consecutive
// values of a row (int4/int3/int2), so every comparison is made by one tool in one blob family.
import { F16_TO_F32, f32ToF16, F16_MAX } from "../fp16.ts";
import type { Matrix } from "../matrix.ts";

export interface ScalarEncoding {
  /** rows · blocks FP16 scale bit patterns. */
  scales: Uint16Array;
  /** rows · cols unsigned codes, value = (code − 2^(bits−1)) · scale. */
  codes: Uint8Array;
  blocks: number;
}

/** Quantizes each block with scale = max|x| / (2^(bits−1) − 1), rounded to FP16. */
export function encodeScalar(matrix: Matrix, bits: number, block: number): ScalarEncoding {
  const { rows, cols, data } = matrix;
  const blocks = Math.ceil(cols / block);
  const qmax = (1 << (bits - 1)) - 1;
  const bias = 1 << (bits - 1);
  const scales = new Uint16Array(rows * blocks);
  const codes = new Uint8Array(rows * cols);
  for (let t = 0; t < rows; t++) {
    for (let b = 0; b < blocks; b++) {
      const start = t * cols + b * block;
      const end = t * cols + Math.min(cols, (b + 1) * block);
      let maxAbs = 0;
      for (let i = start; i < end; i++) maxAbs = Math.max(maxAbs, Math.abs(data[i]));
      const half = f32ToF16(Math.min(F16_MAX, maxAbs / qmax));
      scales[t * blocks + b] = half;
      const scale = F16_TO_F32[half];
      for (let i = start; i < end; i++) {
        const q = scale > 0 ? Math.max(-qmax, Math.min(qmax, Math.round(data[i] / scale))) : 0;
        codes[i] = q + bias;
      }
    }
  }
  return { scales, codes, blocks };
}

/** Decodes row t of a `cols`-column table into out[at, at + cols): (code − 2^(bits−1)) · its block's scale, in f32. */
export function decodeScalarRow(
  encoding: ScalarEncoding,
  cols: number,
  bits: number,
  block: number,
  t: number,
  out: Float32Array,
  at: number,
): void {
  const bias = 1 << (bits - 1);
  for (let j = 0; j < cols; j++) {
    const scale = F16_TO_F32[encoding.scales[t * encoding.blocks + Math.floor(j / block)]];
    out[at + j] = Math.fround((encoding.codes[t * cols + j] - bias) * scale);
  }
}

/** The table a scalar encoding decodes to. */
export function decodeScalar(encoding: ScalarEncoding, rows: number, cols: number, bits: number, block: number): Matrix {
  const data = new Float32Array(rows * cols);
  for (let t = 0; t < rows; t++) decodeScalarRow(encoding, cols, bits, block, t, data, t * cols);
  return { rows, cols, data };
}
