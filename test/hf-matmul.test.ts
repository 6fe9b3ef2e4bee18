import { describe, expect, it } from "vitest";
import { f32ToF16 } from "../tools/fp16.ts";
import { matmulReference, type MatmulJob } from "../tools/hf/matmul.ts";

/** bf16 bits of an f32 value that bf16 holds exactly (the top half of its f32 bits). */
function bf16(value: number): number {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0];
  if ((bits & 0xffff) !== 0) throw new Error(`${value} is not a bf16 value`);
  return bits >>> 16;
}

describe("matmul reference (tools/hf/matmul.ts)", () => {
  it("sums in FORMAT.md's eight-lane order, not in plain order", () => {
    // One row of 9 terms (x = 1): lanes L0..L7 hold terms 0..7, term 8 is the tail:
    // ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)) + t8 = ((2^24 - 2^24) + 1) + (1 + 0) + 0.5 = 2.5.
    // In plain order 2^24 + 1 rounds to 2^24 (ties to even) twice, so the ones are lost: 0.5.
    const terms = [2 ** 24, 1, 1, 0, -(2 ** 24), 0, 0, 0, 0.5];
    const x = new Float32Array(9).fill(1);
    for (const dtype of ["bf16", "f32"] as const) {
      const weight = dtype === "f32" ? Float32Array.from(terms) : Uint16Array.from(terms, bf16);
      const out = new Float32Array(1);
      matmulReference({ x, rows: 1, weight, dtype, inDim: 9, outDim: 1, out });
      expect(out[0]).toBe(2.5);
    }
  });

  it("computes x · Wᵀ exactly where every partial sum is an integer (f16, several rows and columns)", () => {
    const rows = 3, inDim = 21, outDim = 5;
    const w = Array.from({ length: outDim * inDim }, (_, i) => ((i * 7) % 11) - 5);
    const xs = Array.from({ length: rows * inDim }, (_, i) => ((i * 5) % 9) - 4);
    const job: MatmulJob = { x: Float32Array.from(xs), rows, weight: Uint16Array.from(w, f32ToF16), dtype: "f16", inDim, outDim, out: new Float32Array(rows * outDim) };
    matmulReference(job);
    for (let t = 0; t < rows; t++) {
      for (let o = 0; o < outDim; o++) {
        let sum = 0;
        for (let k = 0; k < inDim; k++) sum += w[o * inDim + k] * xs[t * inDim + k];
        expect(job.out[t * outDim + o]).toBe(sum);
      }
    }
  });

  it("refuses a job whose arrays are too short, naming the field", () => {
    const job: MatmulJob = { x: new Float32Array(4), rows: 2, weight: new Uint16Array(6), dtype: "bf16", inDim: 3, outDim: 2, out: new Float32Array(4) };
    expect(() => matmulReference(job)).toThrow(/x holds 4 values, 2 x 3 needs 6/);
    expect(() => matmulReference({ ...job, x: new Float32Array(6), dtype: "f32" })).toThrow(/f32 weight must be a Float32Array/);
  });
});
