// The open blob: the one context every part of the runtime reads. Opening fills it once
// (preopen.ts finds and opens the file, header.ts checks the header and section table,
// adaptor-sections.ts the adaptor's headers, verify.ts every section's bytes), then lookups only
// read it; close empties it. One blob per instance: a host that wants two instantiates twice.
import { MAX_SECTIONS, SECTION_TABLE_OFFSET, SECTION_ENTRY_BYTES, MAX_ADAPTOR_LAYERS, SECTION_CODES, SECTION_CODEBOOKS,
  SECTION_METADATA, SECTION_ROW_SCALES, SECTION_ADAPTOR_TABLE, SECTION_ADAPTOR_MLP } from "./format";
import { fd_close, preadAll, ERRNO_SUCCESS } from "./wasi";
import { putStr, putU64, putBytes } from "./text";
import { errBegin, fail, EXIT_IO, EXIT_BAD_BLOB } from "./exit";

export const TABLE_MAX_BYTES: u32 = SECTION_TABLE_OFFSET + MAX_SECTIONS * SECTION_ENTRY_BYTES;

// ---- The open blob (one per run) ----
export let pathPtr: usize = 0;
export let pathLen: usize = 0;
export let fd: u32 = 0;
export let fileSize: u64 = 0;
/** Address of the whole blob in linear memory in resident mode, 0 in streaming mode. */
export let resident: usize = 0;
/** Header + section table as read from the file. */
export let headerPtr: usize = 0;
export let sectionCount: u32 = 0;

export let method: u32 = 0;
export let rows: u32 = 0;
export let cols: u32 = 0;
export let subvec: u32 = 0;
export let levels: u32 = 0;
export let codebookSize: u32 = 0;
export let group: u32 = 0;
export let layout: u32 = 0;
export let codeBits: u32 = 0;
export let rowBytes: u32 = 0;
export let groupCount: u32 = 0;
/** RVQ: S = ceil(n / h), sub-vectors per row. */
export let subvecsPerRow: u32 = 0;
/** RVQ: bytes of one group's codebooks, L * K * h * 2. */
export let groupBytes: u32 = 0;

export let codesOffset: u64 = 0;
export let codesLength: u64 = 0;
export let codebooksOffset: u64 = 0;
export let codebooksLength: u64 = 0;
export let metadataOffset: u64 = 0;
export let metadataLength: u64 = 0;
/** The header's version_minor (0, or 1 for a blob with ROW_SCALES). */
export let versionMinor: u32 = 0;
/** v1.1 gain-shape: R, the number of FP16 row scales (0 = no ROW_SCALES section). */
export let rowScaleCount: u32 = 0;
export let rowScalesOffset: u64 = 0;

// ---- v1.2 corrective adaptor (both sections validated by readAdaptor) ----
/** True when the blob has ADAPTOR_TABLE and ADAPTOR_MLP. */
export let adapted: bool = false;
/** ADAPTOR_TABLE: precision (ADAPTOR_INT8 / ADAPTOR_FP16), section offset and length, record bytes. */
export let adTablePrecision: u32 = 0;
export let adTableOffset: u64 = 0;
export let adTableLength: u64 = 0;
export let adTableRowBytes: u32 = 0;
/** ADAPTOR_MLP: precision, section offset and length, layer count C. */
export let adMlpPrecision: u32 = 0;
export let adMlpOffset: u64 = 0;
export let adMlpLength: u64 = 0;
export let adLayers: u32 = 0;
/** Their places in the section table (for messages). */
export let adTableIndex: u32 = 0;
export let adMlpIndex: u32 = 0;
/** Widths w_0 .. w_C (u32 each, up to MAX_ADAPTOR_LAYERS + 1). */
export const AD_WIDTHS: usize = memory.data(4 * (MAX_ADAPTOR_LAYERS + 1), 16);
/**
 * Per layer k, offsets from the start of ADAPTOR_MLP (u32 each, 8 per layer): weights, int8
 * scales (= bias offset for FP16), bias, gamma, beta (0 for the last layer), the end of the
 * layer, and two spare words.
 */
export const AD_LAYOUT: usize = memory.data(4 * 8 * MAX_ADAPTOR_LAYERS, 16);
export const L_WEIGHTS: u32 = 0;
export const L_SCALES: u32 = 4;
export const L_BIAS: u32 = 8;
export const L_GAMMA: u32 = 12;
export const L_BETA: u32 = 16;
export const L_END: u32 = 20;

/** Width w_k of the adaptor (k = 0 .. C). */
// @ts-ignore: decorator
@inline export function adWidth(k: u32): u32 {
  return load<u32>(AD_WIDTHS + (<usize>k << 2));
}

/** Offset `field` (L_*) of layer k, from the start of ADAPTOR_MLP. */
// @ts-ignore: decorator
@inline export function adLayerAt(k: u32, field: u32): u32 {
  return load<u32>(AD_LAYOUT + (<usize>k << 5) + <usize>field);
}


// ---- Errors ----

/** Starts a failure message naming the blob: "<path>: ". */
export function blobErr(): void {
  errBegin();
  putBytes(pathPtr, pathLen);
  putStr(": ");
}

export function bad(what: string): void {
  blobErr();
  putStr("bad blob: ");
  putStr(what);
}

export function badField(name: string, value: u64, expected: string): bool {
  bad("header field ");
  putStr(name);
  putStr(" is ");
  putU64(value);
  putStr(", expected ");
  putStr(expected);
  return fail(EXIT_BAD_BLOB);
}

export function badDerived(name: string, value: u64, want: u64): bool {
  bad("header field ");
  putStr(name);
  putStr(" is ");
  putU64(value);
  putStr(" but the other fields give ");
  putU64(want);
  return fail(EXIT_BAD_BLOB);
}

export function sectionName(id: u32): string {
  if (id == SECTION_CODES) return "CODES";
  if (id == SECTION_CODEBOOKS) return "CODEBOOKS";
  if (id == SECTION_METADATA) return "METADATA";
  if (id == SECTION_ROW_SCALES) return "ROW_SCALES";
  if (id == SECTION_ADAPTOR_TABLE) return "ADAPTOR_TABLE";
  if (id == SECTION_ADAPTOR_MLP) return "ADAPTOR_MLP";
  return "unknown";
}

export function badSection(i: u32, id: u32, what: string): void {
  bad("section ");
  putU64(i);
  putStr(" (");
  putStr(sectionName(id));
  putStr("): ");
  putStr(what);
}

export function ioErr(what: string, errno: u32): bool {
  blobErr();
  putStr(what);
  if (errno == 0xffff) putStr(" (the file ended early: was it changed while open?)");
  else if (errno != 0) {
    putStr(" (WASI errno ");
    putU64(errno);
    putStr(")");
  }
  return fail(EXIT_IO);
}

/** Closes the blob's file descriptor (small hosts have few). */
export function closeBlob(): void {
  if (fd != 0) fd_close(fd);
  fd = 0;
}

/**
 * Reads `len` bytes at `offset` of the blob into `dst` (from the file, or from memory for a blob
 * handed over in memory). On a read error, records EXIT_IO with its message and returns false;
 * `dst` then holds stale bytes, which the decoder may read (every index it takes from them is a
 * nibble or checked) but whose row the caller never hands out.
 */
export function readAt(dst: usize, offset: u64, len: usize): bool {
  if (len == 0) return true;
  if (fd == 0 && resident != 0) {
    memory.copy(dst, resident + <usize>offset, len);
    return true;
  }
  const err = preadAll(fd, dst, len, offset);
  if (err != ERRNO_SUCCESS) return ioErr("cannot read", err);
  return true;
}

/** Forgets the open blob (after closeBlob): every field back to its state before an open. */
export function resetBlob(): void {
  pathPtr = 0;
  pathLen = 0;
  fd = 0;
  fileSize = 0;
  resident = 0;
  headerPtr = 0;
  sectionCount = 0;
  method = 0;
  rows = 0;
  cols = 0;
  subvec = 0;
  levels = 0;
  codebookSize = 0;
  group = 0;
  layout = 0;
  codeBits = 0;
  rowBytes = 0;
  groupCount = 0;
  subvecsPerRow = 0;
  groupBytes = 0;
  codesOffset = 0;
  codesLength = 0;
  codebooksOffset = 0;
  codebooksLength = 0;
  metadataOffset = 0;
  metadataLength = 0;
  versionMinor = 0;
  rowScaleCount = 0;
  rowScalesOffset = 0;
  adapted = false;
  adTablePrecision = 0;
  adTableOffset = 0;
  adTableLength = 0;
  adTableRowBytes = 0;
  adMlpPrecision = 0;
  adMlpOffset = 0;
  adMlpLength = 0;
  adLayers = 0;
  adTableIndex = 0;
  adMlpIndex = 0;
}
