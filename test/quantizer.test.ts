// The quantizer surface (tools/quant/quantizer.ts): train, encode, decode and code size, for RVQ and
// the scalar methods, checked against each other and against the blobs the compressor writes.
import * as F from "../assembly/format.ts";
import { describe, expect, it } from "vitest";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { rvqQuantizer, scalarQuantizer, type RvqOptions, type ScalarOptions } from "../tools/quant/quantizer.ts";
import { randomMatrix } from "./helpers.ts";

const sectionBytes = (result: Awaited<ReturnType<typeof compressMatrix>>, ...ids: number[]) =>
  result.blob.sections.filter((s) => ids.includes(s.id)).reduce((sum, s) => sum + s.length, 0);

describe("RVQ quantizer", () => {
  const matrix = randomMatrix(120, 20, 7);
  const options: RvqOptions = { h: 8, levels: 2, group: 40, layout: "row", iters: 6, seed: 3, beam: 1, refine: 0 };

  it("encodes with fixed codebooks to the codes it trained (greedy), and decodes as the blob does", async () => {
    const trained = await rvqQuantizer.train(matrix, options);
    expect(trained.groupCount).toBe(Math.ceil((120 * 3) / 40));
    const again = rvqQuantizer.encode(matrix, options, trained);
    expect(again.codes).toEqual(trained.codes);
    const blob = await compressMatrix(matrix, options);
    expect(rvqQuantizer.decode(trained, matrix, options).data).toEqual(decodeAll(blob.blob).data);
  });

  it("encodes rows it was not trained on against the trained codebooks (lower error with a beam)", async () => {
    const col: RvqOptions = { ...options, layout: "col", group: 120 };
    const trained = await rvqQuantizer.train(matrix, col);
    const other = randomMatrix(120, 20, 8);
    const error = (beam: number) => {
      const decoded = rvqQuantizer.decode(rvqQuantizer.encode(other, { ...col, beam }, trained), other, col).data;
      return decoded.reduce((sum, v, i) => sum + (v - other.data[i]) ** 2, 0);
    };
    expect(error(8)).toBeLessThan(error(1));
  });

  it("code size: the blob's CODES, CODEBOOKS and ROW_SCALES sections to the byte", async () => {
    for (const o of [options, { ...options, h: 6, levels: 3, layout: "col" as const, group: 50, rowScaleCount: 16 }]) {
      const result = await compressMatrix(matrix, o);
      expect(rvqQuantizer.codeBytes(matrix, o)).toBe(sectionBytes(result, F.SECTION_CODES, F.SECTION_CODEBOOKS, F.SECTION_ROW_SCALES));
    }
  });
});

describe("scalar quantizer", () => {
  const matrix = randomMatrix(50, 37, 4);
  for (const o of [
    { method: "int4", block: 16 },
    { method: "int3", block: 37 },
    { method: "int2", block: 5 },
  ] as ScalarOptions[]) {
    it(`${o.method}, block ${o.block}: decode and code size match the blob`, async () => {
      const codes = await scalarQuantizer.train(matrix, o);
      expect(scalarQuantizer.encode(matrix, o, codes)).toEqual(codes);
      const result = await compressMatrix(matrix, o);
      expect(scalarQuantizer.decode(codes, matrix, o).data).toEqual(decodeAll(result.blob).data);
      expect(scalarQuantizer.codeBytes(matrix, o)).toBe(sectionBytes(result, F.SECTION_CODES));
    });
  }
});
