import { describe, expect, it } from "vitest";
import { compressMatrix, type CompressOptions } from "../tools/compress.ts";
import { predictBlobSize } from "../tools/plan/size.ts";
import { randomMatrix } from "./helpers.ts";

const cases: [number, number, Partial<CompressOptions>][] = [
  [1, 1, { h: 1 }],
  [1, 7, { h: 3, levels: 1, group: 1 }],
  [37, 10, { h: 4, levels: 3, group: 5, layout: "col" }],
  [300, 24, { h: 8, levels: 2, group: 64 }],
  [300, 24, { h: 8, levels: 2, group: 64, layout: "col", beam: 4, refine: 2 }],
  [257, 33, { h: 5, levels: 5, group: 100, layout: "col" }],
  [128, 64, { h: 16, levels: 8, group: 7 }],
  [500, 100, { h: 20, levels: 5, group: 123, layout: "col", rowScaleCount: 256 }],
  [500, 100, { h: 25, levels: 4, group: 1000, rowScaleCount: 17 }],
  [64, 48, { h: 48, levels: 2, group: 3, seed: 1234567 }],
  [1000, 30, { method: "int4", block: 32 }],
  [999, 31, { method: "int3", block: 7 }],
  [200, 100, { method: "int2", block: 100 }],
  [3, 65, { method: "int2", block: 1 }],
];

describe("predictBlobSize", () => {
  it("equals the written blob's size exactly given its metrics, and bounds it without them", async () => {
    let seed = 1;
    for (const [rows, cols, options] of cases) {
      for (const from of [{}, { source: "/some/dir/model.safetensors", tensor: "model.embed_tokens.weight" }]) {
        const matrix = randomMatrix(rows, cols, seed++);
        const result = await compressMatrix(matrix, options, from);
        const label = `${rows}x${cols} ${JSON.stringify(options)} ${JSON.stringify(from)}`;
        const exact = predictBlobSize(matrix, options, from, result.metrics);
        expect(exact.exact, label).toBe(true);
        expect(exact.bytes, label).toBe(result.bytes.length);
        expect(exact.bpp, label).toBeCloseTo((8 * result.bytes.length) / (rows * cols), 12);
        const parts = exact.parts;
        expect(parts.header + parts.codes + parts.codebooks + parts.rowScales + parts.metadata + parts.padding).toBe(exact.bytes);
        const bound = predictBlobSize(matrix, options, from);
        expect(bound.minBytes, label).toBeLessThanOrEqual(result.bytes.length);
        expect(bound.maxBytes, label).toBeGreaterThanOrEqual(result.bytes.length);
        expect(bound.maxBytes - bound.minBytes, label).toBeLessThanOrEqual(25);
        expect(bound.bytes).toBe(bound.maxBytes);
      }
    }
  });

  it("needs no matrix: a Llama-sized shape is predicted instantly", () => {
    const started = performance.now();
    const p = predictBlobSize({ rows: 128256, cols: 2048 }, { h: 8, levels: 2, group: 1024 });
    expect(performance.now() - started).toBeLessThan(2000);
    // 1.0 bpp of indices + 0.5 bpp of codebooks + a few hundred bytes.
    expect(p.parts.codes).toBe(128256 * 256);
    expect(p.parts.codebooks).toBe(Math.ceil((128256 * 256) / 1024) * 2 * 16 * 8 * 2);
    expect(p.bpp).toBeGreaterThan(1.5);
    expect(p.bpp).toBeLessThan(1.5001);
  });
});
