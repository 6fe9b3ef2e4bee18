import { describe, expect, it } from "vitest";
import { f16ToF32, f32ToF16, roundToF16 } from "../tools/fp16.ts";

describe("fp16", () => {
  it("converts known values exactly", () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // rounds up to Inf
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -26)).toBe(0x0000);
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f16ToF32(0x3555)).toBeCloseTo(0.333251953125, 12);
  });

  it("round-trips every finite half and rounds ties to even", () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = f16ToF32(bits);
      if (Number.isNaN(value)) continue;
      expect(f32ToF16(value)).toBe(bits);
    }
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to the even mantissa (1).
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it("roundToF16 clamps to the finite range", () => {
    expect(roundToF16(1e6)).toBe(65504);
    expect(roundToF16(-1e6)).toBe(-65504);
  });
});
