// The lookup core: one open blob per instance, validated and planned once at open, then any
// number of lookups that never allocate. The command (main.ts), the library (lib.ts) and the
// component (component.ts) are thin shells over these calls. Nothing here exits the process or
// traps on any input: a refusal is a status code (exit.ts) and one message line (text.ts).
//
//   tableBegin()                        forget any blob, clear the last refusal
//   tableOpenFile(path) | tableOpenMemory(ptr, bytes)   find, read and check header + section table
//   tablePlan(mode, tokens[, out, outBytes, widen])     choose the mode, check every CRC, plan the arena
//   decodeToken / finishRows (lookup.ts)                 per token
//   tableClose()                        close the file, release the arena
import { arenaAlloc, arenaFree, arenaUsed, arenaMark, arenaRelease, BUDGET_BYTES } from "./arena";
import { putStr, putU64 } from "./text";
import { errBegin, fail, clearFailure, failure, EXIT_BUDGET, EXIT_TOKEN_RANGE } from "./exit";
import { blobErr, closeBlob, resetBlob, adapted, rows, cols, fileSize } from "./blob";
import * as blob from "./blob";
import { openBlob } from "./preopen";
import { readHeader } from "./header";
import { resetAdaptorFault } from "./adaptor-sections";
import { verifySections } from "./verify";
import { resetAdaptorPlan } from "./adaptor";
import {
  MODE_AUTO, MODE_RESIDENT, MODE_STREAMING, residentNeed, streamingNeed, planBuffers, resetPlan, decodeToken,
  finishRows, outRows, widenCodebooks,
} from "./lookup";

/** The name a blob handed over in memory goes by in messages. */
const MEMORY_NAME: usize = memory.data<u8>([0x28, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x29]); // "(memory)"
const MEMORY_NAME_LEN: usize = 8;

/** The arena's top before anything of a blob was reserved: close releases back to it. */
let baseMark: u64 = 0;
let baseFixed = false;
/** True from a successful tablePlan to tableClose. */
export let isOpen: bool = false;

/** Fixes the arena's base for every blob from now on (the library: right after its I/O area). */
export function tableBase(mark: u64): void {
  baseMark = mark;
  baseFixed = true;
}

/** Forgets any open blob (closing its file, releasing the arena), clears the last refusal. */
export function tableBegin(): void {
  tableClose();
  clearFailure();
  if (!baseFixed) baseMark = arenaMark();
}

/** Closes the blob's file and forgets the blob, keeping what the arena holds (a blob area). */
export function tableForget(): void {
  closeBlob();
  resetBlob();
  resetPlan();
  resetAdaptorPlan();
  resetAdaptorFault();
  isOpen = false;
}

/** Closes the blob's file and releases everything reserved since the base. Harmless when nothing is open. */
export function tableClose(): void {
  tableForget();
  if (baseMark != 0) arenaRelease(baseMark);
}

/** Opens the file at `path` (under the preopens) and checks its header and section table. */
export function tableOpenFile(ptr: usize, len: usize): bool {
  return openBlob(ptr, len) && readHeader();
}

/**
 * Takes the `bytes` at `ptr` (reserved by the caller in the arena, 8 spare bytes after them) as
 * the blob, resident, and checks its header and section table.
 */
export function tableOpenMemory(ptr: usize, bytes: u64): bool {
  blob.pathPtr = MEMORY_NAME;
  blob.pathLen = MEMORY_NAME_LEN;
  blob.fd = 0;
  blob.fileSize = bytes;
  blob.resident = ptr;
  return readHeader();
}

function budgetError(what: string, need: u64): bool {
  blobErr();
  putStr("budget exceeded: ");
  putStr(what);
  putStr(" needs ");
  putU64(need);
  putStr(" more bytes of memory but only ");
  putU64(arenaFree());
  putStr(" are left under the budget of ");
  putU64(BUDGET_BYTES);
  putStr(" bytes (");
  putU64(arenaUsed());
  putStr(" in use)");
  return fail(EXIT_BUDGET);
}

/** The mode asked for, else the build's default; auto = resident if it fits. 0 after a refusal. */
function chooseMode(asked: u32): u32 {
  let m = asked != MODE_AUTO ? asked : <u32>CARVQ_DEFAULT_MODE;
  const free = arenaFree();
  // A blob handed over in memory is resident already: its bytes are not needed a second time.
  const inMemory = blob.fd == 0 && blob.resident != 0;
  if (inMemory) return MODE_RESIDENT;
  if (m == MODE_AUTO) m = residentNeed() <= free ? MODE_RESIDENT : MODE_STREAMING;
  if (m == MODE_RESIDENT && residentNeed() > free) {
    budgetError("resident mode (the whole blob in memory, plus one output row)", residentNeed());
    return 0;
  }
  if (m == MODE_STREAMING && streamingNeed() > free) {
    if (adapted) {
      budgetError("streaming mode with the adaptor (one record, one output row, the codebook entries of one sub-vector, any row scales, the adaptor's table record, one token's activations and one output channel of its widest layer)", streamingNeed());
    } else {
      budgetError("streaming mode (one record, one output row, the codebook entries of one sub-vector and any row scales)", streamingNeed());
    }
    return 0;
  }
  return m;
}

/**
 * After the header: chooses the mode, checks every section's CRC and plans the buffers for
 * `tokens` tokens per batch, the rows going to a buffer of their own or (`out`) to the `outBytes`
 * there. With `widen` (long-lived instances: the library, lookup --stdin, bench), a resident RVQ
 * blob's codebooks are then widened to f32 once if the budget still holds them. Returns false
 * after a refusal (bad blob, budget, read error).
 */
export function tablePlan(asked: u32, tokens: u32, out: usize = 0, outBytes: u64 = 0, widen: bool = false): bool {
  const m = chooseMode(asked);
  if (m == 0) return false;
  // Streaming checks the CRCs first, through a transient chunk released before the buffers are
  // planned, so the codebook window may take the rest of the arena. Resident checks them in memory.
  if (m == MODE_STREAMING && !verifySections()) return false;
  if (!planBuffers(m, tokens, out, outBytes)) {
    blobErr();
    putStr("budget exceeded: the host refused to grow memory within the budget of ");
    putU64(BUDGET_BYTES);
    putStr(" bytes");
    return fail(EXIT_BUDGET);
  }
  if (m != MODE_STREAMING && !verifySections()) return false;
  if (widen) widenCodebooks();
  isOpen = true;
  return true;
}

/** Refuses token `t` if it is not below the blob's row count (EXIT_TOKEN_RANGE). */
export function checkToken(t: u64): bool {
  if (t < <u64>rows) return true;
  blobErr();
  putStr("token ");
  putU64(t);
  putStr(" is out of range: the blob has ");
  putU64(rows);
  putStr(rows == 1 ? " token (0 to " : " tokens (0 to ");
  putU64(rows - 1);
  putStr(")");
  return fail(EXIT_TOKEN_RANGE);
}

/** Bits per parameter of the open blob: every byte of the file over rows x cols. */
export function bitsPerParameter(): f64 {
  if (rows == 0 || cols == 0) return 0;
  return <f64>fileSize * 8 / (<f64>rows * <f64>cols);
}

/** Reserves `bytes` (+ 8 spare) in the arena for a blob the host hands over; 0 if the budget refuses. */
export function reserveBlobArea(bytes: u64): usize {
  const p = arenaAlloc(bytes + 8);
  if (p == 0) {
    errBegin();
    putStr("budget exceeded: a blob of ");
    putU64(bytes);
    putStr(" bytes does not fit in memory: ");
    putU64(arenaFree());
    putStr(" bytes are left under the budget of ");
    putU64(BUDGET_BYTES);
    putStr(" bytes");
    fail(EXIT_BUDGET);
  }
  return p;
}

/**
 * Looks up the `count` little-endian u32 token ids at `area` and writes their rows (count x cols
 * little-endian f32) over them, in the same order. The caller checked that the rows fit the area
 * and that a blob is open. Every id is checked first: on EXIT_TOKEN_RANGE nothing is written.
 * Rows are decoded from the last to the first, so the id of row j is still in place when row j
 * is decoded: rows after it cover bytes from (j + 1) x cols x 4 on, ids before it lie below 4 x j.
 * Returns 0 or the refusal's code (a read error or a file changed while open: EXIT_IO, EXIT_BAD_BLOB).
 */
export function lookupInPlace(area: usize, count: u32): u32 {
  clearFailure();
  for (let j: u32 = 0; j < count; j++) {
    if (!checkToken(<u64>load<u32>(area + (<usize>j << 2)))) return failure;
  }
  const rowOut = <usize>cols << 2;
  const batch = outRows > 0 ? outRows : 1;
  let end = count;
  while (end > 0) {
    const start = end > batch ? end - batch : 0;
    for (let j = end; j-- > start;) {
      const t = load<u32>(area + (<usize>j << 2));
      decodeToken(t, area + <usize>j * rowOut, j - start);
    }
    finishRows(end - start, area + <usize>start * rowOut);
    end = start;
  }
  return failure;
}
