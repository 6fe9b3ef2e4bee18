// Auto-configuration: the compress options with the lowest error whose blob fits a bit budget
// (and a device target's memory), found without compressing the whole table more than once.
//
// 1. Budget. The largest blob allowed: --target-bpp as bytes, and for a resident target the largest
//    blob its memory holds (tools/plan/memory.ts), at most 16 bpp (an FP16 copy) when no --target-bpp
//    is given. Sizes are predicted exactly (tools/plan/size.ts,
//    the upper bound over the metrics' digits), so the choice never lands over the budget.
// 2. Candidates. For every sub-vector length h (each distinct S = ceil(n / h), little padding) and
//    level count L, the index rate is fixed; the rest of the budget goes to codebooks: g is the
//    smallest group (most codebooks) whose blob still fits. Per h the two largest L that fit the
//    column-block layout are kept (at a fixed h more levels win as long as codebooks remain), and
//    the row layout's where it fits more levels (small tables: a column block holds at most V
//    tokens, so it has at least S groups). Scalar baselines: per method, the smallest scale block
//    that fits.
// 3. Screen (stage A): every candidate, column-block layout, greedy encoding, on the proxy sample
//    (tools/plan/proxy.ts: whole codebook groups from a few seeded spans of rows, measured on the
//    rows all candidates share). The best three column-block structures are also screened in the
//    row layout.
// 4. Refine (stage B): the best STAGE_B candidates of the screen with beam search and codebook
//    refinement; then the best of those with more refinement and with gain-shape row scales (g
//    refitted to the budget).
// 5. The winner is the lowest proxy relMSE among the stage-B and scalar candidates (nn10 is
//    reported beside it, measured among the shared rows), or, for a small table searched whole
//    with an end-to-end score (the KL of a llama2.c model), the lowest score. The caller fits the
//    winner on the whole table.
//
// Everything is seeded and the candidate order fixed, so the same table, budget and seed give the
// same choice on any machine and thread count.
import { RVQ_METHOD, SCALAR_METHODS } from "../quant/methods.ts";
import { compressMatrix, DEFAULT_COMPRESS_OPTIONS, type CompressOptions, type CompressSource } from "../compress.ts";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { loadTarget, type Target } from "../../host/node.ts";
import { maxResidentBlobBytes, memoryNeed, type MemoryNeed } from "./memory.ts";
import { evaluateProxy, planProxy, spanRowsFor, type ProxyMetrics, type ProxyPlan } from "./proxy.ts";
import { predictBlobSize } from "./size.ts";

export interface AutoConfigRequest {
  /** Largest total bits per parameter (every byte of the blob counted, as predicted). */
  targetBpp?: number;
  /** A device profile (targets/<name>.json): its memory budget, and for resident targets the blob's. */
  target?: string | Target;
  /** Seed of the sample and of every fit (the chosen options carry it). Default 0. */
  seed?: number;
  threads?: number;
  /** Recorded in the metadata, so it counts toward the size. */
  from?: CompressSource;
  /**
   * Options the caller applies to the choice after the search (restarts, kl-encode, tune-kl): they
   * change values, not the layout, but they are recorded in the metadata, so every candidate's size
   * is predicted with them. The search itself fits without them.
   */
  after?: Partial<Pick<CompressOptions, "restarts" | "klEncode" | "tuneKl">>;
  /** Importance of each row in codebook fitting (as `--weights`); carried into every candidate. */
  weights?: Float32Array | null;
  /** Proxy sample: spans of rows (default 4) and rows measured per span (default 1024). */
  spans?: number;
  sharedRows?: number;
  /** Candidates refined with beam search in stage B (default 4). */
  stageB?: number;
  /**
   * An end-to-end score of a decoded table, lower is better (e.g. the KL of a llama2.c model using
   * it as its input embedding). When given and the table is small enough to be searched whole, the
   * finalists (stage B and scalar) are ranked by it instead of relMSE.
   */
  score?: { name: string; of: (decoded: Matrix) => number };
  /** Called after each evaluated candidate: done / total so far, and the candidate. */
  onProgress?: (done: number, total: number, candidate: Candidate) => void;
}

export interface Candidate {
  /** "A" screen (greedy), "B" refined, "scalar" baseline. */
  stage: "A" | "B" | "scalar";
  options: CompressOptions;
  /** Predicted blob bytes (upper bound) and bits per parameter. */
  bytes: number;
  bpp: number;
  memory: MemoryNeed | null;
  proxy: ProxyMetrics;
  /** Full-table fit time estimated from the proxy's (rows ratio), seconds. */
  estimatedSeconds: number;
}

export interface AutoConfigResult {
  chosen: Candidate;
  /** The next best stage-B and scalar candidates, best first. */
  runnersUp: Candidate[];
  /** Every candidate evaluated, in evaluation order. */
  evaluated: Candidate[];
  budget: { bytes: number; bpp: number; target: string | null; memoryBudgetBytes: number | null };
  /** What ranked the finalists: "relMSE" or the request's score name. */
  rankedBy: string;
  sample: { whole: boolean; anchors: number[]; sharedRows: number; measuredRows: number };
  seconds: number;
}

/** Points per codebook below which a group is not worth fitting (4 per centroid). */
const MIN_GROUP_POINTS = 64;
const LEVELS_MAX = 8;
/** The bit budget a target alone implies at most: what the table takes in FP16. */
export const FP16_BPP = 16;
const SCALAR_BLOCKS = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/** Short description of options, as a person would type the flags. */
export function describeOptions(o: CompressOptions): string {
  if (o.method !== RVQ_METHOD) return `${o.method} block ${o.block}`;
  const parts = [`${o.layout} h ${o.h} L ${o.levels} g ${o.group}`];
  if (o.beam > 1) parts.push(`beam ${o.beam}`);
  if (o.refine > 0) parts.push(`refine ${o.refine}`);
  if (o.rowScaleCount > 0) parts.push(`row-scale ${o.rowScaleCount}`);
  if (o.restarts > 1) parts.push(`restarts ${o.restarts}`);
  if (o.klEncode > 0) parts.push(`kl-encode ${o.klEncode}`);
  if (o.tuneKl > 0) parts.push(`tune-kl ${o.tuneKl}`);
  return parts.join(" ");
}

/** The flags that reproduce `o` on `carvq compress`. */
export function optionFlags(o: CompressOptions): string {
  const d = DEFAULT_COMPRESS_OPTIONS;
  if (o.method !== RVQ_METHOD) return `--method ${o.method} --block ${o.block}`;
  const flags = [`--layout ${o.layout}`, `--h ${o.h}`, `--levels ${o.levels}`, `--group ${o.group}`];
  if (o.beam !== d.beam) flags.push(`--beam ${o.beam}`);
  if (o.refine !== d.refine) flags.push(`--refine ${o.refine}`);
  if (o.rowScaleCount !== d.rowScaleCount) flags.push(`--row-scale ${o.rowScaleCount}`);
  if (o.iters !== d.iters) flags.push(`--iters ${o.iters}`);
  if (o.seed !== d.seed) flags.push(`--seed ${o.seed}`);
  if (o.restarts !== d.restarts) flags.push(`--restarts ${o.restarts}`);
  if (o.klEncode !== d.klEncode) flags.push(`--kl-encode ${o.klEncode}`);
  if (o.tuneKl !== d.tuneKl) flags.push(`--tune-kl ${o.tuneKl}`);
  return flags.join(" ");
}

/** Sub-vector lengths worth trying for n columns: one per S = ceil(n / h), padding at most 10 %. */
export function subvectorLengths(cols: number): number[] {
  const ladder = cols <= 256 ? Array.from({ length: 47 }, (_, i) => i + 2) : [4, 5, 6, 8, 10, 12, 16, 20, 24, 32];
  const seen = new Set<number>();
  const out: number[] = [];
  for (const h0 of ladder) {
    if (h0 > cols) break;
    const S = Math.ceil(cols / h0);
    const h = Math.ceil(cols / S);
    if (seen.has(S) || S * h - cols > 0.1 * cols) continue;
    seen.add(S);
    out.push(h);
  }
  return out.sort((a, b) => a - b);
}

interface Budget {
  bytes: number;
  target: Target | null;
  /** AutoConfigRequest.after: counted in every predicted size. */
  after: Partial<CompressOptions>;
}

/** Whether `o` (with its group) fits: predicted size within the budget and, for a target, its memory. */
function check(
  matrix: Matrix,
  o: CompressOptions,
  budget: Budget,
  from: CompressSource,
): { fits: boolean; bytes: number; memory: MemoryNeed | null } {
  const { bytes } = predictBlobSize(matrix, { ...o, ...budget.after }, from);
  if (bytes > budget.bytes) return { fits: false, bytes, memory: null };
  const memory = budget.target === null ? null : memoryNeed(budget.target, matrix.cols, o, bytes);
  return { fits: memory === null || memory.fits, bytes, memory };
}

/**
 * The smallest group (most codebooks) with which `o` fits, or null. Column-block groups are tokens
 * (g from MIN_GROUP_POINTS to V); row groups are sub-vectors, kept to multiples of S so a group
 * covers whole tokens.
 */
export function fitGroup(matrix: Matrix, o: CompressOptions, budget: Budget, from: CompressSource): number | null {
  const S = Math.ceil(matrix.cols / o.h);
  const unit = o.layout === "row" ? S : 1;
  const maxUnits = matrix.rows;
  const minUnits = Math.min(maxUnits, Math.ceil(MIN_GROUP_POINTS / unit));
  const fits = (units: number) => check(matrix, { ...o, group: units * unit }, budget, from).fits;
  if (!fits(maxUnits)) return null;
  let lo = minUnits;
  let hi = maxUnits;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo * unit;
}

function resolveBudget(matrix: Matrix, request: AutoConfigRequest): Budget {
  const params = matrix.rows * matrix.cols;
  const target = request.target === undefined ? null : typeof request.target === "string" ? loadTarget(request.target) : request.target;
  let bytes = Infinity;
  if (request.targetBpp !== undefined) {
    if (!(request.targetBpp > 0) || !Number.isFinite(request.targetBpp))
      throw new CarvqError(`--target-bpp ${request.targetBpp}: expected a positive number of bits per parameter`);
    bytes = Math.floor((request.targetBpp * params) / 8);
  }
  if (target !== null) {
    const resident = maxResidentBlobBytes(target, matrix.cols, {});
    // A target alone never asks for more than an FP16 copy of the table would take.
    if (resident !== null)
      bytes = Math.min(bytes, resident, request.targetBpp === undefined ? Math.floor((FP16_BPP * params) / 8) : Infinity);
    else if (request.targetBpp === undefined) {
      throw new CarvqError(
        `target ${target.name} streams the blob from storage, so its ${target.memoryBudgetBytes}-byte memory budget does not bound the blob's size: give --target-bpp too`,
      );
    }
  }
  if (!Number.isFinite(bytes)) throw new CarvqError("auto-configuration needs --target-bpp or --target");
  return { bytes, target, after: request.after ?? {} };
}

function byQuality(a: Candidate, b: Candidate): number {
  return (
    a.proxy.relMSE - b.proxy.relMSE || b.proxy.nn10 - a.proxy.nn10 || describeOptions(a.options).localeCompare(describeOptions(b.options))
  );
}

function byScore(a: Candidate, b: Candidate): number {
  return (a.proxy.score ?? Infinity) - (b.proxy.score ?? Infinity) || byQuality(a, b);
}

/**
 * Searches for the best compress options within the budget (see the top of this file). Throws a
 * CarvqError when nothing fits. Returns the choice; the caller fits it on the whole table.
 */
export async function autoConfigure(matrix: Matrix, request: AutoConfigRequest): Promise<AutoConfigResult> {
  const started = performance.now();
  const from = request.from ?? {};
  const seed = request.seed ?? 0;
  const threads = request.threads ?? 1;
  const budget = resolveBudget(matrix, request);
  const base: CompressOptions = {
    ...DEFAULT_COMPRESS_OPTIONS,
    seed,
    beam: 1,
    refine: 0,
    rowScaleCount: 0,
    ...(request.weights ? { weights: request.weights } : {}),
  };

  // Candidates of the screen: per h, the two largest L that fit in the column-block layout, and the
  // row layout's where it fits more levels (a small table, whose column blocks cannot grow past V).
  const structures: CompressOptions[] = [];
  const largestLevels = (h: number, layout: CompressOptions["layout"], count: number): CompressOptions[] => {
    const fitting: CompressOptions[] = [];
    for (let L = LEVELS_MAX; L >= 1 && fitting.length < count; L--) {
      const o: CompressOptions = { ...base, h, levels: L, layout, group: 1 };
      const g = fitGroup(matrix, o, budget, from);
      if (g !== null) fitting.push({ ...o, group: g });
    }
    return fitting;
  };
  for (const h of subvectorLengths(matrix.cols)) {
    const col = largestLevels(h, "col", 2);
    structures.push(...col);
    structures.push(...largestLevels(h, "row", 2).filter((r) => !col.some((c) => c.levels === r.levels)));
  }
  // Options applied after the search are RVQ's (restarts, kl-encode, tune-kl): no scalar baseline
  // takes them, and the model-aware two need the rows themselves (no row scales).
  const after = budget.after;
  const rvqOnly = (after.restarts ?? 1) > 1 || (after.klEncode ?? 0) > 0 || (after.tuneKl ?? 0) > 0;
  const rowScalesAllowed = (after.klEncode ?? 0) === 0 && (after.tuneKl ?? 0) === 0;
  const scalars: CompressOptions[] = [];
  for (const method of rvqOnly ? [] : SCALAR_METHODS) {
    const blocks = [...SCALAR_BLOCKS.filter((b) => b < matrix.cols), matrix.cols];
    for (const block of blocks) {
      const o: CompressOptions = { ...base, method, block };
      if (check(matrix, o, budget, from).fits) {
        scalars.push(o);
        break;
      }
    }
  }
  if (structures.length === 0 && scalars.length === 0) {
    throw new CarvqError(
      `nothing fits ${budget.bytes} bytes (${((8 * budget.bytes) / (matrix.rows * matrix.cols)).toFixed(4)} bpp) for a ${matrix.rows} x ${matrix.cols} table${budget.target ? ` on target ${budget.target.name}` : ""}`,
    );
  }

  const spans = request.spans ?? 4;
  const sharedRows = request.sharedRows ?? 1024;
  const stageB = request.stageB ?? 4;
  const spanRows = structures.map((o) => spanRowsFor(o, matrix.cols, sharedRows)).sort((a, b) => a - b);
  const typicalSpan = spanRows.length > 0 ? spanRows[Math.floor(spanRows.length / 2)] : sharedRows;
  const plan: ProxyPlan = planProxy(matrix, spans, sharedRows, typicalSpan, seed);

  const evaluated: Candidate[] = [];
  // Planned evaluations: screen, three row variants, stage B, two extras (an estimate for progress).
  let total = structures.length + scalars.length + Math.min(3, structures.length) + Math.min(stageB, structures.length) + 2;
  const evaluate = async (stage: Candidate["stage"], o: CompressOptions): Promise<Candidate> => {
    const checked = check(matrix, o, budget, from);
    const proxy = await evaluateProxy(matrix, plan, o, from, threads, stage === "A" ? undefined : request.score?.of);
    const candidate: Candidate = {
      stage,
      options: o,
      bytes: checked.bytes,
      bpp: (8 * checked.bytes) / (matrix.rows * matrix.cols),
      memory: checked.memory,
      proxy,
      estimatedSeconds: (proxy.seconds * matrix.rows) / proxy.rows,
    };
    evaluated.push(candidate);
    total = Math.max(total, evaluated.length);
    request.onProgress?.(evaluated.length, total, candidate);
    return candidate;
  };

  const screened: Candidate[] = [];
  for (const o of structures) screened.push(await evaluate("A", o));
  const scalarResults: Candidate[] = [];
  for (const o of scalars) scalarResults.push(await evaluate("scalar", o));
  // The best column-block structures in the row layout too (group refitted, whole tokens per group).
  for (const c of [...screened]
    .filter((c) => c.options.layout === "col")
    .sort(byQuality)
    .slice(0, 3)) {
    const g = fitGroup(matrix, { ...c.options, layout: "row" }, budget, from);
    if (structures.some((o) => o.layout === "row" && o.h === c.options.h && o.levels === c.options.levels)) continue;
    if (g !== null) screened.push(await evaluate("A", { ...c.options, layout: "row", group: g }));
  }
  screened.sort(byQuality);

  const refined: Candidate[] = [];
  for (const c of screened.slice(0, stageB)) refined.push(await evaluate("B", { ...c.options, beam: 8, refine: 3 }));
  refined.sort(byQuality);
  if (refined.length > 0) {
    const best = refined[0].options;
    refined.push(await evaluate("B", { ...best, refine: 8 }));
    const scaled: CompressOptions = { ...best, rowScaleCount: 256 };
    const g = rowScalesAllowed ? fitGroup(matrix, scaled, budget, from) : null;
    if (g !== null) refined.push(await evaluate("B", { ...scaled, group: g }));
  }

  const scored = plan.whole && request.score !== undefined;
  const finalists = [...refined, ...scalarResults].sort(scored ? byScore : byQuality);
  const [chosen, ...rest] = finalists.length > 0 ? finalists : [...screened].sort(byQuality);
  return {
    chosen,
    runnersUp: rest.slice(0, 5),
    evaluated,
    rankedBy: scored ? request.score!.name : "relMSE",
    budget: {
      bytes: budget.bytes,
      bpp: (8 * budget.bytes) / (matrix.rows * matrix.cols),
      target: budget.target?.name ?? null,
      memoryBudgetBytes: budget.target?.memoryBudgetBytes ?? null,
    },
    sample: { whole: plan.whole, anchors: plan.anchors, sharedRows: plan.sharedRows, measuredRows: plan.reference.rows },
    seconds: (performance.now() - started) / 1000,
  };
}

/** Fits the chosen options on the whole table (the same bytes as `carvq compress` with optionFlags). */
export async function compressChosen(
  matrix: Matrix,
  result: AutoConfigResult,
  from: CompressSource,
  threads: number,
  onProgress?: (done: number, total: number) => void,
) {
  return compressMatrix(matrix, result.chosen.options, from, { threads, onProgress });
}
