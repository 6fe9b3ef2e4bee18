// The command-line side of auto-configuration: `carvq compress --target-bpp X | --target NAME`
// (tools/cli/compress.ts parses the flags and calls chooseOptions).
import type { CompressOptions, CompressSource } from "../compress.ts";
import { quoted, usageError } from "./args.ts";
import { count } from "../text.ts";
import type { Matrix } from "../matrix.ts";
import { startProgress } from "../progress.ts";
import {
  autoConfigure,
  describeOptions,
  optionFlags,
  type AutoConfigRequest,
  type AutoConfigResult,
  type Candidate,
} from "../plan/autoconfig.ts";

export const AUTO_HELP = `  --target-bpp X       choose the options automatically: the lowest error whose blob, every byte
                       counted, is at most X bits per parameter (a search on a sample of rows,
                       then the full fit of the winner; the choice and runners-up go to stderr;
                       for a small llama2.c model the finalists are ranked by the model's KL
                       on a calibration text, sampled with other seeds than carvq ppl's)
  --target NAME        choose them for a device profile (targets/NAME.json): the blob and the
                       runtime's memory must fit its budget, and without --target-bpp the blob
                       stays at most 16 bpp (an FP16 copy); streaming targets need --target-bpp`;

/** Flags that fix what auto-configuration chooses, refused beside --target-bpp / --target. */
export const AUTO_CONFLICTS = ["method", "h", "levels", "group", "layout", "iters", "beam", "refine", "row-scale", "block"] as const;

/** Parses --target-bpp: a positive decimal number. */
export function parseTargetBpp(command: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\s*\d*\.?\d+(e[+-]?\d+)?\s*$/i.test(raw) || !Number.isFinite(value) || value <= 0) {
    throw usageError(command, `--target-bpp must be a positive number of bits per parameter, got ${quoted(raw)}`);
  }
  return value;
}

/** Refuses flags that auto-configuration would override. */
export function checkAutoConflicts(command: string, values: Record<string, unknown>, autoFlag: string): void {
  for (const flag of AUTO_CONFLICTS) {
    if (values[flag] !== undefined)
      throw usageError(command, `--${flag} cannot be combined with ${autoFlag} (auto-configuration chooses it)`);
  }
}

function candidateLine(c: Candidate, scoreName: string): string {
  const p = c.proxy;
  const score = p.score !== undefined ? `  ${scoreName} ${p.score.toFixed(4)}` : "";
  return `${describeOptions(c.options).padEnd(48)} ${c.bpp.toFixed(4)} bpp  relMSE ${p.relMSE.toFixed(4)}  nn10 ${p.nn10.toFixed(3)}${score}  ~${c.estimatedSeconds.toFixed(0)} s`;
}

/** What --json reports about the search. */
export function candidateJson(c: Candidate) {
  return {
    stage: c.stage,
    options: describeOptions(c.options),
    flags: optionFlags(c.options),
    predictedBytes: c.bytes,
    predictedBpp: c.bpp,
    proxy: {
      relMSE: c.proxy.relMSE,
      cosine: c.proxy.cosine,
      nn10: c.proxy.nn10,
      ...(c.proxy.score !== undefined ? { score: c.proxy.score } : {}),
      rows: c.proxy.rows,
      measuredRows: c.proxy.measuredRows,
      seconds: c.proxy.seconds,
    },
    ...(c.memory ? { memory: c.memory } : {}),
  };
}

export function searchJson(r: AutoConfigResult) {
  return {
    budget: r.budget,
    rankedBy: r.rankedBy,
    sample: r.sample,
    chosen: candidateJson(r.chosen),
    runnersUp: r.runnersUp.map(candidateJson),
    evaluated: r.evaluated.length,
    searchSeconds: r.seconds,
  };
}

/** The search's report on stderr: the budget, the sample, the choice and the runners-up. */
export function searchLines(r: AutoConfigResult, rows: number): string[] {
  const b = r.budget;
  const sample = r.sample.whole
    ? "the whole table"
    : `${count(r.sample.anchors.length, "span")} of whole groups, measured on ${r.sample.measuredRows} of ${count(rows, "row")}`;
  return [
    `budget: ${b.bytes} bytes (${b.bpp.toFixed(4)} bpp)${b.target ? ` for target ${b.target} (memory budget ${b.memoryBudgetBytes} bytes)` : ""}`,
    `searched ${count(r.evaluated.length, "configuration")} on ${sample} in ${r.seconds.toFixed(0)} s (proxy figures below; ranked by ${r.rankedBy})`,
    `chose       ${candidateLine(r.chosen, r.rankedBy)}`,
    ...r.runnersUp.map((c, i) => `${i === 0 ? "runners-up" : "".padEnd(10)}  ${candidateLine(c, r.rankedBy)}`),
    `the same as: ${optionFlags(r.chosen.options)}`,
  ];
}

export interface AutoRequest {
  targetBpp?: number;
  score?: { name: string; of: (decoded: Matrix) => number };
  target?: string;
  seed: number;
  weights?: Float32Array;
  threads: number;
  from: CompressSource;
  /** Options applied to the choice after the search, counted in its size (AutoConfigRequest.after). */
  after?: AutoConfigRequest["after"];
}

/** Runs the search with a progress bar on stderr; returns the chosen options and the result. */
export async function chooseOptions(
  matrix: Matrix,
  request: AutoRequest,
  log: (line: string) => void,
): Promise<{ options: CompressOptions; result: AutoConfigResult }> {
  const progress = startProgress("searching configurations");
  let result: AutoConfigResult;
  try {
    result = await autoConfigure(matrix, { ...request, onProgress: (done, total) => progress.update(done, total) });
  } finally {
    progress.stop();
  }
  for (const line of searchLines(result, matrix.rows)) log(line);
  return { options: result.chosen.options, result };
}
