import * as F from "../../assembly/format.ts";
import { CarvqError } from "../errors.ts";
import { rvqGroupCount, rvqRecordBytes, scalarRecordBytes, subvectorCount, type LayoutName } from "../quant/layout.ts";
import { RVQ_METHOD, SCALAR_BITS, type MethodName } from "../quant/methods.ts";

export { SCALAR_BITS, type LayoutName, type MethodName };

export const METHOD_CODES: Record<MethodName, number> = {
  carvq: F.METHOD_RVQ,
  int4: F.METHOD_INT4,
  int3: F.METHOD_INT3,
  int2: F.METHOD_INT2,
};
export const LAYOUT_CODES: Record<LayoutName, number> = { row: F.LAYOUT_ROW, col: F.LAYOUT_COL };

/** Every header field of FORMAT.md, in camelCase. Scalar methods have subvec = levels = codebookSize = layout = 0. */
export interface BlobHeader {
  versionMajor: number;
  versionMinor: number;
  method: MethodName;
  rows: number;
  cols: number;
  /** RVQ: the sub-vector length, FORMAT.md's name for what the quantizers and `--h` call h. */
  subvec: number;
  levels: number;
  codebookSize: number;
  /** RVQ: sub-vectors per group (g, options' `group`). Scalar: values per scale block (B, options' `block`). */
  group: number;
  layout: LayoutName;
  codeBits: number;
  rowBytes: number;
  groupCount: number;
  /** v1.1: each record starts with a u8 index into the ROW_SCALES section (gain-shape). */
  rowScaled: boolean;
  /** v1.2: the blob carries a corrective adaptor (ADAPTOR_TABLE + ADAPTOR_MLP). */
  adapted: boolean;
}

/** The header fields the caller chooses; the rest are derived by `deriveHeader`. */
export type HeaderParams = Pick<BlobHeader, "method" | "rows" | "cols" | "subvec" | "levels" | "group" | "layout"> & {
  rowScaled?: boolean;
  adapted?: boolean;
};

/** Sub-vectors per row, S = ceil(n / h). */
export function subvectorsPerRow(header: Pick<BlobHeader, "cols" | "subvec">): number {
  return subvectorCount(header.cols, header.subvec);
}

/**
 * Fills in the derived fields (row_bytes, group_count, code_bits, K, version) from the chosen ones.
 * A blob that uses no v1.1 feature is written as v1.0, so older readers still take it.
 */
export function deriveHeader(params: HeaderParams): BlobHeader {
  const rowScaled = params.method === RVQ_METHOD && params.rowScaled === true;
  const adapted = params.method === RVQ_METHOD && params.adapted === true;
  const base = { ...params, versionMajor: F.VERSION_MAJOR, versionMinor: adapted ? 2 : rowScaled ? 1 : 0, rowScaled, adapted };
  if (params.method === RVQ_METHOD) {
    const groupCount = rvqGroupCount({ ...params, h: params.subvec });
    return {
      ...base,
      codebookSize: F.RVQ_CODEBOOK_SIZE,
      codeBits: F.RVQ_CODE_BITS,
      rowBytes: rvqRecordBytes(params.cols, params.subvec, params.levels, rowScaled),
      groupCount,
    };
  }
  const bits = SCALAR_BITS[params.method];
  const blocks = Math.ceil(params.cols / params.group);
  return {
    ...base,
    subvec: 0,
    levels: 0,
    layout: "row",
    codebookSize: 0,
    codeBits: bits,
    rowBytes: scalarRecordBytes(params.cols, bits, params.group),
    groupCount: blocks,
  };
}

/** Writes the header's 60 field bytes (the CRC at 60 is filled in by the writer). */
export function encodeHeader(header: BlobHeader, sectionCount: number): Uint8Array {
  const bytes = new Uint8Array(F.HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(F.H_MAGIC, F.MAGIC, true);
  view.setUint16(F.H_VERSION_MAJOR, header.versionMajor, true);
  view.setUint16(F.H_VERSION_MINOR, header.versionMinor, true);
  view.setUint32(F.H_HEADER_BYTES, F.HEADER_BYTES, true);
  view.setUint32(F.H_SECTION_COUNT, sectionCount, true);
  view.setUint32(F.H_METHOD, METHOD_CODES[header.method], true);
  view.setUint32(F.H_ROWS, header.rows, true);
  view.setUint32(F.H_COLS, header.cols, true);
  view.setUint32(F.H_SUBVEC, header.subvec, true);
  view.setUint32(F.H_LEVELS, header.levels, true);
  view.setUint32(F.H_CODEBOOK_SIZE, header.codebookSize, true);
  view.setUint32(F.H_GROUP, header.group, true);
  view.setUint32(F.H_LAYOUT, LAYOUT_CODES[header.layout], true);
  view.setUint32(F.H_CODE_BITS, header.codeBits, true);
  view.setUint32(F.H_ROW_BYTES, header.rowBytes, true);
  view.setUint32(F.H_GROUP_COUNT, header.groupCount, true);
  return bytes;
}

function keyOf<T extends string>(table: Record<T, number>, code: number): T | undefined {
  return (Object.keys(table) as T[]).find((key) => table[key] === code);
}

/** Checks magic and version: the first thing a reader does, so a stray file gets a plain answer. */
export function checkMagicAndVersion(view: DataView, name: string): void {
  const magic = view.getUint32(F.H_MAGIC, true);
  if (magic !== F.MAGIC)
    throw new CarvqError(
      `${name}: not a carvq blob (magic is 0x${magic.toString(16).padStart(8, "0")}; expected 0x${F.MAGIC.toString(16)} "CRVQ")`,
    );
  const versionMajor = view.getUint16(F.H_VERSION_MAJOR, true);
  const versionMinor = view.getUint16(F.H_VERSION_MINOR, true);
  if (versionMajor !== F.VERSION_MAJOR)
    throw new CarvqError(
      `${name}: header field version_major is ${versionMajor}; expected ${F.VERSION_MAJOR} (this tool reads blob format v${F.VERSION_MAJOR})`,
    );
  if (versionMinor > F.VERSION_MINOR)
    throw new CarvqError(
      `${name}: header field version_minor is ${versionMinor}; expected at most ${F.VERSION_MINOR} (written by a newer carvq)`,
    );
}

/**
 * Reads and validates the header fields of a blob (not the CRC, not the sections). Every field is
 * checked against its range and every derived field against its recomputed value, so nothing
 * downstream can be misled into a huge allocation or an out-of-range read. `rowScaled` says
 * whether the section table has a ROW_SCALES section (it changes row_bytes).
 */
export function decodeHeader(view: DataView, name: string, rowScaled = false, adapted = false): BlobHeader {
  const field = (what: string, value: number, expected: string) =>
    new CarvqError(`${name}: header field ${what} is ${value}; expected ${expected}`);
  const u32 = (offset: number) => view.getUint32(offset, true);
  checkMagicAndVersion(view, name);
  const versionMinor = view.getUint16(F.H_VERSION_MINOR, true);
  if (u32(F.H_HEADER_BYTES) !== F.HEADER_BYTES) throw field("header_bytes", u32(F.H_HEADER_BYTES), String(F.HEADER_BYTES));
  const method = keyOf(METHOD_CODES, u32(F.H_METHOD));
  if (method === undefined) throw field("method", u32(F.H_METHOD), "1 (rvq), 2 (int4), 3 (int3) or 4 (int2)");
  const inRange = (what: string, offset: number, min: number, max: number) => {
    const value = u32(offset);
    if (value < min || value > max) throw field(what, value, `${min} to ${max}`);
    return value;
  };
  const rows = inRange("rows", F.H_ROWS, 1, F.MAX_ROWS);
  const cols = inRange("cols", F.H_COLS, 1, F.MAX_COLS);
  let params: HeaderParams;
  if (method === RVQ_METHOD) {
    const layout = keyOf(LAYOUT_CODES, u32(F.H_LAYOUT));
    if (layout === undefined) throw field("layout", u32(F.H_LAYOUT), "0 (row) or 1 (col)");
    params = {
      method,
      rows,
      cols,
      layout,
      rowScaled,
      adapted,
      subvec: inRange("subvec", F.H_SUBVEC, 1, F.MAX_SUBVEC),
      levels: inRange("levels", F.H_LEVELS, 1, F.MAX_LEVELS),
      group: inRange("group", F.H_GROUP, 1, 0xffffffff),
    };
  } else {
    params = {
      method,
      rows,
      cols,
      layout: "row",
      subvec: 0,
      levels: 0,
      group: inRange("group (scale block)", F.H_GROUP, 1, F.MAX_SCALE_BLOCK),
    };
  }
  const expected = deriveHeader(params);
  const derived: [string, number, number][] = [
    ["subvec", F.H_SUBVEC, expected.subvec],
    ["levels", F.H_LEVELS, expected.levels],
    ["layout", F.H_LAYOUT, LAYOUT_CODES[expected.layout]],
    ["codebook_size", F.H_CODEBOOK_SIZE, expected.codebookSize],
    ["code_bits", F.H_CODE_BITS, expected.codeBits],
    ["row_bytes", F.H_ROW_BYTES, expected.rowBytes],
    ["group_count", F.H_GROUP_COUNT, expected.groupCount],
  ];
  for (const [what, offset, value] of derived)
    if (u32(offset) !== value) throw field(what, u32(offset), `${value} for this ${method} blob`);
  if (rowScaled && versionMinor < 1) throw field("version_minor", versionMinor, "at least 1 for a blob with a ROW_SCALES section");
  if (adapted && versionMinor < 2) throw field("version_minor", versionMinor, "at least 2 for a blob with an adaptor");
  return { ...expected, versionMinor };
}
