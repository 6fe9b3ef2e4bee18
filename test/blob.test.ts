import { describe, expect, it } from "vitest";
import * as F from "../assembly/format.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { headerCrc } from "../tools/blob/writer.ts";
import { compressMatrix } from "../tools/compress.ts";
import { crc32 } from "../tools/crc32.ts";
import { CarvqError } from "../tools/errors.ts";
import { randomMatrix } from "./helpers.ts";

const valid = (await compressMatrix(randomMatrix(40, 12, 5), { h: 4, group: 16, iters: 3 }, { source: "m.npy" })).bytes;

/** A copy of the valid blob with `edit` applied; `fixCrc` re-seals the header checksum so deeper checks are reached. */
function mutated(edit: (bytes: Uint8Array, view: DataView) => void, fixCrc = true): Uint8Array {
  const bytes = valid.slice();
  const view = new DataView(bytes.buffer);
  edit(bytes, view);
  if (fixCrc) view.setUint32(F.H_HEADER_CRC, headerCrc(bytes, view.getUint32(F.H_SECTION_COUNT, true)), true);
  return bytes;
}

function rejection(bytes: Uint8Array): string {
  try {
    parseBlob(bytes, "bad.carvq");
  } catch (err) {
    expect(err).toBeInstanceOf(CarvqError);
    return (err as Error).message;
  }
  throw new Error("blob was accepted");
}

const entry = (i: number) => F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;

describe("blob v1 layout", () => {
  it("starts with the magic, puts sections on 64-byte boundaries and checksums them", () => {
    const blob = parseBlob(valid, "ok.carvq");
    expect(new TextDecoder().decode(valid.subarray(0, 4))).toBe("CRVQ");
    expect(blob.sections.map((s) => s.id)).toEqual([F.SECTION_CODES, F.SECTION_CODEBOOKS, F.SECTION_METADATA]);
    for (const s of blob.sections) {
      expect(s.offset % 64).toBe(0);
      expect(crc32(valid.subarray(s.offset, s.offset + s.length))).toBe(s.crc);
    }
    expect(blob.header).toMatchObject({
      rows: 40,
      cols: 12,
      subvec: 4,
      levels: 2,
      codebookSize: 16,
      group: 16,
      codeBits: 4,
      rowBytes: 3,
      groupCount: 8,
    });
    expect(blob.metadata).toMatchObject({ tool: "carvq", source: "m.npy", shape: [40, 12] });
  });

  it("refuses every kind of damage with a message naming the file and field", () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ["magic", mutated((b) => (b[0] = 0x58), false), /bad\.carvq: not a carvq blob \(magic/],
      ["version", mutated((_, v) => v.setUint16(F.H_VERSION_MAJOR, 2, true)), /version_major is 2/],
      ["header crc", mutated((b) => (b[F.H_ROWS] ^= 1), false), /header checksum mismatch/],
      ["rows zero", mutated((_, v) => v.setUint32(F.H_ROWS, 0, true)), /rows is 0; expected 1 to/],
      ["derived row_bytes", mutated((_, v) => v.setUint32(F.H_ROW_BYTES, 99, true)), /row_bytes is 99; expected 3/],
      ["section count", mutated((_, v) => v.setUint32(F.H_SECTION_COUNT, 1000, true), false), /section_count is 1000/],
      [
        "lying offset",
        mutated((_, v) => v.setBigUint64(entry(1) + F.S_OFFSET, 0xffffffffffffffc0n, true)),
        /runs past the end of the file/,
      ],
      ["overlap", mutated((_, v) => v.setBigUint64(entry(1) + F.S_OFFSET, 64n, true)), /overlaps/],
      ["misaligned", mutated((_, v) => v.setBigUint64(entry(0) + F.S_OFFSET, 130n, true)), /not a multiple of 64/],
      ["unknown id", mutated((_, v) => v.setUint32(entry(2) + F.S_ID, 9, true)), /unknown section id 9/],
      [
        "section crc",
        mutated((b, v) => (b[Number(v.getBigUint64(entry(1) + F.S_OFFSET, true))] ^= 0x10)),
        /CODEBOOKS section checksum mismatch/,
      ],
      ["truncated", valid.subarray(0, valid.length - 5), /runs past the end of the file/],
      ["tiny", valid.subarray(0, 10), /truncated/],
      ["trailing", new Uint8Array([...valid, 0]), /trailing bytes/],
      ["dirty padding", mutated((b, v) => (b[Number(v.getBigUint64(entry(1) + F.S_OFFSET, true)) - 1] = 0xaa)), /padding must be zero/],
    ];
    for (const [what, bytes, pattern] of cases) {
      const message = rejection(bytes);
      expect(message, what).toMatch(pattern);
      expect(message, what).toMatch(/^bad\.carvq: /);
    }
  });
});
