// Checking every section's bytes at open: CRC-32s, zero gaps, (v1.1) every record's row-scale
// index and (v1.2) the adaptor headers' problems found earlier; and reading a blob whole into
// memory (resident mode).
import { SECTION_TABLE_OFFSET, SECTION_ENTRY_BYTES, S_ID, S_CRC, S_OFFSET, S_LENGTH, SECTION_CODES } from "./format";
import { arenaAlloc, arenaMark, arenaRelease, arenaFree } from "./arena";
import { crcUpdate } from "./crc32";
import { putStr, putU64, putHex32 } from "./text";
import { fail, failure, EXIT_OK, EXIT_BAD_BLOB, EXIT_BUDGET } from "./exit";
import { blobErr, bad, badSection, readAt, resident, headerPtr, sectionCount, rowBytes, rowScaleCount, fileSize } from "./blob";
import { reportAdaptorFault } from "./adaptor-sections";

let chunkPtr: usize = 0;
let chunkLen: usize = 0;

/** v1.1: the first token whose row-scale index is not below R (-1: none so far), and that index. */
let badIndexToken: i64 = -1;
let badIndexValue: u32 = 0;
/** Offset, from the start of CODES, of the next record whose index byte is still to be checked. */
let nextRecord: u64 = 0;

function resetIndexCheck(): void {
  badIndexToken = -1;
  badIndexValue = 0;
  nextRecord = 0;
}

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
    if (!readAt(chunkPtr, off, n)) return 0; // the caller sees the failure
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
      if (!readAt(chunkPtr, off, n)) return true; // the caller sees the failure
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
export function verifySections(): bool {
  resetIndexCheck();
  const mark = arenaMark();
  if (resident == 0) {
    let want: u64 = 65536;
    const free = arenaFree();
    if (free < want) want = free & ~(<u64>63);
    if (want < 64) {
      blobErr();
      putStr("budget exceeded: no room left for a 64-byte read buffer to check the CRCs");
      return fail(EXIT_BUDGET);
    }
    chunkLen = <usize>want;
    chunkPtr = arenaAlloc(want);
    if (chunkPtr == 0) {
      blobErr();
      putStr("budget exceeded: the host refused memory for the CRC read buffer");
      return fail(EXIT_BUDGET);
    }
  }
  const tableEnd = <u64>SECTION_TABLE_OFFSET + <u64>sectionCount * SECTION_ENTRY_BYTES;
  let prevEnd = tableEnd;
  for (let i: u32 = 0; i < sectionCount; i++) {
    const e = headerPtr + SECTION_TABLE_OFFSET + i * SECTION_ENTRY_BYTES;
    const id = load<u32>(e + S_ID);
    const off = load<u64>(e + S_OFFSET);
    const len = load<u64>(e + S_LENGTH);
    const zeros = zeroRange(prevEnd, off - prevEnd);
    if (failure != EXIT_OK) return false;
    if (!zeros) {
      badSection(i, id, "the padding before it is not zero");
      return fail(EXIT_BAD_BLOB);
    }
    const crc = crcOf(off, len, id == SECTION_CODES && rowScaleCount > 0);
    if (failure != EXIT_OK) return false;
    if (crc != load<u32>(e + S_CRC)) {
      badSection(i, id, "CRC mismatch (stored ");
      putHex32(load<u32>(e + S_CRC));
      putStr(", computed ");
      putHex32(crc);
      putStr(")");
      return fail(EXIT_BAD_BLOB);
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
    return fail(EXIT_BAD_BLOB);
  }
  if (!reportAdaptorFault()) return false;
  arenaRelease(mark);
  return true;
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
    if (!readAt(p + <usize>off, off, n)) return false;
    off += n;
  }
  resident = p;
  return true;
}

