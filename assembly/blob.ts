// Opening a blob: find it under a preopened directory, read and validate the header and section
// table (every field, overflow-safe u64 bounds), then every section's CRC-32 and the zero gaps,
// either in memory (resident) or by streaming the file through one arena chunk (streaming). With
// ROW_SCALES (v1.1) the same pass checks every record's row-scale index against the table. With an
// adaptor (v1.2) the headers of ADAPTOR_TABLE and ADAPTOR_MLP are read and checked here too.
import {
  MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_BYTES, H_MAGIC, H_VERSION_MAJOR, H_VERSION_MINOR,
  H_HEADER_BYTES, H_SECTION_COUNT, H_METHOD, H_ROWS, H_COLS, H_SUBVEC, H_LEVELS, H_CODEBOOK_SIZE,
  H_GROUP, H_LAYOUT, H_CODE_BITS, H_ROW_BYTES, H_GROUP_COUNT, H_HEADER_CRC, SECTION_TABLE_OFFSET,
  SECTION_ENTRY_BYTES, S_ID, S_CRC, S_OFFSET, S_LENGTH, SECTION_ALIGN, MAX_SECTIONS, SECTION_CODES,
  SECTION_CODEBOOKS, SECTION_METADATA, SECTION_ROW_SCALES, MAX_ROW_SCALES, METHOD_RVQ, METHOD_INT4, METHOD_INT3, METHOD_INT2,
  LAYOUT_ROW, LAYOUT_COL, RVQ_CODE_BITS, RVQ_CODEBOOK_SIZE, MAX_ROWS, MAX_COLS, MAX_SUBVEC,
  MAX_LEVELS, MAX_SCALE_BLOCK, SECTION_ADAPTOR_TABLE, SECTION_ADAPTOR_MLP, ADAPTOR_INT8, ADAPTOR_FP16,
  ADAPTOR_TABLE_HEADER_BYTES, MAX_ADAPTOR_LAYERS, MAX_ADAPTOR_WIDTH,
} from "./format";
import {
  path_open, fd_close, fd_prestat_get, fd_prestat_dir_name, fd_filestat_get, preadAll, ERRNO_SUCCESS,
  ERRNO_BADF, ERRNO_NOENT, ERRNO_ACCES, ERRNO_NOTCAPABLE, ERRNO_ISDIR, FILETYPE_REGULAR_FILE,
  LOOKUP_SYMLINK_FOLLOW, RIGHTS_READ_FILE,
} from "./wasi";
import { arenaAlloc, arenaMark, arenaRelease, arenaFree } from "./arena";
import { crcUpdate } from "./crc32";
import { putStr, putU64, putBytes, putHex32 } from "./text";
import { errBegin, die, EXIT_IO, EXIT_BAD_BLOB, EXIT_BUDGET } from "./exit";

const METADATA_MAX: u64 = 1 << 20;
const TABLE_MAX_BYTES: u32 = SECTION_TABLE_OFFSET + MAX_SECTIONS * SECTION_ENTRY_BYTES;

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

const SCRATCH: usize = memory.data(64, 16);

// ---- Errors ----

/** Starts an error line naming the blob: "carvq-rt: <path>: ". */
export function blobErr(): void {
  errBegin();
  putBytes(pathPtr, pathLen);
  putStr(": ");
}

function bad(what: string): void {
  blobErr();
  putStr("bad blob: ");
  putStr(what);
}

function badField(name: string, value: u64, expected: string): void {
  bad("header field ");
  putStr(name);
  putStr(" is ");
  putU64(value);
  putStr(", expected ");
  putStr(expected);
  die(EXIT_BAD_BLOB);
}

function badDerived(name: string, value: u64, want: u64): void {
  bad("header field ");
  putStr(name);
  putStr(" is ");
  putU64(value);
  putStr(" but the other fields give ");
  putU64(want);
  die(EXIT_BAD_BLOB);
}

function sectionName(id: u32): string {
  if (id == SECTION_CODES) return "CODES";
  if (id == SECTION_CODEBOOKS) return "CODEBOOKS";
  if (id == SECTION_METADATA) return "METADATA";
  if (id == SECTION_ROW_SCALES) return "ROW_SCALES";
  if (id == SECTION_ADAPTOR_TABLE) return "ADAPTOR_TABLE";
  if (id == SECTION_ADAPTOR_MLP) return "ADAPTOR_MLP";
  return "unknown";
}

function badSection(i: u32, id: u32, what: string): void {
  bad("section ");
  putU64(i);
  putStr(" (");
  putStr(sectionName(id));
  putStr("): ");
  putStr(what);
}

function ioErr(what: string, errno: u32): void {
  blobErr();
  putStr(what);
  if (errno == 0xffff) putStr(" (the file ended early: was it changed while open?)");
  else if (errno != 0) {
    putStr(" (WASI errno ");
    putU64(errno);
    putStr(")");
  }
  die(EXIT_IO);
}

// ---- Opening ----

function strip(ptr: usize, len: usize): usize {
  // number of leading "./" pairs and extra slashes after them
  let i: usize = 0;
  while (i + 1 < len && load<u8>(ptr + i) == 0x2e && load<u8>(ptr + i + 1) == 0x2f) {
    i += 2;
    while (i < len && load<u8>(ptr + i) == 0x2f) i++;
  }
  return i;
}

/**
 * Finds the preopened directory that holds `path` (the longest matching preopen name, as
 * wasi-libc does) and opens the file read-only. Leaves `fd` and `fileSize` set.
 */
export function openBlob(ptr: usize, len: usize): void {
  pathPtr = ptr;
  pathLen = len;
  const mark = arenaMark();
  let bestFd: i32 = -1;
  let bestScore: i32 = -1;
  let bestRel: usize = 0;
  const absolute = len > 0 && load<u8>(ptr) == 0x2f;
  for (let dirFd: u32 = 3; dirFd < 1024; dirFd++) {
    const err = fd_prestat_get(dirFd, SCRATCH);
    if (err == ERRNO_BADF) break;
    if (err != ERRNO_SUCCESS || load<u8>(SCRATCH) != 0) continue;
    const nameLen = <usize>load<u32>(SCRATCH, 4);
    if (nameLen > 4096) continue;
    arenaRelease(mark);
    const name = arenaAlloc(<u64>nameLen + 1);
    if (name == 0) break;
    if (fd_prestat_dir_name(dirFd, name, <u32>nameLen) != ERRNO_SUCCESS) continue;
    let n = nameLen;
    while (n > 0 && load<u8>(name + n - 1) == 0) n--; // wasm3 counts and copies the NUL
    while (n > 1 && load<u8>(name + n - 1) == 0x2f) n--; // trailing slashes
    let score: i32 = -1;
    let rel: usize = 0;
    const skipName = strip(name, n);
    if (n - skipName == 0 || (n - skipName == 1 && load<u8>(name + skipName) == 0x2e)) {
      if (!absolute) {
        score = 0; // "." matches any relative path
        rel = strip(ptr, len);
      }
    } else if (n == 1 && load<u8>(name) == 0x2f) {
      if (absolute) {
        score = 1;
        rel = 0;
        while (rel < len && load<u8>(ptr + rel) == 0x2f) rel++;
      }
    } else {
      const nm = name + skipName;
      const nl = n - skipName;
      const skipPath = absolute == (load<u8>(nm) == 0x2f) ? strip(ptr, len) : len + 1;
      if (skipPath <= len && len - skipPath >= nl && memory.compare(ptr + skipPath, nm, nl) == 0) {
        const after = skipPath + nl;
        if (after == len || load<u8>(ptr + after) == 0x2f) {
          score = 2 + <i32>nl;
          rel = after;
          while (rel < len && load<u8>(ptr + rel) == 0x2f) rel++;
        }
      }
    }
    if (score > bestScore) {
      bestScore = score;
      bestFd = <i32>dirFd;
      bestRel = rel;
    }
  }
  arenaRelease(mark);
  if (bestFd < 0) {
    blobErr();
    putStr("cannot open: no preopened directory holds this path (give the host access, e.g. wasmtime run --dir=.)");
    die(EXIT_IO);
  }
  const relPtr = ptr + bestRel;
  const relLen = len - bestRel;
  const err = relLen == 0
    ? ERRNO_ISDIR
    : path_open(<u32>bestFd, LOOKUP_SYMLINK_FOLLOW, relPtr, <u32>relLen, 0, RIGHTS_READ_FILE, 0, 0, SCRATCH);
  if (err != ERRNO_SUCCESS) {
    blobErr();
    putStr("cannot open: ");
    if (err == ERRNO_NOENT) putStr("no such file");
    else if (err == ERRNO_ACCES || err == ERRNO_NOTCAPABLE) putStr("permission denied");
    else if (err == ERRNO_ISDIR) putStr("is a directory");
    else {
      putStr("WASI errno ");
      putU64(err);
    }
    die(EXIT_IO);
  }
  fd = load<u32>(SCRATCH);
  const serr = fd_filestat_get(fd, SCRATCH);
  if (serr != ERRNO_SUCCESS) ioErr("cannot stat", serr);
  if (load<u8>(SCRATCH, 16) != FILETYPE_REGULAR_FILE) {
    blobErr();
    putStr("cannot open: not a regular file");
    die(EXIT_IO);
  }
  fileSize = load<u64>(SCRATCH, 32);
}

/** Closes the blob's file descriptor (small hosts have few). */
export function closeBlob(): void {
  if (fd != 0) fd_close(fd);
  fd = 0;
}

/** Reads `len` bytes at `offset` of the blob into `dst`; exits with EXIT_IO on failure. */
export function readAt(dst: usize, offset: u64, len: usize): void {
  if (len == 0) return;
  const err = preadAll(fd, dst, len, offset);
  if (err != ERRNO_SUCCESS) ioErr("cannot read", err);
}

// ---- Header and section table ----

function u32At(off: u32): u32 {
  return load<u32>(headerPtr + off);
}

function ceilDiv64(a: u64, b: u64): u64 {
  return (a + b - 1) / b;
}

/**
 * Reads the header and section table into the arena and checks everything the format says a
 * reader checks, except the section CRCs and gap bytes (verifySections). Exits on any problem.
 */
export function readHeader(): void {
  headerPtr = arenaAlloc(TABLE_MAX_BYTES);
  if (headerPtr == 0) {
    blobErr();
    putStr("budget exceeded: no room for the 448-byte header buffer");
    die(EXIT_BUDGET);
  }
  if (fileSize < <u64>HEADER_BYTES) {
    bad("truncated: the file has ");
    putU64(fileSize);
    putStr(" bytes, less than the 64-byte header");
    die(EXIT_BAD_BLOB);
  }
  if (resident != 0) memory.copy(headerPtr, resident, HEADER_BYTES);
  else readAt(headerPtr, 0, HEADER_BYTES);

  const magic = u32At(H_MAGIC);
  if (magic != MAGIC) {
    bad("not a carvq blob (magic ");
    putHex32(magic);
    putStr(", expected ");
    putHex32(MAGIC);
    putStr(")");
    die(EXIT_BAD_BLOB);
  }
  const major = <u32>load<u16>(headerPtr + H_VERSION_MAJOR);
  const minor = <u32>load<u16>(headerPtr + H_VERSION_MINOR);
  versionMinor = minor;
  if (major != VERSION_MAJOR || minor > <u32>VERSION_MINOR) {
    bad("unsupported version ");
    putU64(major);
    putStr(".");
    putU64(minor);
    putStr(" (this runtime reads 1.0 to 1.");
    putU64(<u64>VERSION_MINOR);
    putStr(")");
    die(EXIT_BAD_BLOB);
  }
  if (u32At(H_HEADER_BYTES) != HEADER_BYTES) badField("header_bytes", u32At(H_HEADER_BYTES), "64");
  sectionCount = u32At(H_SECTION_COUNT);
  if (sectionCount < 1 || sectionCount > <u32>MAX_SECTIONS) badField("section_count", sectionCount, "1 to 16");
  const tableEnd = <u64>SECTION_TABLE_OFFSET + <u64>sectionCount * SECTION_ENTRY_BYTES;
  if (tableEnd > fileSize) {
    bad("truncated: the section table ends at byte ");
    putU64(tableEnd);
    putStr(" but the file has ");
    putU64(fileSize);
    die(EXIT_BAD_BLOB);
  }
  const tableLen = <usize>(tableEnd - SECTION_TABLE_OFFSET);
  if (resident != 0) memory.copy(headerPtr + SECTION_TABLE_OFFSET, resident + SECTION_TABLE_OFFSET, tableLen);
  else readAt(headerPtr + SECTION_TABLE_OFFSET, SECTION_TABLE_OFFSET, tableLen);

  let crc = crcUpdate(0xffffffff, headerPtr, H_HEADER_CRC);
  crc = ~crcUpdate(crc, headerPtr + SECTION_TABLE_OFFSET, tableLen);
  if (crc != u32At(H_HEADER_CRC)) {
    bad("header CRC mismatch (stored ");
    putHex32(u32At(H_HEADER_CRC));
    putStr(", computed ");
    putHex32(crc);
    putStr(")");
    die(EXIT_BAD_BLOB);
  }

  method = u32At(H_METHOD);
  rows = u32At(H_ROWS);
  cols = u32At(H_COLS);
  subvec = u32At(H_SUBVEC);
  levels = u32At(H_LEVELS);
  codebookSize = u32At(H_CODEBOOK_SIZE);
  group = u32At(H_GROUP);
  layout = u32At(H_LAYOUT);
  codeBits = u32At(H_CODE_BITS);
  rowBytes = u32At(H_ROW_BYTES);
  groupCount = u32At(H_GROUP_COUNT);

  if (method < <u32>METHOD_RVQ || method > <u32>METHOD_INT2) badField("method", method, "1 (rvq), 2 (int4), 3 (int3) or 4 (int2)");
  if (rows < 1 || rows > <u32>MAX_ROWS) badField("rows", rows, "1 to 16777216");
  if (cols < 1 || cols > <u32>MAX_COLS) badField("cols", cols, "1 to 65536");

  // A ROW_SCALES section (v1.1) adds the index byte to every RVQ record, so row_bytes depends on
  // whether the table lists one; the section itself is checked with the others below.
  let hasRowScales = false;
  for (let i: u32 = 0; i < sectionCount; i++) {
    if (load<u32>(headerPtr + SECTION_TABLE_OFFSET + i * SECTION_ENTRY_BYTES + S_ID) == SECTION_ROW_SCALES) hasRowScales = true;
  }

  let wantRowBytes: u64;
  let wantGroupCount: u64;
  if (method == METHOD_RVQ) {
    if (subvec < 1 || subvec > <u32>MAX_SUBVEC) badField("subvec", subvec, "1 to 256");
    if (levels < 1 || levels > <u32>MAX_LEVELS) badField("levels", levels, "1 to 8");
    if (codebookSize != RVQ_CODEBOOK_SIZE) badField("codebook_size", codebookSize, "16");
    if (group < 1) badField("group", group, "at least 1");
    if (layout != LAYOUT_ROW && layout != LAYOUT_COL) badField("layout", layout, "0 (row) or 1 (column-block)");
    if (codeBits != RVQ_CODE_BITS) badField("code_bits", codeBits, "4");
    subvecsPerRow = (cols + subvec - 1) / subvec;
    const s = <u64>subvecsPerRow;
    wantRowBytes = ceilDiv64(s * <u64>levels, 2) + (hasRowScales ? 1 : 0);
    wantGroupCount = layout == LAYOUT_ROW ? ceilDiv64(<u64>rows * s, <u64>group) : ceilDiv64(<u64>rows, <u64>group) * s;
    groupBytes = levels * RVQ_CODEBOOK_SIZE * subvec * 2;
  } else {
    const bits: u32 = method == METHOD_INT4 ? 4 : method == METHOD_INT3 ? 3 : 2;
    if (subvec != 0) badField("subvec", subvec, "0 for a scalar method");
    if (levels != 0) badField("levels", levels, "0 for a scalar method");
    if (codebookSize != 0) badField("codebook_size", codebookSize, "0 for a scalar method");
    if (group < 1 || group > <u32>MAX_SCALE_BLOCK) badField("group", group, "1 to 65536 (scale block)");
    if (layout != 0) badField("layout", layout, "0 for a scalar method");
    if (codeBits != bits) badField("code_bits", codeBits, bits == 4 ? "4 (int4)" : bits == 3 ? "3 (int3)" : "2 (int2)");
    const blocks = ceilDiv64(<u64>cols, <u64>group);
    wantRowBytes = 2 * blocks + ceilDiv64(<u64>cols * bits, 8);
    wantGroupCount = blocks;
    subvecsPerRow = 0;
    groupBytes = 0;
  }
  if (<u64>rowBytes != wantRowBytes) badDerived("row_bytes", rowBytes, wantRowBytes);
  if (<u64>groupCount != wantGroupCount) badDerived("group_count", groupCount, wantGroupCount);

  // Sections: known ids, each once, 64-aligned, in increasing order, no overlap, inside the file,
  // the file ending exactly at the last one, the expected lengths.
  let seen: u32 = 0;
  let prevEnd: u64 = (tableEnd + SECTION_ALIGN - 1) & ~(<u64>SECTION_ALIGN - 1);
  for (let i: u32 = 0; i < sectionCount; i++) {
    const e = headerPtr + SECTION_TABLE_OFFSET + i * SECTION_ENTRY_BYTES;
    const id = load<u32>(e + S_ID);
    const off = load<u64>(e + S_OFFSET);
    const len = load<u64>(e + S_LENGTH);
    if (id < <u32>SECTION_CODES || id > <u32>SECTION_ADAPTOR_MLP) {
      badSection(i, id, "unknown section id ");
      putU64(id);
      die(EXIT_BAD_BLOB);
    }
    if (seen & (1 << id)) {
      badSection(i, id, "appears twice");
      die(EXIT_BAD_BLOB);
    }
    seen |= 1 << id;
    if (off % SECTION_ALIGN != 0) {
      badSection(i, id, "offset ");
      putU64(off);
      putStr(" is not a multiple of 64");
      die(EXIT_BAD_BLOB);
    }
    if (off < prevEnd) {
      badSection(i, id, "offset ");
      putU64(off);
      putStr(i == 0 ? " overlaps the header and section table" : " overlaps or precedes the previous section");
      die(EXIT_BAD_BLOB);
    }
    if (off > fileSize || len > fileSize - off) {
      badSection(i, id, "bytes ");
      putU64(off);
      putStr(" + ");
      putU64(len);
      putStr(" run past the end of the file (");
      putU64(fileSize);
      putStr(" bytes)");
      die(EXIT_BAD_BLOB);
    }
    let want: u64 = len;
    if (id == SECTION_CODES) {
      want = <u64>rows * <u64>rowBytes;
      codesOffset = off;
      codesLength = len;
    } else if (id == SECTION_CODEBOOKS) {
      if (method != METHOD_RVQ) {
        badSection(i, id, "a scalar-method blob has no codebooks");
        die(EXIT_BAD_BLOB);
      }
      want = <u64>groupCount * <u64>groupBytes;
      codebooksOffset = off;
      codebooksLength = len;
    } else if (id == SECTION_ROW_SCALES) {
      if (method != METHOD_RVQ) {
        badSection(i, id, "a scalar-method blob has no row scales");
        die(EXIT_BAD_BLOB);
      }
      if (len < 2 || len > <u64>(2 * MAX_ROW_SCALES) || (len & 1) != 0) {
        badSection(i, id, "length ");
        putU64(len);
        putStr(", expected an even number of bytes from 2 to 512 (1 to 256 FP16 scales)");
        die(EXIT_BAD_BLOB);
      }
      rowScaleCount = <u32>(len >> 1);
      rowScalesOffset = off;
    } else if (id == SECTION_ADAPTOR_TABLE || id == SECTION_ADAPTOR_MLP) {
      if (method != METHOD_RVQ) {
        badSection(i, id, "a scalar-method blob has no adaptor");
        die(EXIT_BAD_BLOB);
      }
      // The length follows from the section's own header, checked once the table is read.
      if (id == SECTION_ADAPTOR_TABLE) {
        adTableOffset = off;
        adTableLength = len;
        adTableIndex = i;
      } else {
        adMlpOffset = off;
        adMlpLength = len;
        adMlpIndex = i;
      }
    } else {
      if (len > METADATA_MAX) {
        badSection(i, id, "longer than 1 MiB");
        die(EXIT_BAD_BLOB);
      }
      metadataOffset = off;
      metadataLength = len;
    }
    if (len != want) {
      badSection(i, id, "length ");
      putU64(len);
      putStr(", expected ");
      putU64(want);
      die(EXIT_BAD_BLOB);
    }
    // Zero-length sections need no alignment of their end; the next starts after this one.
    prevEnd = off + len;
  }
  if (!(seen & (1 << <u32>SECTION_CODES))) {
    bad("no CODES section");
    die(EXIT_BAD_BLOB);
  }
  if (method == METHOD_RVQ && !(seen & (1 << SECTION_CODEBOOKS))) {
    bad("no CODEBOOKS section (required for rvq)");
    die(EXIT_BAD_BLOB);
  }
  if (rowScaleCount > 0 && versionMinor < 1) {
    bad("header field version_minor is ");
    putU64(versionMinor);
    putStr(", expected at least 1 for a blob with a ROW_SCALES section");
    die(EXIT_BAD_BLOB);
  }
  if (prevEnd != fileSize) {
    bad("the file has ");
    putU64(fileSize);
    putStr(" bytes but its last section ends at byte ");
    putU64(prevEnd);
    die(EXIT_BAD_BLOB);
  }
  const hasTable = (seen & (1 << <u32>SECTION_ADAPTOR_TABLE)) != 0;
  const hasMlp = (seen & (1 << <u32>SECTION_ADAPTOR_MLP)) != 0;
  if (hasTable != hasMlp) {
    bad("ADAPTOR_TABLE and ADAPTOR_MLP must come together; only ");
    putStr(hasTable ? "ADAPTOR_TABLE" : "ADAPTOR_MLP");
    putStr(" is present");
    die(EXIT_BAD_BLOB);
  }
  if (hasTable) {
    if (versionMinor < 2) {
      bad("header field version_minor is ");
      putU64(versionMinor);
      putStr(", expected at least 2 for a blob with an adaptor");
      die(EXIT_BAD_BLOB);
    }
    readAdaptor();
  }
}

// ---- The adaptor's sections (v1.2) ----

let adTableIndex: u32 = 0;
let adMlpIndex: u32 = 0;
const AD_HEAD: usize = memory.data(32, 16);

// A problem inside an adaptor section is recorded here and reported only once every CRC has
// matched (verifySections), as the TypeScript reader does: a corrupted byte in a width is a CRC
// mismatch, not a width out of range. Until then the blob is planned as if it had no adaptor.
const FAULT_NONE: u32 = 0;
const FAULT_MLP_SHORT: u32 = 1; // a = length
const FAULT_MLP_PRECISION: u32 = 2; // a = code
const FAULT_MLP_LAYERS: u32 = 3; // a = layer_count
const FAULT_MLP_SHORT_WIDTHS: u32 = 4; // a = length, b = widths
const FAULT_MLP_WIDTH: u32 = 5; // a = k, b = width
const FAULT_MLP_OUTPUT: u32 = 6; // a = w_C
const FAULT_MLP_LENGTH: u32 = 7; // a = length, b = expected (widths in AD_WIDTHS)
const FAULT_TABLE_SHORT: u32 = 8; // a = length
const FAULT_TABLE_PRECISION: u32 = 9; // a = code
const FAULT_TABLE_M0: u32 = 10; // a = m0
const FAULT_TABLE_LENGTH: u32 = 11; // a = length, b = expected
let fault: u32 = FAULT_NONE;
let faultA: u64 = 0;
let faultB: u64 = 0;

function setFault(kind: u32, a: u64, b: u64): void {
  fault = kind;
  faultA = a;
  faultB = b;
}

/** Bytes of one stored matrix of `rows` x `width` (int8: values then one FP16 scale per row). */
function matrixBytes(int8: bool, rows: u64, width: u64): u64 {
  return int8 ? rows * width + 2 * rows : 2 * rows * width;
}

/**
 * Reads the headers of ADAPTOR_MLP and ADAPTOR_TABLE (at most 28 and 8 bytes) and checks them as
 * docs/FORMAT.md and tools/blob/adaptor.ts do: precision codes, layer_count 1 to 4, every width
 * 1 to 4096, w_C = n, m0 = w_0, and both lengths exactly what the widths give. Sizes are computed
 * in u64 from the range-checked widths. Records every layer's offsets for the kernels and sets
 * `adapted`, or records the first problem (reported by verifySections).
 */
function readAdaptor(): void {
  // MLP first, as the TypeScript reader does.
  if (adMlpLength < 8) return setFault(FAULT_MLP_SHORT, adMlpLength, 0);
  readAt(AD_HEAD, adMlpOffset, 8);
  adMlpPrecision = load<u32>(AD_HEAD);
  if (adMlpPrecision != ADAPTOR_INT8 && adMlpPrecision != ADAPTOR_FP16) return setFault(FAULT_MLP_PRECISION, adMlpPrecision, 0);
  adLayers = load<u32>(AD_HEAD, 4);
  if (adLayers < 1 || adLayers > <u32>MAX_ADAPTOR_LAYERS) return setFault(FAULT_MLP_LAYERS, adLayers, 0);
  const headBytes = <u64>8 + 4 * (<u64>adLayers + 1);
  if (adMlpLength < headBytes) return setFault(FAULT_MLP_SHORT_WIDTHS, adMlpLength, adLayers + 1);
  readAt(AD_WIDTHS, adMlpOffset + 8, <usize>(4 * (adLayers + 1)));
  for (let k: u32 = 0; k <= adLayers; k++) {
    const w = adWidth(k);
    if (w < 1 || w > <u32>MAX_ADAPTOR_WIDTH) return setFault(FAULT_MLP_WIDTH, k, w);
  }
  if (adWidth(adLayers) != cols) return setFault(FAULT_MLP_OUTPUT, adWidth(adLayers), 0);
  const int8 = adMlpPrecision == ADAPTOR_INT8;
  let at = headBytes;
  for (let k: u32 = 0; k < adLayers; k++) {
    const inputs = <u64>adWidth(k);
    const outputs = <u64>adWidth(k + 1);
    const e = AD_LAYOUT + (<usize>k << 5);
    store<u32>(e + L_WEIGHTS, <u32>at);
    store<u32>(e + L_SCALES, <u32>(at + outputs * inputs * (int8 ? 1 : 2)));
    at += matrixBytes(int8, outputs, inputs);
    store<u32>(e + L_BIAS, <u32>at);
    at += 2 * outputs;
    if (k + 1 < adLayers) {
      store<u32>(e + L_GAMMA, <u32>at);
      store<u32>(e + L_BETA, <u32>(at + 2 * outputs));
      at += 4 * outputs;
    } else {
      store<u32>(e + L_GAMMA, 0);
      store<u32>(e + L_BETA, 0);
    }
    store<u32>(e + L_END, <u32>at);
  }
  if (adMlpLength != at) return setFault(FAULT_MLP_LENGTH, adMlpLength, at);

  if (adTableLength < <u64>ADAPTOR_TABLE_HEADER_BYTES) return setFault(FAULT_TABLE_SHORT, adTableLength, 0);
  readAt(AD_HEAD, adTableOffset, 8);
  adTablePrecision = load<u32>(AD_HEAD);
  if (adTablePrecision != ADAPTOR_INT8 && adTablePrecision != ADAPTOR_FP16) return setFault(FAULT_TABLE_PRECISION, adTablePrecision, 0);
  const m0 = load<u32>(AD_HEAD, 4);
  if (m0 != adWidth(0)) return setFault(FAULT_TABLE_M0, m0, 0);
  adTableRowBytes = adTablePrecision == ADAPTOR_INT8 ? 2 + m0 : 2 * m0;
  const wantTable = <u64>ADAPTOR_TABLE_HEADER_BYTES + <u64>rows * <u64>adTableRowBytes;
  if (adTableLength != wantTable) return setFault(FAULT_TABLE_LENGTH, adTableLength, wantTable);
  adapted = true;
}

/** Reports the adaptor problem readAdaptor recorded, if any (exit 4). */
function reportAdaptorFault(): void {
  if (fault == FAULT_NONE) return;
  const table = fault >= FAULT_TABLE_SHORT;
  badSection(table ? adTableIndex : adMlpIndex, table ? SECTION_ADAPTOR_TABLE : SECTION_ADAPTOR_MLP, "");
  if (fault == FAULT_MLP_SHORT || fault == FAULT_TABLE_SHORT) {
    putStr("length ");
    putU64(faultA);
    putStr(", too short for its 8-byte header");
  } else if (fault == FAULT_MLP_PRECISION || fault == FAULT_TABLE_PRECISION) {
    putStr("precision is ");
    putU64(faultA);
    putStr(", expected 0 (int8) or 1 (fp16)");
  } else if (fault == FAULT_MLP_LAYERS) {
    putStr("layer_count is ");
    putU64(faultA);
    putStr(", expected 1 to 4");
  } else if (fault == FAULT_MLP_SHORT_WIDTHS) {
    putStr("length ");
    putU64(faultA);
    putStr(", too short for ");
    putU64(faultB);
    putStr(" widths");
  } else if (fault == FAULT_MLP_WIDTH) {
    putStr("width ");
    putU64(faultA);
    putStr(" is ");
    putU64(faultB);
    putStr(", expected 1 to 4096");
  } else if (fault == FAULT_MLP_OUTPUT) {
    putStr("output width is ");
    putU64(faultA);
    putStr(", expected the table's ");
    putU64(cols);
    putStr(" columns");
  } else if (fault == FAULT_MLP_LENGTH || fault == FAULT_TABLE_LENGTH) {
    putStr("length ");
    putU64(faultA);
    putStr(", expected ");
    putU64(faultB);
    if (fault == FAULT_MLP_LENGTH) {
      putStr(" for widths ");
      for (let k: u32 = 0; k <= adLayers; k++) {
        if (k > 0) putStr("-");
        putU64(adWidth(k));
      }
    }
  } else {
    putStr("m0 is ");
    putU64(faultA);
    putStr(", expected the MLP's input width ");
    putU64(adWidth(0));
  }
  die(EXIT_BAD_BLOB);
}

// ---- Section contents ----

let chunkPtr: usize = 0;
let chunkLen: usize = 0;

/** v1.1: the first token whose row-scale index is not below R (-1: none so far), and that index. */
let badIndexToken: i64 = -1;
let badIndexValue: u32 = 0;
/** Offset, from the start of CODES, of the next record whose index byte is still to be checked. */
let nextRecord: u64 = 0;

/**
 * Checks the row-scale index (first byte) of every record that starts in bytes [pos, pos + n) of
 * the CODES section, held at `p`. Called on consecutive pieces of the section, in order.
 */
function checkIndices(p: usize, pos: u64, n: usize): void {
  const end = pos + <u64>n;
  while (nextRecord < end) {
    const index = <u32>load<u8>(p + <usize>(nextRecord - pos));
    if (index >= rowScaleCount && badIndexToken < 0) {
      badIndexToken = <i64>(nextRecord / <u64>rowBytes);
      badIndexValue = index;
    }
    nextRecord += <u64>rowBytes;
  }
}

/** CRC-32 of `len` bytes at `off`; with `indices`, also checks the row-scale indices of CODES there. */
function crcOf(off: u64, len: u64, indices: bool): u32 {
  let c: u32 = 0xffffffff;
  if (resident != 0) {
    if (indices) checkIndices(resident + <usize>off, 0, <usize>len);
    return ~crcUpdate(c, resident + <usize>off, <usize>len);
  }
  let pos: u64 = 0;
  while (len > 0) {
    const n = len < <u64>chunkLen ? <usize>len : chunkLen;
    readAt(chunkPtr, off, n);
    c = crcUpdate(c, chunkPtr, n);
    if (indices) checkIndices(chunkPtr, pos, n);
    off += n;
    pos += n;
    len -= n;
  }
  return ~c;
}

/** True when the `len` bytes at `off` are all zero (the gaps before sections), read chunk by chunk. */
function zeroRange(off: u64, len: u64): bool {
  while (len > 0) {
    const n = len < <u64>chunkLen || resident != 0 ? <usize>len : chunkLen;
    let p: usize;
    if (resident != 0) p = resident + <usize>off;
    else {
      readAt(chunkPtr, off, n);
      p = chunkPtr;
    }
    for (let i: usize = 0; i < n; i++) if (load<u8>(p + i) != 0) return false;
    off += n;
    len -= n;
  }
  return true;
}

/**
 * Checks every section's CRC-32, that the alignment gaps are zero, (v1.1) that every record's
 * row-scale index is below R and (v1.2) that the adaptor sections' headers were valid: the whole
 * blob is refused, in both modes, as the TypeScript reader refuses it. In streaming mode the file passes through one transient chunk of at most 64 KiB
 * (released afterwards); the indices are checked on the same pass, at no extra read.
 */
export function verifySections(): void {
  const mark = arenaMark();
  if (resident == 0) {
    let want: u64 = 65536;
    const free = arenaFree();
    if (free < want) want = free & ~(<u64>63);
    if (want < 64) {
      blobErr();
      putStr("budget exceeded: no room left for a 64-byte read buffer to check the CRCs");
      die(EXIT_BUDGET);
    }
    chunkLen = <usize>want;
    chunkPtr = arenaAlloc(want);
    if (chunkPtr == 0) {
      blobErr();
      putStr("budget exceeded: the host refused memory for the CRC read buffer");
      die(EXIT_BUDGET);
    }
  }
  const tableEnd = <u64>SECTION_TABLE_OFFSET + <u64>sectionCount * SECTION_ENTRY_BYTES;
  let prevEnd = tableEnd;
  for (let i: u32 = 0; i < sectionCount; i++) {
    const e = headerPtr + SECTION_TABLE_OFFSET + i * SECTION_ENTRY_BYTES;
    const id = load<u32>(e + S_ID);
    const off = load<u64>(e + S_OFFSET);
    const len = load<u64>(e + S_LENGTH);
    if (!zeroRange(prevEnd, off - prevEnd)) {
      badSection(i, id, "the padding before it is not zero");
      die(EXIT_BAD_BLOB);
    }
    const crc = crcOf(off, len, id == SECTION_CODES && rowScaleCount > 0);
    if (crc != load<u32>(e + S_CRC)) {
      badSection(i, id, "CRC mismatch (stored ");
      putHex32(load<u32>(e + S_CRC));
      putStr(", computed ");
      putHex32(crc);
      putStr(")");
      die(EXIT_BAD_BLOB);
    }
    prevEnd = off + len;
  }
  if (badIndexToken >= 0) {
    bad("token ");
    putU64(<u64>badIndexToken);
    putStr(" has row-scale index ");
    putU64(badIndexValue);
    putStr(" but the ROW_SCALES section holds ");
    putU64(rowScaleCount);
    putStr(rowScaleCount == 1 ? " scale" : " scales");
    die(EXIT_BAD_BLOB);
  }
  reportAdaptorFault();
  arenaRelease(mark);
}

/** Reads the whole file into the arena (resident mode). The caller has checked it fits. */
export function loadResident(): bool {
  // 8 spare bytes so a kernel may read a little past the last record.
  const p = arenaAlloc(fileSize + 8);
  if (p == 0) return false;
  let off: u64 = 0;
  while (off < fileSize) {
    const left = fileSize - off;
    const n = left < (1 << 24) ? <usize>left : <usize>(1 << 24);
    readAt(p + <usize>off, off, n);
    off += n;
  }
  resident = p;
  return true;
}
