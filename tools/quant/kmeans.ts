// k-means for small codebooks (K centroids of dimension `dim`): k-means++ seeding, Lloyd
// iterations (assignment by the SIMD kernel in kernels.ts when K = 16), empty clusters re-seeded,
// optional per-point importance weights (null = all 1, and then the arithmetic is exactly the
// unweighted one). Deterministic for a given random stream.
import { assign16, lloyd16Session } from "./kernels.ts";

/** Squared distance between points[p] and centroids[c] (both `dim` wide). */
function distance2(points: Float32Array, p: number, centroids: Float32Array, c: number, dim: number): number {
  let sum = 0;
  const pi = p * dim;
  const ci = c * dim;
  for (let e = 0; e < dim; e++) {
    const d = points[pi + e] - centroids[ci + e];
    sum += d * d;
  }
  return sum;
}

/**
 * Index of the centroid nearest to points[p] (lowest index on ties) and its squared distance,
 * packed as [index, distance] into `out`.
 */
export function nearestCentroid(points: Float32Array, p: number, centroids: Float32Array, K: number, dim: number, out: Float64Array): void {
  let best = 0;
  let bestDistance = Infinity;
  for (let c = 0; c < K; c++) {
    const d = distance2(points, p, centroids, c, dim);
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  out[0] = best;
  out[1] = bestDistance;
}

/** k-means++: each next centroid is a point drawn with probability proportional to its squared distance. */
function seedCentroids(
  points: Float32Array,
  count: number,
  dim: number,
  K: number,
  random: () => number,
  weights: Float32Array | null,
): Float32Array {
  const centroids = new Float32Array(K * dim);
  const nearest = new Float64Array(count).fill(Infinity);
  let chosen = Math.min(count - 1, Math.floor(random() * count));
  for (let k = 0; k < K; k++) {
    centroids.set(points.subarray(chosen * dim, (chosen + 1) * dim), k * dim);
    let total = 0;
    for (let p = 0; p < count; p++) {
      const d = distance2(points, p, centroids, k, dim);
      if (d < nearest[p]) nearest[p] = d;
      total += weights === null ? nearest[p] : nearest[p] * weights[p];
    }
    if (total === 0) {
      // Fewer distinct points than centroids: the rest duplicate the first (they stay unused).
      for (let rest = k + 1; rest < K; rest++) centroids.copyWithin(rest * dim, 0, dim);
      break;
    }
    let target = random() * total;
    chosen = count - 1;
    for (let p = 0; p < count; p++) {
      target -= weights === null ? nearest[p] : nearest[p] * weights[p];
      if (target < 0) {
        chosen = p;
        break;
      }
    }
  }
  return centroids;
}

/**
 * Fits K centroids to `count` points of dimension `dim` (row-major in `points`) with at most
 * `iterations` Lloyd steps, stopping early once no assignment changes. With K = 16 the iterations
 * run in the SIMD kernel when it is built (`kernel` false: the JavaScript loop, the same bits).
 */
export function kmeans(
  points: Float32Array,
  count: number,
  dim: number,
  K: number,
  iterations: number,
  random: () => number,
  weights: Float32Array | null = null,
  kernel = true,
): Float32Array {
  const centroids = seedCentroids(points, count, dim, K, random, weights);
  const pointNorm = new Float64Array(count);
  for (let p = 0; p < count; p++) for (let e = 0; e < dim; e++) pointNorm[p] += points[p * dim + e] ** 2;
  const session = K === 16 && kernel ? lloyd16Session(points, count, dim, weights, pointNorm) : null;
  if (session !== null) {
    for (let iter = 0; iter < iterations; iter++) {
      if (!session.iterate(centroids)) break;
      updateCentroids(points, count, dim, K, centroids, session.sums, session.sizes, session.pointDistance, weights);
    }
    return centroids;
  }
  const assignment = new Int32Array(count).fill(-1);
  const next = new Int32Array(count);
  const score = new Float32Array(count);
  const pointDistance = new Float64Array(count);
  const sums = new Float64Array(K * dim);
  const sizes = new Float64Array(K);
  const found = new Float64Array(2);
  for (let iter = 0; iter < iterations; iter++) {
    if (K === 16) {
      assign16(points, count, dim, centroids, next, score);
      for (let p = 0; p < count; p++) pointDistance[p] = Math.max(0, score[p] + pointNorm[p]);
    } else {
      for (let p = 0; p < count; p++) {
        nearestCentroid(points, p, centroids, K, dim, found);
        next[p] = found[0];
        pointDistance[p] = found[1];
      }
    }
    let changed = false;
    sums.fill(0);
    sizes.fill(0);
    for (let p = 0; p < count; p++) {
      const c = next[p];
      if (assignment[p] !== c) {
        assignment[p] = c;
        changed = true;
      }
      const w = weights === null ? 1 : weights[p];
      sizes[c] += w;
      for (let e = 0; e < dim; e++) sums[c * dim + e] += w * points[p * dim + e];
    }
    if (!changed) break;
    updateCentroids(points, count, dim, K, centroids, sums, sizes, pointDistance, weights);
  }
  return centroids;
}

/** Each centroid to its cluster's (weighted) mean; an empty cluster is re-seeded. */
function updateCentroids(
  points: Float32Array,
  count: number,
  dim: number,
  K: number,
  centroids: Float32Array,
  sums: Float64Array,
  sizes: Float64Array,
  pointDistance: Float64Array,
  weights: Float32Array | null,
): void {
  for (let c = 0; c < K; c++) {
    if (sizes[c] > 0) {
      for (let e = 0; e < dim; e++) centroids[c * dim + e] = sums[c * dim + e] / sizes[c];
    } else {
      reseedEmpty(points, count, dim, centroids, c, pointDistance, weights);
    }
  }
}

/** An empty cluster (or one of zero weight) takes the point costing most where it is (so it splits the worst cluster). */
function reseedEmpty(
  points: Float32Array,
  count: number,
  dim: number,
  centroids: Float32Array,
  c: number,
  pointDistance: Float64Array,
  weights: Float32Array | null,
): void {
  const cost = (p: number) => (weights === null ? pointDistance[p] : pointDistance[p] * weights[p]);
  let worst = 0;
  for (let p = 1; p < count; p++) if (cost(p) > cost(worst)) worst = p;
  centroids.set(points.subarray(worst * dim, (worst + 1) * dim), c * dim);
  pointDistance[worst] = 0;
}
