// Timing the runtime as a library from JavaScript: an open table's single-token lookups, its open
// and first lookup, and today's one-shot command for the same token, all wall-clock time in this
// process (performance.now). Used by the lookup goals (tools/dev/bench/lookup-goals.ts) and by
// `npm run bench:library` (tools/dev/bench/library-main.ts).
import { openTable, type OpenTableOptions, type Table } from "../../../host/table.ts";
import { createRandom } from "../../random.ts";

/** `count` token ids below `rows`, the same for the same seed. */
export function randomTokens(rows: number, count: number, seed = 12345): Uint32Array {
  const random = createRandom(seed);
  const ids = new Uint32Array(count);
  for (let i = 0; i < count; i++) ids[i] = Math.floor(random() * rows);
  return ids;
}

/**
 * Seconds per token of single-token lookups through `table` (lookupInto one reused row, as an
 * inference engine calls it at each step): `passes` passes over `tokens`, the fastest pass.
 */
export function singleLookupSeconds(table: Table, tokens: Uint32Array, passes: number): number {
  const row = new Float32Array(table.cols);
  const one = new Uint32Array(1);
  let best = Infinity;
  for (let p = 0; p < passes; p++) {
    const started = performance.now();
    for (let i = 0; i < tokens.length; i++) {
      one[0] = tokens[i];
      table.lookupInto(one, row);
    }
    best = Math.min(best, (performance.now() - started) / 1000 / tokens.length);
  }
  return best;
}

/** How many single lookups make a pass last about `seconds` (a short probe first). */
export function calibratedCount(table: Table, seconds: number, max = 1_000_000): number {
  const probe = randomTokens(table.rows, 32, 7);
  singleLookupSeconds(table, probe, 1);
  const each = singleLookupSeconds(table, probe, 1);
  return Math.max(32, Math.min(max, Math.round(seconds / Math.max(each, 1e-9))));
}

export interface OpenTiming {
  /** openTable, each time: instantiate, open, validate every CRC, plan, load if resident. */
  openSeconds: number[];
  /** The first lookup after each open (cold caches, first reads in streaming). */
  firstLookupSeconds: number[];
}

/** Opens `blob`, times the open and its first lookup, closes it; `repeats` times. */
export async function openTiming(blob: string | Uint8Array, options: OpenTableOptions, repeats: number, token = 1): Promise<OpenTiming> {
  const openSeconds: number[] = [];
  const firstLookupSeconds: number[] = [];
  // One open first, untimed, so every timed one finds the module compiled (as a long-running host would).
  (await openTable(blob, options)).close();
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    const table = await openTable(blob, options);
    const t1 = performance.now();
    table.lookup([token % table.rows]);
    const t2 = performance.now();
    table.close();
    openSeconds.push((t1 - t0) / 1000);
    firstLookupSeconds.push((t2 - t1) / 1000);
  }
  return { openSeconds, firstLookupSeconds };
}
