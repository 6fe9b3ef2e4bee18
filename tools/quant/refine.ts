// Codebook refinement: given every member's codes, solve for all L codebooks of a group jointly
// by least squares (each value dimension separately; they do not interact), instead of keeping the
// level-by-level k-means centroids.

/**
 * Returns new f32 centroids (level-major, like the input) minimising the (weighted) summed squared
 * error of the given codes. A small ridge pulls each centroid toward its previous value, which fixes the
 * sum's gauge freedom (a constant moved between levels) and keeps unused centroids where they were.
 */
export function refineCodebooks(
  vectors: Float32Array,
  count: number,
  h: number,
  levels: number,
  K: number,
  codes: Uint8Array,
  previous: Float32Array,
  weights: Float32Array | null = null,
): Float32Array {
  const size = levels * K;
  const normal = new Float64Array(size * size);
  const rhs = new Float64Array(size * h);
  const used = new Int32Array(levels);
  for (let p = 0; p < count; p++) {
    const w = weights === null ? 1 : weights[p];
    for (let a = 0; a < levels; a++) used[a] = a * K + codes[p * levels + a];
    for (let a = 0; a < levels; a++) {
      const i = used[a];
      for (let b = 0; b < levels; b++) normal[i * size + used[b]] += w;
      for (let e = 0; e < h; e++) rhs[i * h + e] += w * vectors[p * h + e];
    }
  }
  const ridge = 1e-3;
  for (let i = 0; i < size; i++) {
    normal[i * size + i] += ridge;
    for (let e = 0; e < h; e++) rhs[i * h + e] += ridge * previous[i * h + e];
  }
  choleskySolve(normal, size, rhs, h);
  return Float32Array.from(rhs);
}

/** Solves A·X = B in place (X overwrites B) for symmetric positive definite A (n × n), B n × m; A is overwritten by its factor. Also tools/quant/metric.ts's solver. */
export function choleskySolve(a: Float64Array, n: number, b: Float64Array, m: number): void {
  for (let j = 0; j < n; j++) {
    let diagonal = a[j * n + j];
    for (let k = 0; k < j; k++) diagonal -= a[j * n + k] * a[j * n + k];
    const root = Math.sqrt(Math.max(diagonal, 1e-12));
    a[j * n + j] = root;
    for (let i = j + 1; i < n; i++) {
      let sum = a[i * n + j];
      for (let k = 0; k < j; k++) sum -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = sum / root;
    }
  }
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < n; i++) {
      let sum = b[i * m + c];
      for (let k = 0; k < i; k++) sum -= a[i * n + k] * b[k * m + c];
      b[i * m + c] = sum / a[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let sum = b[i * m + c];
      for (let k = i + 1; k < n; k++) sum -= a[k * n + i] * b[k * m + c];
      b[i * m + c] = sum / a[i * n + i];
    }
  }
}
