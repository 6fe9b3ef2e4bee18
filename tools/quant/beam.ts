// Encoding sub-vectors against fixed residual codebooks: greedy (beam 1, the paper's) or beam
// search, which keeps the B best partial code sequences across levels instead of one.

/**
 * Encodes `count` vectors of dimension h against `levels` codebooks of K centroids (f32 values,
 * level-major: level l, centroid k at (l·K + k)·h), writing codes[p·levels + l].
 * Returns the total squared error of the chosen sequences, each weighted by `weights` if given.
 */
export function encodeWithBeam(
  vectors: Float32Array,
  count: number,
  h: number,
  levels: number,
  K: number,
  centroids: Float32Array,
  beam: number,
  codes: Uint8Array,
  weights: Float32Array | null = null,
): number {
  const width = Math.max(1, Math.min(beam, K ** levels));
  // Current beams: their residuals, errors and code sequences; candidates are scored before copying.
  let residuals = new Float32Array(width * h);
  let next = new Float32Array(width * h);
  let sequences = new Uint8Array(width * levels);
  let nextSequences = new Uint8Array(width * levels);
  const candidateError = new Float64Array(width * K);
  const order = new Int32Array(width * K);
  let total = 0;
  for (let p = 0; p < count; p++) {
    residuals.set(vectors.subarray(p * h, (p + 1) * h), 0);
    let alive = 1;
    for (let l = 0; l < levels; l++) {
      const base = l * K * h;
      for (let b = 0; b < alive; b++) {
        for (let k = 0; k < K; k++) {
          let err = 0;
          for (let e = 0; e < h; e++) {
            const d = Math.fround(residuals[b * h + e] - centroids[base + k * h + e]);
            err += d * d;
          }
          candidateError[b * K + k] = err;
        }
      }
      const kept = selectBest(candidateError, alive * K, width, order);
      for (let i = 0; i < kept; i++) {
        const b = Math.floor(order[i] / K);
        const k = order[i] % K;
        for (let e = 0; e < h; e++) next[i * h + e] = Math.fround(residuals[b * h + e] - centroids[base + k * h + e]);
        nextSequences.set(sequences.subarray(b * levels, b * levels + l), i * levels);
        nextSequences[i * levels + l] = k;
      }
      [residuals, next] = [next, residuals];
      [sequences, nextSequences] = [nextSequences, sequences];
      alive = kept;
    }
    // Beams stay sorted by error, so beam 0 is the best sequence.
    codes.set(sequences.subarray(0, levels), p * levels);
    let err = 0;
    for (let e = 0; e < h; e++) err += residuals[e] * residuals[e];
    total += weights === null ? err : err * weights[p];
  }
  return total;
}

/**
 * Puts the indices of the `want` smallest of scores[0, n) into order[0, …), smallest first, ties to
 * the lower index (so results never depend on sort stability). Returns how many were kept.
 */
function selectBest(scores: Float64Array, n: number, want: number, order: Int32Array): number {
  let kept = 0;
  for (let i = 0; i < n; i++) {
    const score = scores[i];
    if (kept === want && score >= scores[order[kept - 1]]) continue;
    let slot = kept < want ? kept++ : kept - 1;
    while (slot > 0 && scores[order[slot - 1]] > score) {
      order[slot] = order[slot - 1];
      slot--;
    }
    order[slot] = i;
  }
  return kept;
}
