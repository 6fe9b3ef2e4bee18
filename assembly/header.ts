// Reading and checking a blob's header and section table: every field the format says a reader
// checks (docs/FORMAT.md), in overflow-safe u64 arithmetic, before anything is sized from them.
import {
  MAGIC, VERSION_MAJOR, VERSION_MINOR, HEADER_BYTES, H_MAGIC, H_VERSION_MAJOR, H_VERSION_MINOR,
  H_HEADER_BYTES, H_SECTION_COUNT, H_METHOD, H_ROWS, H_COLS, H_SUBVEC, H_LEVELS, H_CODEBOOK_SIZE,
  H_GROUP, H_LAYOUT, H_CODE_BITS, H_ROW_BYTES, H_GROUP_COUNT, H_HEADER_CRC, SECTION_TABLE_OFFSET,
  SECTION_ENTRY_BYTES, S_ID, S_OFFSET, S_LENGTH, SECTION_ALIGN, MAX_SECTIONS, SECTION_CODES,
  SECTION_CODEBOOKS, SECTION_ROW_SCALES, MAX_ROW_SCALES, METHOD_RVQ, METHOD_INT4, METHOD_INT3, METHOD_INT2,
  LAYOUT_ROW, LAYOUT_COL, RVQ_CODE_BITS, RVQ_CODEBOOK_SIZE, MAX_ROWS, MAX_COLS, MAX_SUBVEC,
  MAX_LEVELS, MAX_SCALE_BLOCK, SECTION_ADAPTOR_TABLE, SECTION_ADAPTOR_MLP,
} from "./format";
import { arenaAlloc } from "./arena";
import { crcUpdate } from "./crc32";
import { putStr, putU64, putHex32 } from "./text";
import { fail, EXIT_BAD_BLOB, EXIT_BUDGET } from "./exit";
import {
  TABLE_MAX_BYTES, blobErr, bad, badField, badDerived, badSection, readAt, fileSize, resident, headerPtr,
  sectionCount, method, rows, cols, subvec, levels, codebookSize, group, layout, codeBits, rowBytes,
  groupCount, subvecsPerRow, groupBytes, codesOffset, codesLength, codebooksOffset, codebooksLength,
  metadataOffset, metadataLength, versionMinor, rowScaleCount, rowScalesOffset, adTableOffset,
  adTableLength, adMlpOffset, adMlpLength, adTableIndex, adMlpIndex,
} from "./blob";
import { readAdaptor } from "./adaptor-sections";

const METADATA_MAX: u64 = 1 << 20;

function u32At(off: u32): u32 {
  return load<u32>(headerPtr + off);
}

function ceilDiv64(a: u64, b: u64): u64 {
  return (a + b - 1) / b;
}

/**
 * Reads the header and section table into the arena and checks everything the format says a
 * reader checks, except the section CRCs and gap bytes (verifySections). On a problem, records
 * the refusal and returns false.
 */
export function readHeader(): bool {
  headerPtr = arenaAlloc(TABLE_MAX_BYTES);
  if (headerPtr == 0) {
    blobErr();
    putStr("budget exceeded: no room for the 448-byte header buffer");
    return fail(EXIT_BUDGET);
  }
  if (fileSize < <u64>HEADER_BYTES) {
    bad("truncated: the file has ");
    putU64(fileSize);
    putStr(" bytes, less than the 64-byte header");
    return fail(EXIT_BAD_BLOB);
  }
  if (resident != 0) memory.copy(headerPtr, resident, HEADER_BYTES);
  else if (!readAt(headerPtr, 0, HEADER_BYTES)) return false;

  const magic = u32At(H_MAGIC);
  if (magic != MAGIC) {
    bad("not a carvq blob (magic ");
    putHex32(magic);
    putStr(", expected ");
    putHex32(MAGIC);
    putStr(")");
    return fail(EXIT_BAD_BLOB);
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
    return fail(EXIT_BAD_BLOB);
  }
  if (u32At(H_HEADER_BYTES) != HEADER_BYTES) return badField("header_bytes", u32At(H_HEADER_BYTES), "64");
  sectionCount = u32At(H_SECTION_COUNT);
  if (sectionCount < 1 || sectionCount > <u32>MAX_SECTIONS) return badField("section_count", sectionCount, "1 to 16");
  const tableEnd = <u64>SECTION_TABLE_OFFSET + <u64>sectionCount * SECTION_ENTRY_BYTES;
  if (tableEnd > fileSize) {
    bad("truncated: the section table ends at byte ");
    putU64(tableEnd);
    putStr(" but the file has ");
    putU64(fileSize);
    return fail(EXIT_BAD_BLOB);
  }
  const tableLen = <usize>(tableEnd - SECTION_TABLE_OFFSET);
  if (resident != 0) memory.copy(headerPtr + SECTION_TABLE_OFFSET, resident + SECTION_TABLE_OFFSET, tableLen);
  else if (!readAt(headerPtr + SECTION_TABLE_OFFSET, SECTION_TABLE_OFFSET, tableLen)) return false;

  let crc = crcUpdate(0xffffffff, headerPtr, H_HEADER_CRC);
  crc = ~crcUpdate(crc, headerPtr + SECTION_TABLE_OFFSET, tableLen);
  if (crc != u32At(H_HEADER_CRC)) {
    bad("header CRC mismatch (stored ");
    putHex32(u32At(H_HEADER_CRC));
    putStr(", computed ");
    putHex32(crc);
    putStr(")");
    return fail(EXIT_BAD_BLOB);
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

  if (method < <u32>METHOD_RVQ || method > <u32>METHOD_INT2) return badField("method", method, "1 (rvq), 2 (int4), 3 (int3) or 4 (int2)");
  if (rows < 1 || rows > <u32>MAX_ROWS) return badField("rows", rows, "1 to 16777216");
  if (cols < 1 || cols > <u32>MAX_COLS) return badField("cols", cols, "1 to 65536");

  // A ROW_SCALES section (v1.1) adds the index byte to every RVQ record, so row_bytes depends on
  // whether the table lists one; the section itself is checked with the others below.
  let hasRowScales = false;
  for (let i: u32 = 0; i < sectionCount; i++) {
    if (load<u32>(headerPtr + SECTION_TABLE_OFFSET + i * SECTION_ENTRY_BYTES + S_ID) == SECTION_ROW_SCALES) hasRowScales = true;
  }

  let wantRowBytes: u64;
  let wantGroupCount: u64;
  if (method == METHOD_RVQ) {
    if (subvec < 1 || subvec > <u32>MAX_SUBVEC) return badField("subvec", subvec, "1 to 256");
    if (levels < 1 || levels > <u32>MAX_LEVELS) return badField("levels", levels, "1 to 8");
    if (codebookSize != RVQ_CODEBOOK_SIZE) return badField("codebook_size", codebookSize, "16");
    if (group < 1) return badField("group", group, "at least 1");
    if (layout != LAYOUT_ROW && layout != LAYOUT_COL) return badField("layout", layout, "0 (row) or 1 (column-block)");
    if (codeBits != RVQ_CODE_BITS) return badField("code_bits", codeBits, "4");
    subvecsPerRow = (cols + subvec - 1) / subvec;
    const s = <u64>subvecsPerRow;
    wantRowBytes = ceilDiv64(s * <u64>levels, 2) + (hasRowScales ? 1 : 0);
    wantGroupCount = layout == LAYOUT_ROW ? ceilDiv64(<u64>rows * s, <u64>group) : ceilDiv64(<u64>rows, <u64>group) * s;
    groupBytes = levels * RVQ_CODEBOOK_SIZE * subvec * 2;
  } else {
    const bits: u32 = method == METHOD_INT4 ? 4 : method == METHOD_INT3 ? 3 : 2;
    if (subvec != 0) return badField("subvec", subvec, "0 for a scalar method");
    if (levels != 0) return badField("levels", levels, "0 for a scalar method");
    if (codebookSize != 0) return badField("codebook_size", codebookSize, "0 for a scalar method");
    if (group < 1 || group > <u32>MAX_SCALE_BLOCK) return badField("group", group, "1 to 65536 (scale block)");
    if (layout != 0) return badField("layout", layout, "0 for a scalar method");
    if (codeBits != bits) return badField("code_bits", codeBits, bits == 4 ? "4 (int4)" : bits == 3 ? "3 (int3)" : "2 (int2)");
    const blocks = ceilDiv64(<u64>cols, <u64>group);
    wantRowBytes = 2 * blocks + ceilDiv64(<u64>cols * bits, 8);
    wantGroupCount = blocks;
    subvecsPerRow = 0;
    groupBytes = 0;
  }
  if (<u64>rowBytes != wantRowBytes) return badDerived("row_bytes", rowBytes, wantRowBytes);
  if (<u64>groupCount != wantGroupCount) return badDerived("group_count", groupCount, wantGroupCount);

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
      return fail(EXIT_BAD_BLOB);
    }
    if (seen & (1 << id)) {
      badSection(i, id, "appears twice");
      return fail(EXIT_BAD_BLOB);
    }
    seen |= 1 << id;
    if (off % SECTION_ALIGN != 0) {
      badSection(i, id, "offset ");
      putU64(off);
      putStr(" is not a multiple of 64");
      return fail(EXIT_BAD_BLOB);
    }
    if (off < prevEnd) {
      badSection(i, id, "offset ");
      putU64(off);
      putStr(i == 0 ? " overlaps the header and section table" : " overlaps or precedes the previous section");
      return fail(EXIT_BAD_BLOB);
    }
    if (off > fileSize || len > fileSize - off) {
      badSection(i, id, "bytes ");
      putU64(off);
      putStr(" + ");
      putU64(len);
      putStr(" run past the end of the file (");
      putU64(fileSize);
      putStr(" bytes)");
      return fail(EXIT_BAD_BLOB);
    }
    let want: u64 = len;
    if (id == SECTION_CODES) {
      want = <u64>rows * <u64>rowBytes;
      codesOffset = off;
      codesLength = len;
    } else if (id == SECTION_CODEBOOKS) {
      if (method != METHOD_RVQ) {
        badSection(i, id, "a scalar-method blob has no codebooks");
        return fail(EXIT_BAD_BLOB);
      }
      want = <u64>groupCount * <u64>groupBytes;
      codebooksOffset = off;
      codebooksLength = len;
    } else if (id == SECTION_ROW_SCALES) {
      if (method != METHOD_RVQ) {
        badSection(i, id, "a scalar-method blob has no row scales");
        return fail(EXIT_BAD_BLOB);
      }
      if (len < 2 || len > <u64>(2 * MAX_ROW_SCALES) || (len & 1) != 0) {
        badSection(i, id, "length ");
        putU64(len);
        putStr(", expected an even number of bytes from 2 to 512 (1 to 256 FP16 scales)");
        return fail(EXIT_BAD_BLOB);
      }
      rowScaleCount = <u32>(len >> 1);
      rowScalesOffset = off;
    } else if (id == SECTION_ADAPTOR_TABLE || id == SECTION_ADAPTOR_MLP) {
      if (method != METHOD_RVQ) {
        badSection(i, id, "a scalar-method blob has no adaptor");
        return fail(EXIT_BAD_BLOB);
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
        return fail(EXIT_BAD_BLOB);
      }
      metadataOffset = off;
      metadataLength = len;
    }
    if (len != want) {
      badSection(i, id, "length ");
      putU64(len);
      putStr(", expected ");
      putU64(want);
      return fail(EXIT_BAD_BLOB);
    }
    // Zero-length sections need no alignment of their end; the next starts after this one.
    prevEnd = off + len;
  }
  if (!(seen & (1 << <u32>SECTION_CODES))) {
    bad("no CODES section");
    return fail(EXIT_BAD_BLOB);
  }
  if (method == METHOD_RVQ && !(seen & (1 << SECTION_CODEBOOKS))) {
    bad("no CODEBOOKS section (required for rvq)");
    return fail(EXIT_BAD_BLOB);
  }
  if (rowScaleCount > 0 && versionMinor < 1) {
    bad("header field version_minor is ");
    putU64(versionMinor);
    putStr(", expected at least 1 for a blob with a ROW_SCALES section");
    return fail(EXIT_BAD_BLOB);
  }
  if (prevEnd != fileSize) {
    bad("the file has ");
    putU64(fileSize);
    putStr(" bytes but its last section ends at byte ");
    putU64(prevEnd);
    return fail(EXIT_BAD_BLOB);
  }
  const hasTable = (seen & (1 << <u32>SECTION_ADAPTOR_TABLE)) != 0;
  const hasMlp = (seen & (1 << <u32>SECTION_ADAPTOR_MLP)) != 0;
  if (hasTable != hasMlp) {
    bad("ADAPTOR_TABLE and ADAPTOR_MLP must come together; only ");
    putStr(hasTable ? "ADAPTOR_TABLE" : "ADAPTOR_MLP");
    putStr(" is present");
    return fail(EXIT_BAD_BLOB);
  }
  if (hasTable) {
    if (versionMinor < 2) {
      bad("header field version_minor is ");
      putU64(versionMinor);
      putStr(", expected at least 2 for a blob with an adaptor");
      return fail(EXIT_BAD_BLOB);
    }
    return readAdaptor();
  }
  return true;
}
