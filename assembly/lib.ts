// carvq as a library: the C ABI of the core modules (build/lib/*.wasm, WASI reactors). A host
// opens a blob once and looks tokens up at every decoding step; docs/RUNTIME.md "Embedding the
// runtime" describes every call. All values are i32 (bits per parameter: f64). No call traps or
// exits the process, whatever the blob and whatever the order of calls: a refusal is a status
// (the command's exit codes, exit.ts) and a one-line UTF-8 message written at carvq_io(), its
// length from carvq_message_len().
//
// Memory: one I/O area of CARVQ_IO_BYTES (a build constant) is reserved at the bottom of the arena
// at initialization and never moves; the host writes a path or token ids there and reads rows or
// a message back. Everything a blob needs is planned after it at open and released at close.
import { arenaInit, arenaAlloc, arenaMark } from "./arena";
import { crcInit } from "./crc32";
import { putStr, putU64, MESSAGE, messageLen } from "./text";
import { errBegin, fail, failure, clearFailure, putU32, EXIT_OK, EXIT_USAGE, EXIT_BUDGET, EXIT_INTERNAL } from "./exit";
import { rows, cols } from "./blob";
import {
  tableBase, tableBegin, tableClose, tableForget, tableOpenFile, tableOpenMemory, tablePlan, isOpen,
  bitsPerParameter, reserveBlobArea, lookupInPlace,
} from "./table";
import { mode, MODE_STREAMING } from "./lookup";

const IO_BYTES: usize = <usize>CARVQ_IO_BYTES;

let ready = false;
let ioPtr: usize = 0;
/** Bytes of the message last written at the I/O area (0 after a call that succeeded). */
let lastMessageLen: u32 = 0;
/** A blob area reserved by carvq_blob_area and not yet opened: its address and size. */
let areaPtr: usize = 0;
let areaBytes: u32 = 0;

/** Sets up the arena and the I/O area once; every export calls it, so _initialize is optional. */
function init(): void {
  if (ready) return;
  ready = true;
  arenaInit();
  crcInit();
  ioPtr = arenaAlloc(<u64>IO_BYTES);
  tableBase(arenaMark());
}

/** Ends a call: on a refusal, copies the message to the I/O area. Returns the status. */
function finish(status: u32): u32 {
  if (status == EXIT_OK) {
    lastMessageLen = 0;
    return EXIT_OK;
  }
  const n = messageLen < IO_BYTES ? messageLen : IO_BYTES;
  memory.copy(ioPtr, MESSAGE, n);
  lastMessageLen = <u32>n;
  return status;
}

/** A refusal of the call itself (out of order, bad argument): EXIT_USAGE with `what`. */
function usage(what: string): u32 {
  clearFailure();
  errBegin();
  putStr(what);
  fail(EXIT_USAGE);
  return finish(EXIT_USAGE);
}

/** The WASI reactor's initializer (optional: every call initializes on first use). */
export function _initialize(): void {
  init();
}

/** Address of the I/O area in linear memory. */
export function carvq_io(): usize {
  init();
  return ioPtr;
}

/** Size of the I/O area in bytes. */
export function carvq_io_bytes(): u32 {
  init();
  return <u32>IO_BYTES;
}

/** Length of the message the last refused call wrote at carvq_io() (0 after a success). */
export function carvq_message_len(): u32 {
  return lastMessageLen;
}

function openFailed(): u32 {
  const status = failure != EXIT_OK ? failure : EXIT_INTERNAL;
  tableClose();
  return finish(status);
}

/**
 * Opens the blob whose UTF-8 path (`pathLen` bytes) the host wrote at carvq_io(), resolved
 * against the preopened directories; `mode` 0 auto, 1 resident, 2 streaming. Validates everything
 * the command validates, once. Returns 0, or 2 (a blob is open, a bad mode or length), 3 (cannot
 * open or read), 4 (bad blob), 6 (over the memory budget).
 */
export function carvq_open(pathLen: u32, modeAsked: u32): u32 {
  init();
  if (isOpen) return usage("carvq_open: a blob is already open (call carvq_close first)");
  if (modeAsked > MODE_STREAMING) return usage("carvq_open: mode must be 0 (auto), 1 (resident) or 2 (streaming)");
  if (pathLen == 0 || <usize>pathLen > IO_BYTES) return usage("carvq_open: the path length must be from 1 to carvq_io_bytes()");
  tableBegin();
  areaPtr = 0;
  // The path is copied out of the I/O area: messages name it after the area holds rows.
  const path = arenaAlloc(<u64>pathLen);
  if (path == 0) {
    errBegin();
    putStr("budget exceeded: no room for the path");
    fail(EXIT_BUDGET);
    return openFailed();
  }
  memory.copy(path, ioPtr, pathLen);
  if (!tableOpenFile(path, pathLen) || !ioHoldsRow()) return openFailed();
  if (!tablePlan(modeAsked, 0xffffffff, ioPtr, <u64>IO_BYTES, true)) return openFailed();
  return finish(EXIT_OK);
}

/** Refuses a blob whose one row does not fit the I/O area (EXIT_BUDGET). */
function ioHoldsRow(): bool {
  if (<u64>cols * 4 <= <u64>IO_BYTES) return true;
  errBegin();
  putStr("budget exceeded: one row of ");
  putU64(cols);
  putStr(" values (");
  putU64(<u64>cols * 4);
  putStr(" bytes) does not fit the I/O area of ");
  putU64(IO_BYTES);
  putStr(" bytes");
  return fail(EXIT_BUDGET);
}

/**
 * Reserves room for a blob of `bytes` bytes that the host hands over in memory (no file system),
 * closing any open blob. Returns the address where the host writes the blob, then calls
 * carvq_open_memory(bytes); or 0 if the blob does not fit the budget (message at carvq_io()).
 */
export function carvq_blob_area(bytes: u32): usize {
  init();
  tableBegin();
  areaPtr = 0;
  areaBytes = 0;
  const p = reserveBlobArea(<u64>bytes);
  if (p == 0) {
    finish(failure);
    return 0;
  }
  areaPtr = p;
  areaBytes = bytes;
  lastMessageLen = 0;
  return p;
}

/**
 * Opens, resident, the blob of `bytes` bytes the host wrote at carvq_blob_area(bytes). Returns 0,
 * 2 (no such area reserved, or a blob is open), 4 (bad blob) or 6 (over the budget). The area is
 * the blob's until carvq_close; reserve it again to open another blob from memory.
 */
export function carvq_open_memory(bytes: u32): u32 {
  init();
  if (isOpen) return usage("carvq_open_memory: a blob is already open (call carvq_close first)");
  if (areaPtr == 0 || bytes != areaBytes) return usage("carvq_open_memory: call carvq_blob_area with the same size first");
  clearFailure();
  tableForget();
  const p = areaPtr;
  areaPtr = 0;
  if (!tableOpenMemory(p, <u64>bytes) || !ioHoldsRow()) return openFailed();
  if (!tablePlan(0, 0xffffffff, ioPtr, <u64>IO_BYTES, true)) return openFailed();
  return finish(EXIT_OK);
}

/** Rows (tokens) of the open blob; 0 when none is open. */
export function carvq_rows(): u32 {
  return isOpen ? rows : 0;
}

/** Values per row of the open blob; 0 when none is open. */
export function carvq_cols(): u32 {
  return isOpen ? cols : 0;
}

/** The mode the open blob runs in: 1 resident, 2 streaming; 0 when none is open. */
export function carvq_mode(): u32 {
  return isOpen ? mode : 0;
}

/** Bits per parameter of the open blob (every byte of it over rows x cols); 0 when none is open. */
export function carvq_bits_per_parameter(): f64 {
  return isOpen ? bitsPerParameter() : 0;
}

/**
 * Reads `count` little-endian u32 token ids at carvq_io() and writes their rows there,
 * count x cols little-endian f32, in the order asked. Returns 0; 5 (a token out of range:
 * no row written); 2 (no blob open, or count x cols x 4 more than carvq_io_bytes()); 3 or 4 (a
 * read failed or the file changed since open: the area's contents are undefined).
 */
export function carvq_lookup(count: u32): u32 {
  init();
  if (!isOpen) return usage("carvq_lookup: no blob is open (call carvq_open first)");
  const most = <u32>(<u64>IO_BYTES / (<u64>cols * 4));
  if (count > most) {
    clearFailure();
    errBegin();
    putStr("carvq_lookup: ");
    putU64(count);
    putStr(" rows do not fit the I/O area: it holds at most ");
    putU32(most);
    putStr(" rows of ");
    putU64(cols);
    putStr(" values");
    fail(EXIT_USAGE);
    return finish(EXIT_USAGE);
  }
  return finish(lookupInPlace(ioPtr, count));
}

/** Closes the open blob (if any) and releases its memory; returns 0. Open again after it works. */
export function carvq_close(): u32 {
  init();
  tableClose();
  areaPtr = 0;
  areaBytes = 0;
  lastMessageLen = 0;
  return EXIT_OK;
}
