import { describe, expect, it } from "vitest";
import * as F from "../assembly/format.ts";
import { addAdaptorRow } from "../tools/adaptor/forward.ts";
import type { FloatAdaptor } from "../tools/adaptor/model.ts";
import { quantizeAdaptor } from "../tools/adaptor/quantize.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "../tools/blob/adaptor.ts";
import { deriveHeader } from "../tools/blob/header.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { assembleBlob } from "../tools/blob/writer.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { randomFloatAdaptor, randomMatrix } from "./helpers.ts";

function randomAdaptor(rows: number, widths: number[], seed: number): FloatAdaptor {
  return randomFloatAdaptor(rows, widths, seed, { table: 2, weights: 1, bias: 0.2 });
}

const matrix = randomMatrix(50, 12, 3);
const rvq = await compressMatrix(matrix, { h: 4, group: 32, iters: 3 });

describe("adaptor sections (blob v1.2)", () => {
  for (const precision of ["int8", "fp16"] as const) {
    it(`round-trips a ${precision} adaptor through the blob and adds it to every decoded row`, () => {
      const stored = quantizeAdaptor(randomAdaptor(50, [4, 16, 8, 12], 9), precision);
      const header = deriveHeader({ ...rvq.blob.header, adapted: true });
      const sections = [
        { id: F.SECTION_CODES, bytes: rvq.blob.codes },
        {
          id: F.SECTION_CODEBOOKS,
          bytes: rvq.bytes.subarray(rvq.blob.sections[1].offset, rvq.blob.sections[1].offset + rvq.blob.sections[1].length),
        },
        { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(stored) },
        { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(stored) },
      ];
      const blob = parseBlob(assembleBlob(header, sections), "a.carvq");
      expect(blob.header.versionMinor).toBe(2);
      expect(blob.adaptor).toEqual(stored);
      const plain = decodeAll(rvq.blob).data;
      const adapted = decodeAll(blob).data;
      const expected = plain.slice();
      for (let t = 0; t < 50; t++) addAdaptorRow(stored, t, expected, t * 12);
      expect(Array.from(adapted)).toEqual(Array.from(expected));
      expect(adapted.some((v, i) => v !== plain[i])).toBe(true);
      // A lying width is refused with a message naming the section and field.
      const lying = sections.map((s) => ({ ...s, bytes: s.bytes.slice() }));
      new DataView(lying[3].bytes.buffer).setUint32(12, 9999, true);
      expect(() => parseBlob(assembleBlob(header, lying), "a.carvq")).toThrow(/ADAPTOR_MLP width 1 is 9999/);
      expect(() => parseBlob(assembleBlob(header, sections.slice(0, 3)), "a.carvq")).toThrow(/must come together/);
    });
  }
});
