// IEEE 754 binary16 conversions. Node 20 has no Float16Array, so these work on raw bit patterns.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Rounds an f32 value to the nearest FP16 bit pattern (ties to even). Overflow gives ±Inf. */
export function f32ToF16(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half: value = m * 2^-24; shift the full f32 significand into place and round.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    const halfway = 1 << (shift - 1);
    const remainder = mantissa & ((1 << shift) - 1);
    let rounded = mantissa >>> shift;
    if (remainder > halfway || (remainder === halfway && (rounded & 1) === 1)) rounded++;
    return sign | rounded;
  }
  // Normal half. A carry out of the mantissa correctly bumps the exponent (up to Inf).
  let rounded = (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder === 0x1000 && (rounded & 1) === 1)) rounded++;
  return sign | rounded;
}

function f16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Every FP16 bit pattern's f32 value: decoding is one table read. */
export const F16_TO_F32: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) table[bits] = f16BitsToNumber(bits);
  return table;
})();

/** The f32 value of an FP16 bit pattern (exact: every FP16 value is an f32 value). */
export function f16ToF32(bits: number): number {
  return F16_TO_F32[bits & 0xffff];
}

/** The largest finite FP16 magnitude; quantizers clamp to it so that no Inf is ever stored. */
export const F16_MAX = 65504;

/** `value` rounded to FP16 precision, clamped to the finite range. */
export function roundToF16(value: number): number {
  return F16_TO_F32[f32ToF16(Math.max(-F16_MAX, Math.min(F16_MAX, value)))];
}
