// The core module of the WIT component (wit/carvq.wit, carvq:embedding/table@0.1.0): the
// library's calls (lib.ts) in the component model's canonical ABI, for wasmtime hosts in any
// language. jco's componentEmbed + componentNew turn build/lib/carvq-component-core.wasm into
// build/lib/carvq.component.wasm.
//
//   open: func(path: string) -> result<info, failure>
//       core: (path_ptr: i32, path_len: i32) -> i32, a pointer to the result (24 bytes, align 8):
//       u8 0 at 0, then info { rows: u32 at 8, cols: u32 at 12, bits-per-parameter: f64 at 16 }, or
//       u8 1 at 0, then failure { code: u8 at 8, message: (ptr: i32 at 12, len: i32 at 16) }
//   lookup: func(tokens: list<u32>) -> result<list<f32>, failure>
//       core: (tokens_ptr: i32, tokens_len: i32) -> i32, a pointer to the result (16 bytes, align 4):
//       u8 0 at 0, then the rows (ptr: i32 at 4, len: i32 at 8, len = tokens x cols), or
//       u8 1 at 0, then failure { code: u8 at 4, message: (ptr at 8, len at 12) }
//   close: func()          core: () -> ()
//
// Results have more than one flat value, so each function returns a pointer to them in memory
// (the canonical ABI's return area), here a static one. Memory the host needs for the arguments
// comes from cabi_realloc: from the library's I/O area (a path, or token ids that then become
// their rows in place, as carvq_lookup does), else from the arena under the budget, released by
// the function's post-return (cabi_post_*) once the host has copied the results out. Nothing ever
// grows memory past the module's maximum: cabi_realloc traps (the one thing the canonical ABI lets
// it do) only for an argument larger than what the budget leaves. The preview1 adapter's own
// state and stack come from cabi_realloc_adapter, reserved for good.
import { arenaAlloc, arenaAllocPermanent, arenaMark, arenaRelease } from "./arena";
import { MESSAGE, messageLen, putStr, putU64 } from "./text";
import { errBegin, fail, clearFailure, failure, EXIT_OK, EXIT_USAGE, EXIT_BUDGET } from "./exit";
import { rows, cols } from "./blob";
import { isOpen, bitsPerParameter, lookupInPlace } from "./table";
import { carvq_io, carvq_io_bytes, carvq_open, carvq_close, carvq_lookup } from "./lib";

/** The return area of open (24 bytes) and lookup (16 bytes). */
const RET: usize = memory.data(24, 8);

/** Bytes of the I/O area handed out by cabi_realloc since the last post-return. */
let ioUsed: usize = 0;
/** The arena's top before the first allocation past the I/O area since the last post-return (0: none). */
let transientMark: u64 = 0;

function alignUp(v: usize, a: usize): usize {
  return (v + a - 1) & ~(a - 1);
}

/** The canonical ABI's allocator: the host lowers strings and lists into memory it returns. */
export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (align == 0 || (align & (align - 1)) != 0) align = 1;
  if (oldPtr != 0 && newSize <= oldSize) return oldPtr;
  const io = carvq_io();
  const ioBytes = <usize>carvq_io_bytes();
  let p: usize = 0;
  const at = alignUp(ioUsed, align);
  if (at <= ioBytes && newSize <= ioBytes - at) {
    p = io + at;
    ioUsed = at + newSize;
  } else {
    if (transientMark == 0) transientMark = arenaMark();
    p = arenaAlloc(<u64>newSize + <u64>align);
    if (p == 0) unreachable(); // over the budget: the canonical ABI has no other answer
    p = alignUp(p, align);
  }
  if (oldPtr != 0 && oldSize > 0) memory.copy(p, oldPtr, oldSize);
  return p;
}

/**
 * The allocator wit-component gives the preview1 adapter (in place of cabi_realloc, when exported)
 * for its state and stack: memory it keeps for the instance's life, so it is reserved for good
 * (arenaAllocPermanent), never inside a blob's plan or the I/O area, which are reused.
 */
export function cabi_realloc_adapter(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (align == 0 || (align & (align - 1)) != 0) align = 1;
  if (oldPtr != 0 && newSize <= oldSize) return oldPtr;
  carvq_io(); // the arena is set up
  let p = arenaAllocPermanent(<u64>newSize + <u64>align);
  if (p == 0) unreachable(); // over the budget: the adapter cannot run
  p = alignUp(p, align);
  if (oldPtr != 0 && oldSize > 0) memory.copy(p, oldPtr, oldSize);
  return p;
}

/** Releases what cabi_realloc handed out for the last call (its results have been copied). */
function releaseExchange(): void {
  ioUsed = 0;
  if (transientMark != 0) arenaRelease(transientMark);
  transientMark = 0;
}

/** Writes failure { code, message } at RET + `at` (after the case byte 1). */
function failureAt(at: usize, code: u32): usize {
  store<u8>(RET, 1);
  store<u8>(RET + at, <u8>code);
  store<u32>(RET + at + 4, <u32>MESSAGE);
  store<u32>(RET + at + 8, <u32>messageLen);
  return RET;
}

// @ts-ignore: decorator
@external.name("carvq:embedding/table@0.1.0#open")
export function open(pathPtr: usize, pathLen: usize): usize {
  const io = carvq_io();
  if (pathLen > <usize>carvq_io_bytes()) {
    clearFailure();
    errBegin();
    putStr("open: the path is longer than ");
    putU64(carvq_io_bytes());
    putStr(" bytes");
    fail(EXIT_USAGE);
    return failureAt(8, EXIT_USAGE);
  }
  memory.copy(io, pathPtr, pathLen);
  const status = carvq_open(<u32>pathLen, 0);
  if (status != EXIT_OK) return failureAt(8, status);
  store<u8>(RET, 0);
  store<u32>(RET + 8, rows);
  store<u32>(RET + 12, cols);
  store<f64>(RET + 16, bitsPerParameter());
  return RET;
}

// @ts-ignore: decorator
@external.name("cabi_post_carvq:embedding/table@0.1.0#open")
export function openPost(ret: usize): void {
  releaseExchange();
}

// @ts-ignore: decorator
@external.name("carvq:embedding/table@0.1.0#lookup")
export function lookup(tokensPtr: usize, count: usize): usize {
  const io = carvq_io();
  if (!isOpen) {
    carvq_lookup(1); // records the refusal: no blob is open
    return failureAt(4, failure);
  }
  const rowBytes = <u64>cols * 4;
  const outBytes = <u64>count * rowBytes;
  let out: usize;
  if (tokensPtr == io && outBytes <= <u64>carvq_io_bytes()) {
    out = io; // the ids become their rows in place, as in carvq_lookup
  } else {
    if (transientMark == 0) transientMark = arenaMark();
    out = outBytes <= 0xffffffff ? arenaAlloc(outBytes) : 0;
    if (out == 0) {
      clearFailure();
      errBegin();
      putStr("budget exceeded: ");
      putU64(count);
      putStr(" rows of ");
      putU64(cols);
      putStr(" values need ");
      putU64(outBytes);
      putStr(" bytes, more than the memory budget leaves");
      fail(EXIT_BUDGET);
      return failureAt(4, EXIT_BUDGET);
    }
    memory.copy(out, tokensPtr, count << 2);
  }
  const status = lookupInPlace(out, <u32>count);
  if (status != EXIT_OK) return failureAt(4, status);
  store<u8>(RET, 0);
  store<u32>(RET + 4, <u32>out);
  store<u32>(RET + 8, <u32>(<u64>count * <u64>cols));
  return RET;
}

// @ts-ignore: decorator
@external.name("cabi_post_carvq:embedding/table@0.1.0#lookup")
export function lookupPost(ret: usize): void {
  releaseExchange();
}

// @ts-ignore: decorator
@external.name("carvq:embedding/table@0.1.0#close")
export function close(): void {
  releaseExchange();
  carvq_close();
}
