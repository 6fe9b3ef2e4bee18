// The shape every benchmark group returns to `npm run bench` (tools/dev/bench/main.ts), which prints
// the table, writes the JSON and regenerates docs/PERFORMANCE.md from it. Machines here are shared
// and noisy, so a goal is always a ratio of two timings taken in the same run; absolute times are
// reported beside it and never asserted.

/** Repeated timings of one thing, in seconds (or the unit named by `unit`). */
export interface Timing {
  /** What was timed, for the table ("RVQ decode of one 2048-wide row"). */
  label: string;
  /** Median of the repetitions (after warm-up). */
  median: number;
  /** Spread: (max - min) / median of the repetitions, 0 for one repetition. */
  spread: number;
  repetitions: number;
  /** Unit of `median`: "s" (seconds per item), "GFLOP/s", "lookups/s", ... */
  unit: string;
}

/** One goal: a ratio of two timings measured in one run, and whether it meets the goal. */
export interface BenchGoal {
  /** Stable key for the JSON and the smoke test ("lookup.rvq-vs-fp16.llama1b"). */
  id: string;
  /** The goal as stated ("RVQ decode vs FP16 row, goal <= 2x"). */
  goal: string;
  /** The measured ratio (or the measured figure for a goal that is an absolute, e.g. GFLOP/s). */
  measured: number;
  /** The goal's bound and its direction: met when measured <= bound ("max") or >= bound ("min"). */
  bound: number;
  direction: "max" | "min";
  met: boolean;
  /** The timings the ratio was computed from. */
  timings: Timing[];
  /** Where the time goes when the goal is not met, or any caveat (e.g. "scaled to 1/8 of the rows"). */
  note?: string;
}

/** What one group of benchmarks (lookup, compression) returns. */
export interface BenchGroup {
  name: string;
  goals: BenchGoal[];
  /** Figures reported for reference only (e.g. the int4 baseline's lookup time). */
  extra: Timing[];
  seconds: number;
  /** Paragraphs for docs/PERFORMANCE.md under the group's table: how it was measured, where the time goes. */
  notes?: string[];
}

/** Options every group takes from the command line of `npm run bench`. */
export interface BenchOptions {
  /** Tiny sizes and one repetition: the smoke test in `npm test` (checks keys, asserts no time). */
  quick: boolean;
  /** Repetitions after one warm-up (default 5). */
  repetitions: number;
  /** Worker threads available (2 on CI). */
  threads: number;
  /** Print progress lines to stderr. */
  log: (line: string) => void;
}

/** Median and spread of repeated measurements. */
export function summarize(label: string, values: number[], unit: string): Timing {
  if (values.length === 0) throw new Error(`summarize: no measurements for ${label}`);
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const spread = sorted.length < 2 || median === 0 ? 0 : (sorted[sorted.length - 1]! - sorted[0]!) / median;
  return { label, median, spread, repetitions: values.length, unit };
}

/** A goal from a ratio and its bound. */
export function goal(
  id: string,
  text: string,
  measured: number,
  bound: number,
  direction: "max" | "min",
  timings: Timing[],
  note?: string,
): BenchGoal {
  const met = direction === "max" ? measured <= bound : measured >= bound;
  return { id, goal: text, measured, bound, direction, met, timings, ...(note !== undefined ? { note } : {}) };
}
