// KL-aware encoding (`--kl-encode ROUNDS`): choose the codes, and fit the codebooks, for a quadratic
// form per row (a model's curvature, tools/llama2c/fisher.ts) instead of the squared error.
// Squared error treats every row and direction alike; a language model does not (on stories260K, two
// encodings of equal relMSE differ by 25 % in KL), and unlike codebook tuning (tools/quant/tune.ts,
// ~800 values) this moves the codes, which hold most of the bits.
//
// Each round:
//   1. Re-encode every row for its own metric M_t, minimising (x_t - xhat_t)^T M_t (x_t - xhat_t):
//      sub-vector by sub-vector with the others fixed (M_t couples them), trying every combination
//      of the L codes when 16^L <= 4096 and otherwise one level at a time, sweeping the row until
//      nothing changes (at most MAX_SWEEPS times). It starts from the current codes and only takes
//      strictly better ones, so the objective never rises.
//   2. Solve for all codebook values jointly by least squares under the same metrics (a small ridge
//      toward the current values fixes the levels' gauge freedom), then round to FP16.
// Deterministic: no randomness, fixed loop orders.
import { CarvqError } from "../errors.ts";
import { F16_TO_F32, f32ToF16 } from "../fp16.ts";
import type { Matrix } from "../matrix.ts";
import { CODEBOOK_SIZE, centroidIndex, groupOf, type RvqShape } from "./layout.ts";
import type { RowMetric } from "./objective.ts";
import { choleskySolve } from "./refine.ts";
import type { RvqEncoding } from "./rvq.ts";

/** The largest rows * cols^2 a metric may hold (2^26 doubles, 512 MiB): stories260K needs 2^21. */
export const MAX_METRIC_VALUES = 2 ** 26;

/** Refuses a table whose metric would not fit MAX_METRIC_VALUES, naming the sizes. */
export function checkMetricSize(rows: number, cols: number, name: string): void {
  if (rows * cols * cols > MAX_METRIC_VALUES) {
    throw new CarvqError(
      `${name}: a ${rows} x ${cols} table needs ${rows} x ${cols}^2 = ${(rows * cols * cols).toExponential(2)} metric values; --kl-encode handles up to ${MAX_METRIC_VALUES} (e.g. 512 x 362); use --tune-kl alone`,
    );
  }
}

const K = CODEBOOK_SIZE;
/** Re-encoding tries every combination of a sub-vector's codes up to this many. */
const MAX_COMBINATIONS = 4096;
const MAX_SWEEPS = 4;
/** The least-squares step solves a dense system of every codebook value; above this many it is skipped. */
export const MAX_SOLVED_VALUES = 4096;
const RIDGE = 1e-4;

/** out = M_t v, with v the D values of `vector` from `at`. */
function rowMetricTimes(metric: RowMetric, t: number, vector: ArrayLike<number>, at: number, out: Float64Array): void {
  const D = metric.cols;
  const block = t * D * D;
  for (let a = 0; a < D; a++) {
    let s = 0;
    for (let b = 0; b < D; b++) s += metric.data[block + a * D + b] * vector[at + b];
    out[a] = s;
  }
}

/** The metric's quadratic form of the table's error: sum_t (x_t - xhat_t)^T M_t (x_t - xhat_t). */
export function metricError(matrix: Matrix, decoded: Matrix, metric: RowMetric): number {
  const D = matrix.cols;
  const e = new Float64Array(D);
  const Me = new Float64Array(D);
  let total = 0;
  for (let t = 0; t < matrix.rows; t++) {
    for (let i = 0; i < D; i++) e[i] = matrix.data[t * D + i] - decoded.data[t * D + i];
    rowMetricTimes(metric, t, e, 0, Me);
    for (let a = 0; a < D; a++) total += e[a] * Me[a];
  }
  return total;
}

/** Every group's sum vectors of all 16^L code combinations (combination c: level l's code is digit l of c in base 16). */
function combinationSums(codebooks: Float64Array, s: RvqShape, groups: number): Float64Array {
  const C = K ** s.levels;
  const sums = new Float64Array(groups * C * s.h);
  for (let g = 0; g < groups; g++) {
    for (let c = 0; c < C; c++) {
      let rest = c;
      for (let l = 0; l < s.levels; l++) {
        const at = centroidIndex(g, l, rest % K, s.levels, K, s.h);
        rest = Math.floor(rest / K);
        for (let e = 0; e < s.h; e++) sums[(g * C + c) * s.h + e] += codebooks[at + e];
      }
    }
  }
  return sums;
}

/** One row's state while it is re-encoded: its error e = x - xhat and M e. */
interface RowState {
  readonly error: Float64Array;
  readonly metricError: Float64Array;
}

/**
 * The change of e^T M e when the sub-vector at `offset` (width w) moves by -d (its decode by +d):
 * -2 d . (M e)[offset..] + d^T M[offset.., offset..] d.
 */
function costOfChange(d: Float64Array, w: number, offset: number, state: RowState, M: Float64Array, at: number, D: number): number {
  let linear = 0;
  let quadratic = 0;
  for (let x = 0; x < w; x++) {
    linear += d[x] * state.metricError[offset + x];
    let s = 0;
    const row = at + (offset + x) * D + offset;
    for (let y = 0; y < w; y++) s += M[row + y] * d[y];
    quadratic += d[x] * s;
  }
  return quadratic - 2 * linear;
}

/** Applies a decode change d at `offset`: e -= d, M e -= M[:, offset..] d. */
function applyChange(d: Float64Array, w: number, offset: number, state: RowState, M: Float64Array, at: number, D: number): void {
  for (let x = 0; x < w; x++) state.error[offset + x] -= d[x];
  for (let a = 0; a < D; a++) {
    let s = 0;
    for (let x = 0; x < w; x++) s += M[at + a * D + offset + x] * d[x];
    state.metricError[a] -= s;
  }
}

/** Re-encodes the codes of row t in place. */
function encodeRow(
  t: number,
  matrix: Matrix,
  codes: Uint8Array,
  codebooks: Float64Array,
  sums: Float64Array | null,
  s: RvqShape,
  metric: RowMetric,
): void {
  const D = s.cols;
  const S = Math.ceil(D / s.h);
  const L = s.levels;
  const M = metric.data;
  const at = t * D * D;
  const state: RowState = { error: new Float64Array(D), metricError: new Float64Array(D) };
  for (let j = 0; j < S; j++) {
    const G = groupOf(s.layout, t, j, S, s.group);
    for (let l = 0; l < L; l++) {
      const c = centroidIndex(G, l, codes[(t * S + j) * L + l], L, K, s.h);
      for (let e = 0; e < Math.min(s.h, D - j * s.h); e++) state.error[j * s.h + e] -= codebooks[c + e];
    }
  }
  for (let i = 0; i < D; i++) state.error[i] += matrix.data[t * D + i];
  rowMetricTimes(metric, t, state.error, 0, state.metricError);
  const d = new Float64Array(s.h);
  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let changed = false;
    for (let j = 0; j < S; j++) {
      const w = Math.min(s.h, D - j * s.h);
      const G = groupOf(s.layout, t, j, S, s.group);
      const first = (t * S + j) * L;
      if (sums !== null) {
        const C = K ** L;
        let current = 0;
        for (let l = L - 1; l >= 0; l--) current = current * K + codes[first + l];
        const base = (G * C + current) * s.h;
        let best = current;
        let bestCost = 0;
        for (let c = 0; c < C; c++) {
          const to = (G * C + c) * s.h;
          for (let x = 0; x < w; x++) d[x] = sums[to + x] - sums[base + x];
          const cost = costOfChange(d, w, j * s.h, state, M, at, D);
          if (cost < bestCost) [best, bestCost] = [c, cost];
        }
        if (best === current) continue;
        const to = (G * C + best) * s.h;
        for (let x = 0; x < w; x++) d[x] = sums[to + x] - sums[base + x];
        applyChange(d, w, j * s.h, state, M, at, D);
        for (let l = 0, rest = best; l < L; l++, rest = Math.floor(rest / K)) codes[first + l] = rest % K;
        changed = true;
      } else {
        for (let l = 0; l < L; l++) {
          const from = centroidIndex(G, l, codes[first + l], L, K, s.h);
          let best = codes[first + l];
          let bestCost = 0;
          for (let k = 0; k < K; k++) {
            const to = centroidIndex(G, l, k, L, K, s.h);
            for (let x = 0; x < w; x++) d[x] = codebooks[to + x] - codebooks[from + x];
            const cost = costOfChange(d, w, j * s.h, state, M, at, D);
            if (cost < bestCost) [best, bestCost] = [k, cost];
          }
          if (best === codes[first + l]) continue;
          const to = centroidIndex(G, l, best, L, K, s.h);
          for (let x = 0; x < w; x++) d[x] = codebooks[to + x] - codebooks[from + x];
          applyChange(d, w, j * s.h, state, M, at, D);
          codes[first + l] = best;
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
}

/** New codes for every row under its metric, starting from (and never worse than) `encoding`'s. */
export function metricEncode(matrix: Matrix, encoding: RvqEncoding, s: RvqShape, metric: RowMetric): Uint8Array {
  const codebooks = Float64Array.from(encoding.codebooks, (h) => F16_TO_F32[h]);
  const sums = K ** s.levels <= MAX_COMBINATIONS ? combinationSums(codebooks, s, encoding.groupCount) : null;
  const codes = encoding.codes.slice();
  for (let t = 0; t < matrix.rows; t++) encodeRow(t, matrix, codes, codebooks, sums, s, metric);
  return codes;
}

/**
 * FP16 codebooks minimising the metric error of `codes`: the normal equations of every codebook value
 * at once (row t adds A_t^T M_t A_t, where A_t picks the values its codes sum), with a ridge of
 * RIDGE times the mean diagonal toward the current values. Null when there are more than
 * MAX_SOLVED_VALUES values.
 */
export function metricCodebooks(
  matrix: Matrix,
  encoding: RvqEncoding,
  codes: Uint8Array,
  s: RvqShape,
  metric: RowMetric,
): Uint16Array | null {
  const n = encoding.codebooks.length;
  if (n > MAX_SOLVED_VALUES) return null;
  const D = s.cols;
  const S = Math.ceil(D / s.h);
  const L = s.levels;
  const M = metric.data;
  const current = Float64Array.from(encoding.codebooks, (h) => F16_TO_F32[h]);
  const normal = new Float64Array(n * n);
  const rhs = new Float64Array(n);
  const value = new Int32Array(D * L); // which codebook value each (level, table column) term reads
  const column = new Int32Array(D * L);
  const Mx = new Float64Array(D);
  for (let t = 0; t < matrix.rows; t++) {
    const at = t * D * D;
    let terms = 0;
    for (let j = 0; j < S; j++) {
      const G = groupOf(s.layout, t, j, S, s.group);
      for (let l = 0; l < L; l++) {
        const c = centroidIndex(G, l, codes[(t * S + j) * L + l], L, K, s.h);
        for (let e = 0; e < Math.min(s.h, D - j * s.h); e++, terms++) [value[terms], column[terms]] = [c + e, j * s.h + e];
      }
    }
    rowMetricTimes(metric, t, matrix.data, t * D, Mx);
    for (let p = 0; p < terms; p++) {
      rhs[value[p]] += Mx[column[p]];
      const row = value[p] * n;
      const metricRow = at + column[p] * D;
      for (let q = 0; q < terms; q++) normal[row + value[q]] += M[metricRow + column[q]];
    }
  }
  let trace = 0;
  for (let i = 0; i < n; i++) trace += normal[i * n + i];
  const ridge = (RIDGE * trace) / n || RIDGE;
  for (let i = 0; i < n; i++) {
    normal[i * n + i] += ridge;
    rhs[i] += ridge * current[i];
  }
  choleskySolve(normal, n, rhs, 1);
  return Uint16Array.from(rhs, (v) => f32ToF16(v));
}

/** One round: codes for the metric, then codebooks for those codes (kept as they were when too many to solve). */
export function metricRound(matrix: Matrix, encoding: RvqEncoding, s: RvqShape, metric: RowMetric): RvqEncoding {
  if (metric.rows !== matrix.rows || metric.cols !== matrix.cols) {
    throw new CarvqError(
      `kl-encode: the metric is for a ${metric.rows} x ${metric.cols} table, the table is ${matrix.rows} x ${matrix.cols}`,
    );
  }
  const codes = metricEncode(matrix, encoding, s, metric);
  const codebooks = metricCodebooks(matrix, encoding, codes, s, metric) ?? encoding.codebooks;
  return { ...encoding, codes, codebooks };
}
