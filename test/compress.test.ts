import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseBlob } from "../tools/blob/reader.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll, decodeTokens } from "../tools/decoder.ts";
import { headerCrc } from "../tools/blob/writer.ts";
import { crc32 } from "../tools/crc32.ts";
import { CarvqError } from "../tools/errors.ts";
import { bitsPerParameter } from "../tools/eval/bpp.ts";
import { reconstructionMetrics } from "../tools/quant/metrics.ts";
import { randomBlob } from "../tools/blob/random.ts";
import { randomMatrix } from "./helpers.ts";

describe("compressMatrix (group RVQ, row layout)", () => {
  const matrix = randomMatrix(300, 20, 7);
  const options = { h: 8, levels: 2, group: 64, iters: 10, seed: 3 };

  it("is deterministic: same input, options and seed give the same bytes", async () => {
    const a = (await compressMatrix(matrix, options)).bytes;
    const b = (await compressMatrix(matrix, options)).bytes;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const c = (await compressMatrix(matrix, { ...options, seed: 4 })).bytes;
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  it("decodes to exactly the reconstruction it measured", async () => {
    const result = await compressMatrix(matrix, options);
    const reparsed = parseBlob(result.bytes, "blob");
    const metrics = reconstructionMetrics(matrix, decodeAll(reparsed));
    expect(metrics).toEqual(result.metrics);
    expect(reparsed.metadata?.metrics?.relMSE).toBeCloseTo(result.metrics.relMSE, 5);
  });

  it("beats a trivial reconstruction and improves with more levels", async () => {
    const one = (await compressMatrix(matrix, { ...options, levels: 1 })).metrics.relMSE;
    const three = (await compressMatrix(matrix, { ...options, levels: 3 })).metrics.relMSE;
    expect(one).toBeLessThan(1);
    expect(three).toBeLessThan(one * 0.8);
  });

  it("handles n not a multiple of h, V = 1, a last partial group and g larger than the table", async () => {
    for (const [rows, cols, h, group] of [
      [1, 5, 4, 1024],
      [37, 13, 8, 10],
      [5, 3, 3, 2],
      [50, 17, 1, 7],
    ] as const) {
      const m = randomMatrix(rows, cols, rows + cols);
      const result = await compressMatrix(m, { h, group, levels: 2, iters: 5 });
      const decoded = decodeAll(result.blob);
      expect(decoded.data.length).toBe(rows * cols);
      expect(result.metrics.relMSE).toBeLessThan(1);
      // Batch decode returns rows in the order asked.
      const picked = decodeTokens(result.blob, [rows - 1, 0]);
      expect(Array.from(picked.subarray(0, cols))).toEqual(Array.from(decoded.data.subarray((rows - 1) * cols, rows * cols)));
    }
  });

  it("reconstructs exactly when every group has at most 16 distinct sub-vectors", async () => {
    const m = randomMatrix(16, 8, 1);
    for (let i = 0; i < m.data.length; i++) m.data[i] = Math.round(m.data[i] * 4) / 4; // FP16-exact values
    const result = await compressMatrix(m, { h: 8, levels: 1, group: 16, iters: 20 });
    expect(result.metrics.relMSE).toBe(0);
  });

  it("reports 1.5 bpp of codes and codebooks in the paper configuration (h 8, L 2, g 1024)", async () => {
    const m = randomMatrix(4096, 64, 2);
    const size = bitsPerParameter((await compressMatrix(m, { iters: 2 })).blob);
    expect(size.parts.codes).toBeCloseTo(1.0, 6);
    expect(size.parts.codebooks).toBeCloseTo(0.5, 6);
    expect(size.bpp).toBeLessThan(1.52);
  });

  it("counts row scales and the adaptor's sections in their own parts of bpp, which add up to the total", async () => {
    const blob = parseBlob(
      randomBlob({ rows: 300, cols: 16, subvec: 8, levels: 2, group: 64, rowScales: 32, adaptor: { widths: [4, 24, 16] }, seed: 3 }),
      "r.carvq",
    );
    const size = bitsPerParameter(blob);
    const sectionBytes = (...ids: number[]) => blob.sections.filter((s) => ids.includes(s.id)).reduce((sum, s) => sum + s.length, 0);
    expect(size.bytes.adaptor).toBe(sectionBytes(5, 6));
    expect(size.bytes.rowScales).toBe(sectionBytes(4));
    expect(size.bytes.adaptor).toBeGreaterThan(300 * 4);
    expect(size.bytes.padding).toBeLessThan(64 * blob.sections.length);
    expect(Object.values(size.parts).reduce((a, b) => a + b, 0)).toBeCloseTo(size.bpp, 9);
  });

  it("refuses bad input with a clear message", async () => {
    await expect(compressMatrix(randomMatrix(4, 4, 1), { h: 8 }, { source: "t.npy" })).rejects.toThrow(
      /t\.npy: --h 8 is larger than the table's 4 columns/,
    );
    const nan = randomMatrix(4, 4, 1);
    nan.data[6] = NaN;
    await expect(compressMatrix(nan, { h: 2 }, { source: "t.npy" })).rejects.toThrow(CarvqError);
    await expect(compressMatrix(nan, { h: 2 }, { source: "t.npy" })).rejects.toThrow(/row 1, column 2 is NaN/);
    await expect(compressMatrix(randomMatrix(4, 4, 1), { levels: 9, h: 2 })).rejects.toThrow(/--levels 9/);
  });
});

describe("compressMatrix (scalar baselines)", () => {
  const matrix = randomMatrix(200, 80, 11);

  it("lands at the expected bits and error ordering", async () => {
    const results = await Promise.all((["int4", "int3", "int2"] as const).map((method) => compressMatrix(matrix, { method, block: 20 })));
    const codeBpp = results.map((r) => bitsPerParameter(r.blob).parts.codes);
    // bits + 16 / block (80 columns: whole blocks, whole bytes).
    expect(codeBpp[0]).toBeCloseTo(4.8, 10);
    expect(codeBpp[1]).toBeCloseTo(3.8, 10);
    expect(codeBpp[2]).toBeCloseTo(2.8, 10);
    const errors = results.map((r) => r.metrics.relMSE);
    expect(errors[0]).toBeLessThan(errors[1]);
    expect(errors[1]).toBeLessThan(errors[2]);
    expect(errors[0]).toBeLessThan(0.01);
  });

  it("decodes int3 codes that straddle byte boundaries", async () => {
    const m = { rows: 1, cols: 7, data: new Float32Array([3, -3, 2, -1, 0, 1, -2]) };
    const result = await compressMatrix(m, { method: "int3", block: 7 });
    // scale = 3 / 3 = 1: every value is a representable level.
    expect(Array.from(decodeAll(result.blob).data)).toEqual([3, -3, 2, -1, 0, 1, -2]);
  });
});

describe("better encoding at the same bits", () => {
  const matrix = randomMatrix(2048, 32, 21);
  const base = { h: 8, levels: 2, group: 256, iters: 15, seed: 1 };

  it("beam search and refinement each lower the error; the column-block layout round-trips", async () => {
    const greedy = await compressMatrix(matrix, base);
    const beam = await compressMatrix(matrix, { ...base, beam: 8 });
    const refined = await compressMatrix(matrix, { ...base, beam: 8, refine: 5 });
    const col = await compressMatrix(matrix, { ...base, layout: "col" });
    expect(beam.bytes.length).toBe(greedy.bytes.length);
    expect(beam.metrics.relMSE).toBeLessThan(greedy.metrics.relMSE);
    expect(refined.metrics.relMSE).toBeLessThan(beam.metrics.relMSE);
    expect(col.blob.header.layout).toBe("col");
    expect(reconstructionMetrics(matrix, decodeAll(parseBlob(col.bytes, "col")))).toEqual(col.metrics);
    expect(Buffer.from((await compressMatrix(matrix, { ...base, beam: 8, refine: 5 })).bytes).equals(Buffer.from(refined.bytes))).toBe(
      true,
    );
  });
});

describe("compressMatrix", () => {
  it("gives the same bytes on 2 worker threads as on one thread", async () => {
    // The worker bundle is built by `npm run build` (run by npm ci's prepare); without it the
    // parallel path would silently fall back to one thread and this test would prove nothing.
    expect(
      existsSync(fileURLToPath(new URL("../dist/rvq-worker.mjs", import.meta.url))),
      "dist/rvq-worker.mjs is missing: run npm run build",
    ).toBe(true);
    const matrix = randomMatrix(3000, 24, 9);
    const options = { h: 8, levels: 2, group: 256, iters: 8, beam: 2, refine: 1 };
    const single = await compressMatrix(matrix, options);
    let lastProgress = 0;
    const parallel = await compressMatrix(matrix, options, {}, { threads: 2, onProgress: (done) => (lastProgress = done) });
    expect(Buffer.from(parallel.bytes).equals(Buffer.from(single.bytes))).toBe(true);
    expect(lastProgress).toBe(single.blob.header.groupCount);
  });
});

describe("importance weights", () => {
  it("lower the error of heavily weighted rows, and all-ones weights change nothing", async () => {
    const matrix = randomMatrix(1024, 16, 31);
    const base = { h: 8, levels: 1, group: 2048, iters: 20 };
    const weights = new Float32Array(1024).fill(1);
    const plain = await compressMatrix(matrix, base);
    const sectionsOf = (blob: typeof plain.blob) => [Array.from(blob.codes), Array.from(blob.codebooks ?? [])];
    expect(sectionsOf((await compressMatrix(matrix, { ...base, weights })).blob)).toEqual(sectionsOf(plain.blob));
    for (let t = 0; t < 64; t++) weights[t] = 1000;
    const weighted = await compressMatrix(matrix, { ...base, weights });
    const rowError = (decoded: Float32Array, rows: number) => {
      let sum = 0;
      for (let i = 0; i < rows * 16; i++) sum += (decoded[i] - matrix.data[i]) ** 2;
      return sum;
    };
    // The heavy rows' error falls to near what a codebook fitted to them alone achieves.
    const alone = await compressMatrix({ rows: 64, cols: 16, data: matrix.data.slice(0, 64 * 16) }, base);
    const weightedError = rowError(decodeAll(weighted.blob).data, 64);
    expect(weightedError).toBeLessThan(0.9 * rowError(decodeAll(plain.blob).data, 64));
    expect(weightedError).toBeLessThan(1.1 * rowError(decodeAll(alone.blob).data, 64));
  });
});

describe("gain-shape (ROW_SCALES, format v1.1)", () => {
  // Rows of very different lengths: the case gain-shape is for.
  const matrix = randomMatrix(2048, 32, 41);
  for (let r = 0; r < matrix.rows; r++) for (let e = 0; e < 32; e++) matrix.data[r * 32 + e] *= Math.exp(2 * Math.sin(r));
  const base = { h: 8, levels: 2, group: 256, iters: 10 };

  it("writes a v1.1 blob whose decode is what it measured, with lower error at one byte per row", async () => {
    const plain = await compressMatrix(matrix, base);
    const scaled = await compressMatrix(matrix, { ...base, rowScaleCount: 256 });
    expect(plain.blob.header.versionMinor).toBe(0);
    expect(scaled.blob.header.versionMinor).toBe(1);
    expect(scaled.blob.header.rowBytes).toBe(plain.blob.header.rowBytes + 1);
    expect(scaled.blob.rowScales?.length).toBe(256);
    expect(reconstructionMetrics(matrix, decodeAll(parseBlob(scaled.bytes, "s")))).toEqual(scaled.metrics);
    expect(scaled.metrics.cosine).toBeGreaterThan(plain.metrics.cosine);
    expect(scaled.metrics.relMSE).toBeLessThan(plain.metrics.relMSE);
  });

  it("refuses a row-scale index past the table", async () => {
    const scaled = await compressMatrix(matrix, { ...base, rowScaleCount: 4 });
    const codes = scaled.blob.sections.find((s) => s.id === 1)!;
    const bytes = scaled.bytes.slice();
    bytes[codes.offset] = 7;
    const view = new DataView(bytes.buffer);
    view.setUint32(68, crc32(bytes.subarray(codes.offset, codes.offset + codes.length)), true);
    view.setUint32(60, headerCrc(bytes, view.getUint32(12, true)), true);
    expect(() => parseBlob(bytes, "bad.carvq")).toThrow(/token 0 has row-scale index 7; the ROW_SCALES section holds 4/);
  });
});
