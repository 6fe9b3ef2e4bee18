// k-means assignment kernel for the offline encoder (tools/quant/kernels.ts), compiled separately
// from the device runtime. For each point it computes the 16 distances ||c||² − 2·p·c at once with
// centroids stored dimension-major (four f32x4 lanes of centroids per dimension), then the nearest.
// Every f32 operation is the same, in the same order, as the scalar reference in
// tools/quant/kernels.ts, so both give bit-identical results.

/** Assigns `count` points (count × dim f32 at `points`) to the nearest of 16 centroids.
 *  `centroidsT`: dim × 16 f32 (dimension-major); `norms`: 16 f32 (||c||²).
 *  Writes the index (i32) to `assignment` and ||c||² − 2·p·c (f32) to `score`. */
export function assign16(points: usize, count: i32, dim: i32, centroidsT: usize, norms: usize, assignment: usize, score: usize): void {
  const n0 = v128.load(norms);
  const n1 = v128.load(norms, 16);
  const n2 = v128.load(norms, 32);
  const n3 = v128.load(norms, 48);
  for (let p = 0; p < count; p++) {
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    const row = points + <usize>(p * dim) * 4;
    for (let e = 0; e < dim; e++) {
      const x = f32x4.splat(load<f32>(row + <usize>e * 4));
      const c = centroidsT + <usize>(e * 16) * 4;
      a0 = f32x4.add(a0, f32x4.mul(x, v128.load(c)));
      a1 = f32x4.add(a1, f32x4.mul(x, v128.load(c, 16)));
      a2 = f32x4.add(a2, f32x4.mul(x, v128.load(c, 32)));
      a3 = f32x4.add(a3, f32x4.mul(x, v128.load(c, 48)));
    }
    const d0 = f32x4.sub(n0, f32x4.add(a0, a0));
    const d1 = f32x4.sub(n1, f32x4.add(a1, a1));
    const d2 = f32x4.sub(n2, f32x4.add(a2, a2));
    const d3 = f32x4.sub(n3, f32x4.add(a3, a3));
    // The reference scans k = 0 .. 15 keeping the first strictly smaller score: that is the first
    // k whose score equals the minimum (+0 and -0 compare equal in both), found here with vector
    // minima and an equality mask instead of 15 unpredictable branches (most of the kernel's time
    // at small dimensions). A NaN score (never from finite input) takes the reference's loop.
    let m = f32x4.min(f32x4.min(d0, d1), f32x4.min(d2, d3));
    m = f32x4.min(m, v128.shuffle<f32>(m, m, 2, 3, 0, 1));
    m = f32x4.min(m, v128.shuffle<f32>(m, m, 1, 0, 3, 2));
    const least = f32x4.extract_lane(m, 0);
    let best: i32 = 0;
    if (least == least) {
      const v = f32x4.splat(least);
      const mask = i32x4.bitmask(f32x4.eq(d0, v)) | (i32x4.bitmask(f32x4.eq(d1, v)) << 4) | (i32x4.bitmask(f32x4.eq(d2, v)) << 8) | (i32x4.bitmask(f32x4.eq(d3, v)) << 12);
      best = ctz<i32>(mask);
    } else {
      best = scanFirstLeast(d0, d1, d2, d3);
    }
    const lanes = best < 4 ? d0 : best < 8 ? d1 : best < 12 ? d2 : d3;
    store<i32>(assignment + <usize>p * 4, best);
    store<f32>(score + <usize>p * 4, extract(lanes, best & 3));
  }
}

/** The reference's scan: lowest index wins ties, strictly smaller replaces. */
function scanFirstLeast(d0: v128, d1: v128, d2: v128, d3: v128): i32 {
  let best: i32 = 0;
  let bestScore: f32 = f32x4.extract_lane(d0, 0);
  for (let k = 1; k < 16; k++) {
    const lanes = k < 4 ? d0 : k < 8 ? d1 : k < 12 ? d2 : d3;
    const s = extract(lanes, k & 3);
    if (s < bestScore) {
      bestScore = s;
      best = k;
    }
  }
  return best;
}

@inline function extract(v: v128, lane: i32): f32 {
  return lane == 0 ? f32x4.extract_lane(v, 0) : lane == 1 ? f32x4.extract_lane(v, 1) : lane == 2 ? f32x4.extract_lane(v, 2) : f32x4.extract_lane(v, 3);
}

/**
 * One Lloyd iteration of k-means with 16 centroids, all but the centroid update (tools/quant/kmeans.ts
 * does that, and the rare re-seeding of an empty cluster, from `sums` and `sizes`): the centroids'
 * dimension-major copy and norms, the assignment (assign16), each point's squared distance
 * max(0, score + ||p||²) in f64, whether any assignment changed, and the f64 sums and sizes of
 * every cluster, in increasing point order. The same operations in the same order as the
 * JavaScript loop it replaces, so the same bits; it exists because that loop, around a kernel
 * call per iteration, took as long as the kernel.
 *
 * `centroids` 16 × dim f32 (row-major), `centroidsT` dim × 16 f32 and `norms` 16 f32 (written),
 * `weights` count f32 or 0 (all 1), `pointNorm` count f64, `assignment` count i32 (read and
 * written), `score` count f32, `pointDistance` count f64, `sums` 16 × dim f64, `sizes` 16 f64.
 * Returns 1 if any assignment changed.
 */
export function lloyd16(points: usize, count: i32, dim: i32, centroids: usize, centroidsT: usize, norms: usize, weights: usize, pointNorm: usize, assignment: usize, score: usize, pointDistance: usize, sums: usize, sizes: usize): i32 {
  for (let k = 0; k < 16; k++) {
    let norm: f32 = 0;
    for (let e = 0; e < dim; e++) {
      const c = load<f32>(centroids + (<usize>(k * dim + e) << 2));
      store<f32>(centroidsT + (<usize>(e * 16 + k) << 2), c);
      norm = norm + c * c;
    }
    store<f32>(norms + (<usize>k << 2), norm);
  }
  const next = score + (<usize>count << 2); // scratch after score: count i32
  assign16(points, count, dim, centroidsT, norms, next, score);
  memory.fill(sums, 0, <usize>(16 * dim) << 3);
  memory.fill(sizes, 0, 16 << 3);
  let changed: i32 = 0;
  for (let p = 0; p < count; p++) {
    const d = <f64>load<f32>(score + (<usize>p << 2)) + load<f64>(pointNorm + (<usize>p << 3));
    store<f64>(pointDistance + (<usize>p << 3), max<f64>(0, d));
    const c = load<i32>(next + (<usize>p << 2));
    if (load<i32>(assignment + (<usize>p << 2)) != c) {
      store<i32>(assignment + (<usize>p << 2), c);
      changed = 1;
    }
    const w: f64 = weights != 0 ? <f64>load<f32>(weights + (<usize>p << 2)) : 1;
    const size = sizes + (<usize>c << 3);
    store<f64>(size, load<f64>(size) + w);
    const row = points + (<usize>(p * dim) << 2);
    const sum = sums + (<usize>(c * dim) << 3);
    for (let e = 0; e < dim; e++) {
      const at = sum + (<usize>e << 3);
      store<f64>(at, load<f64>(at) + w * <f64>load<f32>(row + (<usize>e << 2)));
    }
  }
  return changed;
}

/**
 * Greedy encoding against 16 FP16-rounded centroids (tools/quant/rvq.ts): for each point the first
 * nearest centroid by the f64 squared distance Σ (p − c)² in increasing dimension order (the
 * reference's nearestCentroid in tools/quant/kmeans.ts), written to `codes` (count i32), and the
 * point replaced by its f32 residual p − c. Each pair of centroids shares an f64x2 vector, every
 * lane its own chain in the reference's order, so the distances and the choice are the same bits.
 * `centroidsT64`: scratch of dim × 16 f64.
 */
export function nearest16(points: usize, count: i32, dim: i32, centroids: usize, centroidsT64: usize, codes: usize): void {
  for (let k = 0; k < 16; k++) {
    for (let e = 0; e < dim; e++) store<f64>(centroidsT64 + (<usize>(e * 16 + k) << 3), <f64>load<f32>(centroids + (<usize>(k * dim + e) << 2)));
  }
  for (let p = 0; p < count; p++) {
    const row = points + (<usize>(p * dim) << 2);
    let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
    let a4 = f64x2.splat(0), a5 = f64x2.splat(0), a6 = f64x2.splat(0), a7 = f64x2.splat(0);
    for (let e = 0; e < dim; e++) {
      const x = f64x2.splat(<f64>load<f32>(row + (<usize>e << 2)));
      const c = centroidsT64 + (<usize>(e * 16) << 3);
      let d = f64x2.sub(x, v128.load(c)); a0 = f64x2.add(a0, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 16)); a1 = f64x2.add(a1, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 32)); a2 = f64x2.add(a2, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 48)); a3 = f64x2.add(a3, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 64)); a4 = f64x2.add(a4, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 80)); a5 = f64x2.add(a5, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 96)); a6 = f64x2.add(a6, f64x2.mul(d, d));
      d = f64x2.sub(x, v128.load(c, 112)); a7 = f64x2.add(a7, f64x2.mul(d, d));
    }
    let m = f64x2.min(f64x2.min(f64x2.min(a0, a1), f64x2.min(a2, a3)), f64x2.min(f64x2.min(a4, a5), f64x2.min(a6, a7)));
    m = f64x2.min(m, v128.shuffle<f64>(m, m, 1, 0));
    const least = f64x2.extract_lane(m, 0);
    let best: i32 = 0;
    if (least == least) {
      const v = f64x2.splat(least);
      const mask = i64x2.bitmask(f64x2.eq(a0, v)) | (i64x2.bitmask(f64x2.eq(a1, v)) << 2) | (i64x2.bitmask(f64x2.eq(a2, v)) << 4) | (i64x2.bitmask(f64x2.eq(a3, v)) << 6)
        | (i64x2.bitmask(f64x2.eq(a4, v)) << 8) | (i64x2.bitmask(f64x2.eq(a5, v)) << 10) | (i64x2.bitmask(f64x2.eq(a6, v)) << 12) | (i64x2.bitmask(f64x2.eq(a7, v)) << 14);
      best = ctz<i32>(mask);
    } else {
      // A NaN distance (never from finite input): the reference's scan, strictly smaller replaces.
      let bestDistance = f64.POSITIVE_INFINITY;
      for (let k = 0; k < 16; k++) {
        let sum: f64 = 0;
        for (let e = 0; e < dim; e++) {
          const d = <f64>load<f32>(row + (<usize>e << 2)) - load<f64>(centroidsT64 + (<usize>(e * 16 + k) << 3));
          sum += d * d;
        }
        if (sum < bestDistance) {
          bestDistance = sum;
          best = k;
        }
      }
    }
    store<i32>(codes + (<usize>p << 2), best);
    const centroid = centroids + (<usize>(best * dim) << 2);
    for (let e = 0; e < dim; e++) store<f32>(row + (<usize>e << 2), load<f32>(row + (<usize>e << 2)) - load<f32>(centroid + (<usize>e << 2)));
  }
}
