// The memory model: everything the runtime touches lives in one linear memory whose declared
// maximum is the target's budget (asc --maximumMemory). Below __heap_base sit the static data
// (string literals, the CRC table, scratch words); above it one bump arena, planned at open:
// every buffer is reserved here with an explicit size, pages are committed with memory.grow only
// as the plan needs them, and nothing is ever freed except by releasing back to a mark. A request
// that would pass the budget is refused by the caller (exit code EXIT_BUDGET) before any trap.
//
// The budget comes from the build: asc --use CARVQ_BUDGET_PAGES=<pages> (64 KiB pages).

export const PAGE_BYTES: u64 = 65536;
export const BUDGET_BYTES: u64 = (<u64>CARVQ_BUDGET_PAGES) << 16;

let top: u64 = 0;
/** End of the memory this arena owns: the initial pages plus every page it grew itself. */
let ownEnd: u64 = 0;
/** Nothing is placed below this: pages under it may belong to someone else (see arenaAlloc). */
let floor: u64 = 0;

function align16(v: u64): u64 {
  return (v + 15) & ~(<u64>15);
}

export function arenaInit(): void {
  top = align16(<u64>__heap_base);
  ownEnd = (<u64>memory.size()) << 16;
  floor = top;
}

/** Bytes used so far: static data plus everything reserved. */
export function arenaUsed(): u64 {
  return top;
}

/** Where the next reservation that needs new pages would start. */
function nextStart(bytes: u64): u64 {
  const start = align16(top > floor ? top : floor);
  if (start <= ownEnd && bytes <= ownEnd - start) return start;
  // New pages are needed. If memory grew past our end behind our back, those pages are not ours:
  // the WASI preview1 adapter of a component (jco, wasmtime on a component) keeps its state in a
  // page it grows from our memory at its first call. Continue after them.
  const current = (<u64>memory.size()) << 16;
  return current != ownEnd && start < current ? current : start;
}

/**
 * Bytes still available under the budget for one more reservation (conservative: when foreign
 * pages sit above ours, what is left below them is not counted).
 */
export function arenaFree(): u64 {
  const start = nextStart(BUDGET_BYTES);
  return start >= BUDGET_BYTES ? 0 : BUDGET_BYTES - start;
}

/** The bytes a reservation of `bytes` costs, alignment included. */
export function arenaCost(bytes: u64): u64 {
  return align16(bytes);
}

/**
 * Reserves `bytes` (aligned to 16) and commits the pages they need. Returns the address, or 0 if
 * the budget (or the host) refuses: the caller reports EXIT_BUDGET.
 */
export function arenaAlloc(bytes: u64): usize {
  const start = nextStart(bytes);
  if (bytes > BUDGET_BYTES || start > BUDGET_BYTES - bytes) return 0;
  const end = start + bytes;
  if (end > ownEnd) {
    const needPages = <i32>((end + PAGE_BYTES - 1) >> 16);
    const have = memory.size();
    if (needPages > have && memory.grow(needPages - have) < 0) return 0;
    if (start >= ownEnd && start != align16(top > floor ? top : floor)) floor = start; // jumped over foreign pages
    ownEnd = (<u64>memory.size()) << 16;
  }
  top = end;
  return <usize>start;
}

/**
 * Reserves `bytes` for good: nothing is ever released below their end (arenaRelease stops there),
 * whatever marks were taken before. For memory that outlives every blob, handed to someone else
 * (the component's preview1 adapter keeps its state and stack there). 0 if the budget refuses.
 */
export function arenaAllocPermanent(bytes: u64): usize {
  const p = arenaAlloc(bytes);
  if (p != 0 && top > floor) floor = top;
  return p;
}

/** A point to release back to (for transient buffers such as the CRC chunk at open). */
export function arenaMark(): u64 {
  return top;
}

export function arenaRelease(mark: u64): void {
  top = mark > floor ? mark : floor;
}

/** Committed linear memory in bytes: the run's peak, since memory never shrinks. */
export function committedBytes(): u64 {
  return (<u64>memory.size()) << 16;
}
