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

function align16(v: u64): u64 {
  return (v + 15) & ~(<u64>15);
}

export function arenaInit(): void {
  top = align16(<u64>__heap_base);
}

/** Bytes used so far: static data plus everything reserved. */
export function arenaUsed(): u64 {
  return top;
}

/** Bytes still available under the budget (after aligning the next reservation). */
export function arenaFree(): u64 {
  const start = align16(top);
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
  const start = align16(top);
  if (bytes > BUDGET_BYTES || start > BUDGET_BYTES - bytes) return 0;
  const end = start + bytes;
  const needPages = <i32>((end + PAGE_BYTES - 1) >> 16);
  const have = memory.size();
  if (needPages > have) {
    if (memory.grow(needPages - have) < 0) return 0;
  }
  top = end;
  return <usize>start;
}

/** A point to release back to (for transient buffers such as the CRC chunk at open). */
export function arenaMark(): u64 {
  return top;
}

export function arenaRelease(mark: u64): void {
  top = mark;
}

/** Committed linear memory in bytes: the run's peak, since memory never shrinks. */
export function committedBytes(): u64 {
  return (<u64>memory.size()) << 16;
}
