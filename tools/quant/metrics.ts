// Quality of a decoded table against the original: relative MSE, mean row cosine and the share of
// semantic neighbours (NN@10) that survive compression (`carvq eval --help` states each).
import type { Matrix } from "../matrix.ts";

export interface ReconstructionMetrics {
  /** Sum of squared error over sum of squares. */
  relMSE: number;
  /** Mean over rows of cos(original row, decoded row); a zero row counts 1 if decoded to zero, else 0. */
  cosine: number;
}

export function reconstructionMetrics(original: Matrix, decoded: Matrix): ReconstructionMetrics {
  const { rows, cols } = original;
  const a = original.data;
  const b = decoded.data;
  let errorSum = 0;
  let energySum = 0;
  let cosineSum = 0;
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    let aa = 0;
    let bb = 0;
    let err = 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) {
      const x = a[i];
      const y = b[i];
      dot += x * y;
      aa += x * x;
      bb += y * y;
      err += (x - y) * (x - y);
    }
    errorSum += err;
    energySum += aa;
    cosineSum += aa > 0 && bb > 0 ? dot / Math.sqrt(aa * bb) : aa === bb ? 1 : 0;
  }
  return { relMSE: energySum > 0 ? errorSum / energySum : errorSum === 0 ? 0 : Infinity, cosine: cosineSum / rows };
}

/** Query rows for NN@10: 0, 20, 40, … below min(V, 20000). */
export function nnQueries(rows: number): number[] {
  const queries: number[] = [];
  for (let q = 0; q < Math.min(rows, 20000); q += 20) queries.push(q);
  return queries;
}

/** Unit-length copies of the first `count` rows (zero rows stay zero). */
function normalizedRows(m: Matrix, count: number): Float32Array {
  const { cols, data } = m;
  const out = new Float32Array(count * cols);
  for (let r = 0; r < count; r++) {
    let norm = 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) norm += data[i] * data[i];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) out[i] = data[i] * inv;
  }
  return out;
}

/** The k candidates most similar to `query` by cosine, excluding the query itself (lower index wins ties). */
function topNeighbours(unit: Float32Array, cols: number, candidates: number, query: number, k: number): Set<number> {
  const bestIndex = new Int32Array(k).fill(-1);
  const bestScore = new Float64Array(k).fill(-Infinity);
  const q = query * cols;
  for (let c = 0; c < candidates; c++) {
    if (c === query) continue;
    let dot = 0;
    const ci = c * cols;
    for (let e = 0; e < cols; e++) dot += unit[q + e] * unit[ci + e];
    if (dot <= bestScore[k - 1]) continue;
    let slot = k - 1;
    while (slot > 0 && dot > bestScore[slot - 1]) {
      bestScore[slot] = bestScore[slot - 1];
      bestIndex[slot] = bestIndex[slot - 1];
      slot--;
    }
    bestScore[slot] = dot;
    bestIndex[slot] = c;
  }
  return new Set(Array.from(bestIndex).filter((i) => i >= 0));
}

/** Each query's k nearest rows in a table (see `neighbourOverlap`), to compare several decodes against. */
export interface NeighbourSets {
  k: number;
  queries: number[];
  neighbours: Set<number>[];
}

/** The neighbour sets of the first min(V, 50,000) rows of `m` for the NN@k queries; `onQuery` sees each query done. */
export function neighbourSets(m: Matrix, k = 10, onQuery?: (done: number, total: number) => void): NeighbourSets {
  const candidates = Math.min(m.rows, 50000);
  const kk = Math.max(0, Math.min(k, candidates - 1));
  const queries = kk > 0 ? nnQueries(m.rows) : [];
  const unit = normalizedRows(m, candidates);
  const neighbours = queries.map((q, i) => {
    const found = topNeighbours(unit, m.cols, candidates, q, kk);
    onQuery?.(i + 1, queries.length);
    return found;
  });
  return { k: kk, queries, neighbours };
}

/**
 * NN@k: for each query row, the share of its k nearest rows (cosine, among the first
 * min(V, 50,000) rows, itself excluded) in the original table that are also among its k nearest in
 * the decoded table; the mean over queries. 1 when V has too few rows to have neighbours.
 * Pass the original's `neighbourSets` when comparing several decodes against one table.
 */
export function neighbourOverlap(original: Matrix, decoded: Matrix, k = 10, reference: NeighbourSets = neighbourSets(original, k)): number {
  return neighbourSetOverlap(reference, reference.k === 0 ? reference : neighbourSets(decoded, k));
}

/** NN@k from the two tables' neighbour sets (see `neighbourOverlap`). */
export function neighbourSetOverlap(reference: NeighbourSets, after: NeighbourSets): number {
  if (reference.k === 0) return 1;
  let total = 0;
  reference.neighbours.forEach((before, i) => {
    let kept = 0;
    for (const j of after.neighbours[i]) if (before.has(j)) kept++;
    total += kept / reference.k;
  });
  return total / reference.queries.length;
}
