// The batched adaptor evaluation (addAdaptorRows in tools/adaptor/forward.ts, used by decodeAll) against the
// reference, row by row: the same bits for every row, on widths with and without the eight-lane
// tails, int8 and FP16, one to four layers, and row counts that leave a partial batch.
import { describe, expect, it } from "vitest";
import { addAdaptorRow } from "../tools/adaptor/forward.ts";
import { addAdaptorRows } from "../tools/adaptor/forward.ts";
import type { FloatAdaptor } from "../tools/adaptor/model.ts";
import { quantizeAdaptor } from "../tools/adaptor/quantize.ts";
import { randomFloatAdaptor } from "./helpers.ts";

function randomAdaptor(rows: number, widths: number[], seed: number): FloatAdaptor {
  return randomFloatAdaptor(rows, widths, seed, { table: 4, weights: 8, bias: 0.5 });
}

function bits(values: Float32Array): number[] {
  return Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length));
}

describe("batched adaptor evaluation", () => {
  const shapes: [number, number[]][] = [
    [77, [16, 384, 512, 64]],
    [33, [3, 13, 29, 11]],
    [40, [8, 8, 8]],
    [5, [1, 7]],
    [65, [12, 24, 40, 17, 100]],
  ];
  for (const precision of ["int8", "fp16"] as const) {
    for (const [rows, widths] of shapes) {
      it(`gives the reference's bits for ${rows} rows of ${widths.join("-")} (${precision})`, () => {
        const stored = quantizeAdaptor(randomAdaptor(rows, widths, rows + widths.length), precision);
        const n = widths[widths.length - 1];
        const base = Float32Array.from({ length: rows * n }, (_, i) => ((i * 37) % 101) / 50 - 1);
        const expected = base.slice();
        for (let t = 0; t < rows; t++) addAdaptorRow(stored, t, expected, t * n);
        const batched = base.slice();
        addAdaptorRows(stored, batched, rows);
        expect(bits(batched)).toEqual(bits(expected));
        expect(batched.some((v, i) => v !== base[i])).toBe(true);
      });
    }
  }
});
