// A quantizer's codes as blob sections, and back (FORMAT.md, "CODES", "CODEBOOKS", "ROW_SCALES"):
// RVQ codes two to a byte in token-major records (after the row's scale index with gain-shape),
// scalar codes as a bit stream after each record's FP16 block scales.
import * as F from "../../assembly/format.ts";
import type { RvqShape } from "../quant/layout.ts";
import type { RvqEncoding } from "../quant/rvq.ts";
import type { ScalarEncoding } from "../quant/scalar.ts";
import { encodeCodebooks } from "./codebooks.ts";
import { bitStreamAt, nibbleAt, packNibbleRecords, packScalarRecords } from "./codes.ts";
import { subvectorsPerRow, type BlobHeader } from "./header.ts";
import type { Blob } from "./reader.ts";
import type { SectionBytes } from "./writer.ts";

/** The RVQ shape a header describes. */
export function rvqShapeOf(header: BlobHeader): RvqShape {
  return { rows: header.rows, cols: header.cols, h: header.subvec, levels: header.levels, group: header.group, layout: header.layout };
}

/** CODES and CODEBOOKS of an RVQ encoding; with row scales also ROW_SCALES. */
export function rvqSections(header: BlobHeader, encoding: RvqEncoding): SectionBytes[] {
  const perRow = subvectorsPerRow(header) * header.levels;
  const scales = encoding.rowScales ?? null;
  const sections = [
    { id: F.SECTION_CODES, bytes: packNibbleRecords(encoding.codes, header.rows, perRow, header.rowBytes, scales?.index ?? null) },
    { id: F.SECTION_CODEBOOKS, bytes: encodeCodebooks(encoding.codebooks) },
  ];
  return scales === null ? sections : [...sections, { id: F.SECTION_ROW_SCALES, bytes: encodeCodebooks(scales.halves) }];
}

/** The CODES section of a scalar encoding. */
export function scalarSections(header: BlobHeader, encoding: ScalarEncoding): SectionBytes[] {
  return [
    {
      id: F.SECTION_CODES,
      bytes: packScalarRecords(
        encoding.scales,
        encoding.codes,
        header.rows,
        header.cols,
        encoding.blocks,
        header.codeBits,
        header.rowBytes,
      ),
    },
  ];
}

/** An RVQ blob's codes, unpacked (the codebooks as stored; each row's scale index, or null without gain-shape). */
export function rvqCodesOf(blob: Blob): { codes: Uint8Array; scaleIndex: Uint8Array | null } {
  const { rows, levels, rowBytes } = blob.header;
  const perRow = subvectorsPerRow(blob.header) * levels;
  const first = blob.rowScales === null ? 0 : 1;
  const codes = new Uint8Array(rows * perRow);
  const scaleIndex = blob.rowScales === null ? null : new Uint8Array(rows);
  for (let t = 0; t < rows; t++) {
    if (scaleIndex !== null) scaleIndex[t] = blob.codes[t * rowBytes];
    for (let i = 0; i < perRow; i++) codes[t * perRow + i] = nibbleAt(blob.codes, t * rowBytes + first, i);
  }
  return { codes, scaleIndex };
}

/** A scalar blob's codes and block scales, unpacked. */
export function scalarEncodingOf(blob: Blob): ScalarEncoding {
  const { rows, cols, codeBits: bits, groupCount: blocks, rowBytes } = blob.header;
  const scales = new Uint16Array(rows * blocks);
  const codes = new Uint8Array(rows * cols);
  for (let t = 0; t < rows; t++) {
    const record = t * rowBytes;
    for (let b = 0; b < blocks; b++) scales[t * blocks + b] = blob.codes[record + 2 * b] | (blob.codes[record + 2 * b + 1] << 8);
    for (let j = 0; j < cols; j++) codes[t * cols + j] = bitStreamAt(blob.codes, record + 2 * blocks, j, bits);
  }
  return { scales, codes, blocks };
}
