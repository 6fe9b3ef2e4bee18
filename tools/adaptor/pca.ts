// The adaptor table's starting point (tools/adaptor/train.ts): sigma0 from the residual's top-m0
// principal directions, found by subspace iteration on the products' kernel.
import { createRandom, deriveSeed, gaussian, permutation } from "../random.ts";
import { heapFloats, TrainHeap, type GemmJob } from "./kernels.ts";
import type { TrainState } from "./train-state.ts";

/**
 * sigma0 from the residual's top-m0 principal directions: subspace iteration on the second
 * moment of up to 8192 rows (a seeded sample), then each token's coordinates, scaled to unit
 * variance per coordinate. The table then starts out as the best linear code of each row.
 */
export function initTablePca(state: TrainState, seed: number): void {
  const { residual, f, m0, rows } = state;
  const n = residual.cols;
  const sampleRows = Math.min(rows, 8192);
  const random = createRandom(deriveSeed(seed, 0xada, 3));
  const picks = new Int32Array(sampleRows);
  if (sampleRows === rows) for (let i = 0; i < rows; i++) picks[i] = i;
  else {
    const order = permutation(rows, random);
    picks.set(order.subarray(0, sampleRows));
    picks.sort();
  }
  const scratch = new TrainHeap(heapFloats([sampleRows * n, n * n, n * m0 * 2, 1024 * n, 1024 * m0]), state.heap.simd);
  const s = scratch.alloc(sampleRows * n);
  const cov = scratch.alloc(n * n);
  const q = scratch.alloc(n * m0);
  const q2 = scratch.alloc(n * m0);
  const chunk = scratch.alloc(1024 * n);
  const codes = scratch.alloc(1024 * m0);
  const inv = 1 / state.sigma;
  for (let r = 0; r < sampleRows; r++) {
    const from = picks[r] * n;
    for (let e = 0; e < n; e++) scratch.f32[s + r * n + e] = residual.data[from + e] * inv;
  }
  const run = (j: GemmJob) => {
    scratch.gemm(j);
    state.flops += 2 * j.m * j.n * j.k;
  };
  run({ a: s, sai: 1, sak: n, b: s, ldb: n, c: cov, ldc: n, m: n, n, k: sampleRows, accumulate: false });
  const qf = scratch.f32;
  for (let i = 0; i < n * m0; i++) qf[q + i] = gaussian(random);
  orthonormalize(qf, q, n, m0);
  for (let iter = 0; iter < 30; iter++) {
    run({ a: cov, sai: n, sak: 1, b: q, ldb: m0, c: q2, ldc: m0, m: n, n: m0, k: n, accumulate: false });
    qf.copyWithin(q, q2, q2 + n * m0);
    orthonormalize(qf, q, n, m0);
  }
  // Codes of every row, chunk by chunk: table = (R / sigma) · Q, then unit variance per column.
  const sumSq = new Float64Array(m0);
  for (let r0 = 0; r0 < rows; r0 += 1024) {
    const count = Math.min(1024, rows - r0);
    for (let r = 0; r < count; r++) {
      const from = (r0 + r) * n;
      for (let e = 0; e < n; e++) qf[chunk + r * n + e] = residual.data[from + e] * inv;
    }
    run({ a: chunk, sai: n, sak: 1, b: q, ldb: m0, c: codes, ldc: m0, m: count, n: m0, k: n, accumulate: false });
    for (let i = 0; i < count * m0; i++) {
      f[state.table + r0 * m0 + i] = qf[codes + i];
      sumSq[i % m0] += qf[codes + i] * qf[codes + i];
    }
  }
  for (let c = 0; c < m0; c++) {
    const scale = sumSq[c] > 0 ? 1 / Math.sqrt(sumSq[c] / rows) : 1;
    for (let r = 0; r < rows; r++) f[state.table + r * m0 + c] *= scale;
  }
}

/** Gram–Schmidt (twice) on the `cols` columns of an n × cols row-major block, in f64. */
function orthonormalize(f: Float32Array, at: number, n: number, cols: number): void {
  const col = Array.from({ length: cols }, (_, c) => Float64Array.from({ length: n }, (_, e) => f[at + e * cols + c]));
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 0; c < cols; c++) {
      for (let p = 0; p < c; p++) {
        let dot = 0;
        for (let e = 0; e < n; e++) dot += col[c][e] * col[p][e];
        for (let e = 0; e < n; e++) col[c][e] -= dot * col[p][e];
      }
      let norm = 0;
      for (let e = 0; e < n; e++) norm += col[c][e] * col[c][e];
      norm = Math.sqrt(norm);
      for (let e = 0; e < n; e++) col[c][e] = norm > 1e-30 ? col[c][e] / norm : e === c % n ? 1 : 0;
    }
  }
  for (let c = 0; c < cols; c++) for (let e = 0; e < n; e++) f[at + e * cols + c] = col[c][e];
}
