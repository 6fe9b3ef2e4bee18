import { F16_TO_F32 } from "../fp16.ts";

/**
 * Bulk FP16 and BF16 to float32 conversion for the model readers. FP16 goes through the blob's own
 * table (tools/fp16.ts), so a value read from a model and a value decoded from a blob widen alike.
 * Both conversions are exact: every FP16 and BF16 value is a float32 value.
 */

/** Converts `source` (binary16 bit patterns) into `target` (same length). */
export function convertF16ToF32(source: Uint16Array, target: Float32Array): void {
  for (let i = 0; i < source.length; i++) target[i] = F16_TO_F32[source[i]];
}

/** Converts `source` (bfloat16 bit patterns) into `target`: bfloat16 is the top half of a float32. */
export function convertBf16ToF32(source: Uint16Array, target: Float32Array): void {
  const targetBits = new Uint32Array(target.buffer, target.byteOffset, target.length);
  for (let i = 0; i < source.length; i++) targetBits[i] = source[i] << 16;
}
