import { F16_TO_F32 } from "../fp16.ts";

/**
 * ggml's block-quantized types: their sizes (for every type, so a GGUF's byte ranges can be checked
 * whatever it holds) and dequantization for the types a token embedding usually comes in.
 *
 * Each `dequantize*` function reproduces ggml's reference dequantize_row_* (ggml-quants.c) value for
 * value: the same float32 products and sums in the same order, FP16 scales widened exactly. Each
 * operation takes float32 (or small integer) operands, so computing it in double and rounding once
 * with Math.fround gives the float32 result C computes (double has more than twice float32's
 * precision); the last operation's rounding is the store into the Float32Array itself. The scale products (an FP16 value, 11 significant bits, times an integer of at most 8
 * bits) are exact in float32, so FMA contraction in a C build (`a * q - m` fused) cannot change a
 * result either: the fused and unfused forms round the same exact product once.
 */

/** One ggml type: elements per block and bytes per block. */
export interface GgmlBlockType {
  readonly name: string;
  readonly blockElements: number;
  readonly blockBytes: number;
}

const QK_K = 256;

/** ggml_type ids with their names and block geometry (ggml.c's type_traits). Removed ids keep a name for the refusal. */
export const GGML_TYPES: Readonly<Record<number, GgmlBlockType>> = {
  0: { name: "F32", blockElements: 1, blockBytes: 4 },
  1: { name: "F16", blockElements: 1, blockBytes: 2 },
  2: { name: "Q4_0", blockElements: 32, blockBytes: 18 },
  3: { name: "Q4_1", blockElements: 32, blockBytes: 20 },
  6: { name: "Q5_0", blockElements: 32, blockBytes: 22 },
  7: { name: "Q5_1", blockElements: 32, blockBytes: 24 },
  8: { name: "Q8_0", blockElements: 32, blockBytes: 34 },
  9: { name: "Q8_1", blockElements: 32, blockBytes: 36 },
  10: { name: "Q2_K", blockElements: QK_K, blockBytes: 84 },
  11: { name: "Q3_K", blockElements: QK_K, blockBytes: 110 },
  12: { name: "Q4_K", blockElements: QK_K, blockBytes: 144 },
  13: { name: "Q5_K", blockElements: QK_K, blockBytes: 176 },
  14: { name: "Q6_K", blockElements: QK_K, blockBytes: 210 },
  15: { name: "Q8_K", blockElements: QK_K, blockBytes: 292 },
  16: { name: "IQ2_XXS", blockElements: QK_K, blockBytes: 66 },
  17: { name: "IQ2_XS", blockElements: QK_K, blockBytes: 74 },
  18: { name: "IQ3_XXS", blockElements: QK_K, blockBytes: 98 },
  19: { name: "IQ1_S", blockElements: QK_K, blockBytes: 50 },
  20: { name: "IQ4_NL", blockElements: 32, blockBytes: 18 },
  21: { name: "IQ3_S", blockElements: QK_K, blockBytes: 110 },
  22: { name: "IQ2_S", blockElements: QK_K, blockBytes: 82 },
  23: { name: "IQ4_XS", blockElements: QK_K, blockBytes: 136 },
  24: { name: "I8", blockElements: 1, blockBytes: 1 },
  25: { name: "I16", blockElements: 1, blockBytes: 2 },
  26: { name: "I32", blockElements: 1, blockBytes: 4 },
  27: { name: "I64", blockElements: 1, blockBytes: 8 },
  28: { name: "F64", blockElements: 1, blockBytes: 8 },
  29: { name: "IQ1_M", blockElements: QK_K, blockBytes: 56 },
  30: { name: "BF16", blockElements: 1, blockBytes: 2 },
  34: { name: "TQ1_0", blockElements: QK_K, blockBytes: 54 },
  35: { name: "TQ2_0", blockElements: QK_K, blockBytes: 66 },
  39: { name: "MXFP4", blockElements: 32, blockBytes: 17 },
  40: { name: "NVFP4", blockElements: 64, blockBytes: 36 },
  41: { name: "Q1_0", blockElements: 128, blockBytes: 18 },
  42: { name: "Q2_0", blockElements: 64, blockBytes: 18 },
};

/** Ids ggml has retired (runtime-repacked Q4_0/IQ4_NL layouts): no GGUF may hold them. */
export const GGML_REMOVED_TYPES: Readonly<Record<number, string>> = {
  4: "Q4_2",
  5: "Q4_3",
  31: "Q4_0_4_4",
  32: "Q4_0_4_8",
  33: "Q4_0_8_8",
  36: "IQ4_NL_4_4",
  37: "IQ4_NL_4_8",
  38: "IQ4_NL_8_8",
};

/** By name, for the readers that carry dtype names rather than ids. */
export const GGML_TYPES_BY_NAME: ReadonlyMap<string, GgmlBlockType> = new Map(Object.values(GGML_TYPES).map((t) => [t.name, t]));

/** Bits per weight a type stores, e.g. 4.5 for Q4_K (144 bytes per 256 weights). */
export function bitsPerWeight(type: GgmlBlockType): number {
  return (type.blockBytes * 8) / type.blockElements;
}

/** Dequantizes whole blocks: `source` holds n blocks, `target` receives n x blockElements values. */
export type Dequantizer = (source: Uint8Array, target: Float32Array) => void;

const f16 = (bytes: Uint8Array, at: number): number => F16_TO_F32[bytes[at] | (bytes[at + 1] << 8)];
const fr = Math.fround;

/** Q4_0: FP16 d, 16 bytes of nibbles; low nibbles are elements 0..15, high 16..31; x = (q - 8) * d. */
export function dequantizeQ4_0(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 18, out += 32) {
    const d = f16(source, at);
    for (let j = 0; j < 16; j++) {
      const q = source[at + 2 + j];
      target[out + j] = ((q & 0x0f) - 8) * d;
      target[out + j + 16] = ((q >> 4) - 8) * d;
    }
  }
}

/** Q4_1: FP16 d and m, 16 bytes of nibbles; x = q * d + m. */
export function dequantizeQ4_1(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 20, out += 32) {
    const d = f16(source, at);
    const m = f16(source, at + 2);
    for (let j = 0; j < 16; j++) {
      const q = source[at + 4 + j];
      target[out + j] = fr((q & 0x0f) * d) + m;
      target[out + j + 16] = fr((q >> 4) * d) + m;
    }
  }
}

/** The little-endian u32 of fifth bits at `at` (Q5_0, Q5_1). */
function highBits(source: Uint8Array, at: number): number {
  return (source[at] | (source[at + 1] << 8) | (source[at + 2] << 16) | (source[at + 3] << 24)) >>> 0;
}

/** Q5_0: FP16 d, a u32 of fifth bits, 16 bytes of nibbles; x = (q - 16) * d. */
export function dequantizeQ5_0(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 22, out += 32) {
    const d = f16(source, at);
    const qh = highBits(source, at + 2);
    for (let j = 0; j < 16; j++) {
      const q = source[at + 6 + j];
      const high0 = ((qh >>> j) << 4) & 0x10;
      const high1 = (qh >>> (j + 12)) & 0x10;
      target[out + j] = (((q & 0x0f) | high0) - 16) * d;
      target[out + j + 16] = (((q >> 4) | high1) - 16) * d;
    }
  }
}

/** Q5_1: FP16 d and m, a u32 of fifth bits, 16 bytes of nibbles; x = q * d + m. */
export function dequantizeQ5_1(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 24, out += 32) {
    const d = f16(source, at);
    const m = f16(source, at + 2);
    const qh = highBits(source, at + 4);
    for (let j = 0; j < 16; j++) {
      const q = source[at + 8 + j];
      const high0 = ((qh >>> j) << 4) & 0x10;
      const high1 = (qh >>> (j + 12)) & 0x10;
      target[out + j] = fr(((q & 0x0f) | high0) * d) + m;
      target[out + j + 16] = fr(((q >> 4) | high1) * d) + m;
    }
  }
}

/** Q8_0: FP16 d, 32 int8; x = q * d. */
export function dequantizeQ8_0(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 34, out += 32) {
    const d = f16(source, at);
    for (let j = 0; j < 32; j++) target[out + j] = ((source[at + 2 + j] << 24) >> 24) * d;
  }
}

/**
 * Q2_K: 16 bytes of 4-bit scale (low) and min (high) pairs, 64 bytes of 2-bit quants, FP16 d and dmin.
 * Sub-block s of 16 values: x = (d * scale_s) * q - (dmin * min_s).
 */
export function dequantizeQ2_K(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 84) {
    const d = f16(source, at + 80);
    const min = f16(source, at + 82);
    let scaleIndex = 0;
    for (let half = 0; half < 2; half++) {
      const q = at + 16 + half * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const sc = source[at + scaleIndex++];
          const dl = fr(d * (sc & 0x0f));
          const ml = fr(min * (sc >> 4));
          for (let l = 0; l < 16; l++) target[out++] = fr(dl * ((source[q + part * 16 + l] >> shift) & 3)) - ml;
        }
      }
    }
  }
}

/** The 16 signed 6-bit scales of a Q3_K block, unpacked from its 12 bytes as ggml does (minus 32). */
function q3kScales(source: Uint8Array, at: number, scales: Int8Array): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? source[at + j] & 0x0f : source[at + j - 8] >> 4;
    const high = (source[at + 8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    scales[j] = (low | (high << 4)) - 32;
  }
}

/**
 * Q3_K: 32 bytes of high bits, 64 bytes of 2-bit quants, 12 bytes of 6-bit scales, FP16 d.
 * Sub-block s of 16 values: x = (d * (scale_s - 32)) * (q - (high bit set ? 0 : 4)).
 */
export function dequantizeQ3_K(source: Uint8Array, target: Float32Array): void {
  const scales = new Int8Array(16);
  for (let at = 0, out = 0; at < source.length; at += 110) {
    const d = f16(source, at + 108);
    q3kScales(source, at + 96, scales);
    let scaleIndex = 0;
    let mask = 1;
    for (let half = 0; half < 2; half++) {
      const q = at + 32 + half * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const dl = fr(d * scales[scaleIndex++]);
          for (let l = 0; l < 16; l++) {
            const i = part * 16 + l;
            const value = ((source[q + i] >> shift) & 3) - ((source[at + i] & mask) !== 0 ? 0 : 4);
            target[out++] = dl * value;
          }
        }
        mask <<= 1;
      }
    }
  }
}

/** ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes at `at`. */
function scaleMinK4(source: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [source[at + j] & 63, source[at + j + 4] & 63];
  return [(source[at + j + 4] & 0x0f) | ((source[at + j - 4] >> 6) << 4), (source[at + j + 4] >> 4) | ((source[at + j] >> 6) << 4)];
}

/**
 * Q4_K: FP16 d and dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles. Eight sub-blocks of
 * 32: x = (d * scale) * q - (dmin * min); each 32 bytes give one sub-block's low nibbles, the next's high.
 */
export function dequantizeQ4_K(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 144) {
    const d = f16(source, at);
    const min = f16(source, at + 2);
    for (let pair = 0; pair < 4; pair++) {
      const q = at + 16 + pair * 32;
      const [sc1, m1] = scaleMinK4(source, at + 4, 2 * pair);
      const [sc2, m2] = scaleMinK4(source, at + 4, 2 * pair + 1);
      const d1 = fr(d * sc1),
        min1 = fr(min * m1);
      const d2 = fr(d * sc2),
        min2 = fr(min * m2);
      for (let l = 0; l < 32; l++) target[out++] = fr(d1 * (source[q + l] & 0x0f)) - min1;
      for (let l = 0; l < 32; l++) target[out++] = fr(d2 * (source[q + l] >> 4)) - min2;
    }
  }
}

/** Q5_K: Q4_K's layout with 32 bytes of fifth bits before the nibbles; fifth bit of sub-block s is bit s of qh[l]. */
export function dequantizeQ5_K(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 176) {
    const d = f16(source, at);
    const min = f16(source, at + 2);
    const qh = at + 16;
    for (let pair = 0; pair < 4; pair++) {
      const q = at + 48 + pair * 32;
      const [sc1, m1] = scaleMinK4(source, at + 4, 2 * pair);
      const [sc2, m2] = scaleMinK4(source, at + 4, 2 * pair + 1);
      const d1 = fr(d * sc1),
        min1 = fr(min * m1);
      const d2 = fr(d * sc2),
        min2 = fr(min * m2);
      const bit1 = 1 << (2 * pair),
        bit2 = 2 << (2 * pair);
      for (let l = 0; l < 32; l++) target[out++] = fr(d1 * ((source[q + l] & 0x0f) + ((source[qh + l] & bit1) !== 0 ? 16 : 0))) - min1;
      for (let l = 0; l < 32; l++) target[out++] = fr(d2 * ((source[q + l] >> 4) + ((source[qh + l] & bit2) !== 0 ? 16 : 0))) - min2;
    }
  }
}

/**
 * Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, FP16 d. Sub-block s of
 * 16 values: x = (d * scale_s) * (q - 32), the product taken left to right as in ggml.
 */
export function dequantizeQ6_K(source: Uint8Array, target: Float32Array): void {
  for (let at = 0, out = 0; at < source.length; at += 210, out += QK_K) {
    const d = f16(source, at + 208);
    for (let half = 0; half < 2; half++) {
      const ql = at + half * 64;
      const qh = at + 128 + half * 32;
      const sc = at + 192 + half * 8;
      const y = out + half * 128;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = source[qh + l];
        const q1 = ((source[ql + l] & 0x0f) | ((h & 3) << 4)) - 32;
        const q2 = ((source[ql + l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((source[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((source[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        target[y + l] = fr(d * signedByte(source[sc + is])) * q1;
        target[y + l + 32] = fr(d * signedByte(source[sc + is + 2])) * q2;
        target[y + l + 64] = fr(d * signedByte(source[sc + is + 4])) * q3;
        target[y + l + 96] = fr(d * signedByte(source[sc + is + 6])) * q4;
      }
    }
  }
}

function signedByte(byte: number): number {
  return (byte << 24) >> 24;
}

/** The block-quantized types carvq reads, by name. */
export const DEQUANTIZERS: ReadonlyMap<string, Dequantizer> = new Map([
  ["Q4_0", dequantizeQ4_0],
  ["Q4_1", dequantizeQ4_1],
  ["Q5_0", dequantizeQ5_0],
  ["Q5_1", dequantizeQ5_1],
  ["Q8_0", dequantizeQ8_0],
  ["Q2_K", dequantizeQ2_K],
  ["Q3_K", dequantizeQ3_K],
  ["Q4_K", dequantizeQ4_K],
  ["Q5_K", dequantizeQ5_K],
  ["Q6_K", dequantizeQ6_K],
]);
