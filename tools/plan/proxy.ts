// A fast, faithful stand-in for compressing a whole table: compress a few spans of consecutive rows
// instead, and measure on the rows every candidate shares.
//
// Each RVQ codebook group is fitted on its own members only, so a group's error depends on how many
// sub-vectors share its codebooks (g) and on which rows they are, not on the rest of the table. A
// sample that keeps whole groups (spans of consecutive rows whose length is a multiple of the rows
// one group covers) poses exactly the problem the full fit solves, at the same codebook rate, on a
// fraction of the rows. Scaling g down with a small random row sample would not: a codebook of 16
// centroids fitted on a few dozen points flatters every configuration that spends more on codebooks.
//
// Spans hold fixed, seeded, stratified anchors; every span is at least `sharedRows` long and the
// metrics are measured on the `sharedRows` rows from each anchor, the same rows for every candidate,
// so candidates are compared on one set of rows (nn10 among those rows too). Small tables are
// compressed whole and measured exactly.
import { decodeAll } from "../decoder.ts";
import { compressMatrix, type CompressOptions, type CompressSource } from "../compress.ts";
import { neighbourOverlap, neighbourSets, reconstructionMetrics, type NeighbourSets } from "../quant/metrics.ts";
import type { Matrix } from "../matrix.ts";
import { createRandom, deriveSeed } from "../random.ts";
import { RVQ_METHOD } from "../quant/methods.ts";

export interface ProxyPlan {
  /** True when the whole table is compressed (no sampling): the metrics are the full fit's. */
  whole: boolean;
  /** First measured row of each span. */
  anchors: number[];
  /** Rows measured per span, from its anchor. */
  sharedRows: number;
  /** The measured rows of the original table (all of it when whole). */
  reference: Matrix;
  /** Neighbour sets of `reference` for nn10. */
  neighbours: NeighbourSets;
}

export interface ProxyMetrics {
  relMSE: number;
  cosine: number;
  nn10: number;
  /** Rows compressed (the sample), rows measured. */
  rows: number;
  measuredRows: number;
  /** Wall time of compressing the sample. */
  seconds: number;
  /** The caller's end-to-end score of the decoded table (whole-table plans only), lower is better. */
  score?: number;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Consecutive rows that hold whole codebook groups: column-block layout, the g tokens of a block;
 * row layout, the fewest tokens whose sub-vectors fill whole groups (g / gcd(g, S)). Scalar methods: 1.
 */
export function groupSpanRows(o: Pick<CompressOptions, "method" | "h" | "group" | "layout">, cols: number): number {
  if (o.method !== RVQ_METHOD) return 1;
  if (o.layout === "col") return o.group;
  const S = Math.ceil(cols / o.h);
  return o.group / gcd(o.group, S);
}

/** The rows a candidate's sample takes from each anchor: at least `sharedRows`, whole groups. */
export function spanRowsFor(o: Pick<CompressOptions, "method" | "h" | "group" | "layout">, cols: number, sharedRows: number): number {
  const unit = groupSpanRows(o, cols);
  return unit * Math.ceil(sharedRows / unit);
}

function gatherRows(matrix: Matrix, starts: readonly number[], length: number): Matrix {
  const { cols } = matrix;
  const data = new Float32Array(starts.length * length * cols);
  starts.forEach((start, i) => data.set(matrix.data.subarray(start * cols, (start + length) * cols), i * length * cols));
  return { rows: starts.length * length, cols, data };
}

/**
 * Plans the sample: `spans` anchors, stratified over [0, rows - sharedRows] with a seeded offset in
 * each stratum; rows [anchor, anchor + sharedRows) are measured. When the spans of a typical
 * candidate (`typicalSpanRows` each) would cover more than half the table, the whole table is used.
 */
export function planProxy(matrix: Matrix, spans: number, sharedRows: number, typicalSpanRows: number, seed: number): ProxyPlan {
  const whole = spans * Math.max(typicalSpanRows, sharedRows) * 2 > matrix.rows;
  if (whole) return { whole, anchors: [0], sharedRows: matrix.rows, reference: matrix, neighbours: neighbourSets(matrix) };
  const room = matrix.rows - sharedRows;
  const random = createRandom(deriveSeed(seed, 0x5a3e));
  const anchors = Array.from({ length: spans }, (_, i) => Math.floor(((i + random()) * room) / spans));
  const reference = gatherRows(matrix, anchors, sharedRows);
  return { whole, anchors, sharedRows, reference, neighbours: neighbourSets(reference) };
}

/**
 * Where each of `o`'s spans starts: at its anchor, or earlier when the span would run past the
 * table's end (it still holds the anchor's measured rows).
 */
function spanStarts(matrix: Matrix, plan: ProxyPlan, length: number): number[] {
  return plan.anchors.map((anchor) => Math.max(0, Math.min(anchor, matrix.rows - length)));
}

/** The rows of each span, or null when the spans together would hold the whole table or more. */
function spanLength(matrix: Matrix, plan: ProxyPlan, o: CompressOptions): number | null {
  const length = spanRowsFor(o, matrix.cols, plan.sharedRows);
  return plan.whole || length * plan.anchors.length >= matrix.rows ? null : length;
}

/**
 * The rows `o` is fitted on: whole groups around every anchor (and their weights, if any); the
 * whole table when the spans would cover it anyway (groups of nearly V tokens).
 */
export function proxySample(matrix: Matrix, plan: ProxyPlan, o: CompressOptions): { sample: Matrix; options: CompressOptions } {
  const length = spanLength(matrix, plan, o);
  if (length === null) return { sample: matrix, options: o };
  const starts = spanStarts(matrix, plan, length);
  const weights = o.weights ? gatherRows({ rows: matrix.rows, cols: 1, data: o.weights }, starts, length).data : o.weights;
  return { sample: gatherRows(matrix, starts, length), options: { ...o, weights } };
}

/**
 * Compresses the candidate's sample and measures relMSE, cosine and nn10 on the plan's shared rows;
 * on a whole-table plan also `score(decoded)` when given.
 */
export async function evaluateProxy(
  matrix: Matrix,
  plan: ProxyPlan,
  o: CompressOptions,
  from: CompressSource,
  threads: number,
  score?: (decoded: Matrix) => number,
): Promise<ProxyMetrics> {
  const { sample, options } = proxySample(matrix, plan, o);
  const started = performance.now();
  const result = await compressMatrix(sample, options, from, { threads });
  const seconds = (performance.now() - started) / 1000;
  const decoded = decodeAll(result.blob);
  let measured = decoded;
  const length = spanLength(matrix, plan, o);
  if (length !== null) {
    const starts = spanStarts(matrix, plan, length);
    measured = gatherRows(
      decoded,
      plan.anchors.map((anchor, i) => i * length + anchor - starts[i]),
      plan.sharedRows,
    );
  } else if (!plan.whole) {
    measured = gatherRows(decoded, plan.anchors, plan.sharedRows);
  }
  const metrics = reconstructionMetrics(plan.reference, measured);
  return {
    ...metrics,
    nn10: neighbourOverlap(plan.reference, measured, 10, plan.neighbours),
    rows: sample.rows,
    measuredRows: plan.reference.rows,
    seconds,
    ...(score !== undefined && plan.whole ? { score: score(decoded) } : {}),
  };
}
