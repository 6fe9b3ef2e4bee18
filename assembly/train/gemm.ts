// Matrix-product kernels for the adaptor trainer (tools/adaptor/kernels.ts), compiled separately
// from the device runtime into build/train-kernels.wasm (tools/dev/build-train-kernels.mjs). The module
// imports one shared memory, so every worker thread runs these on the same buffers.
//
// One kernel covers the three products of a training step:
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum over k = 0 .. K-1 of A(i, k) * B[k, j]
// with A(i, k) at a + 4 (i * sai + k * sak) (sak = 1: A row-major; sai = 1: A transposed), B and C
// row-major (ldb, ldc floats per row). Each C element is one accumulator that adds the f32 products
// in order of increasing k, with no fused multiply-add: exactly what the scalar reference
// (gemmScalar in tools/adaptor/kernels.ts) does, so both give the same bits, and so does any split of
// C into tiles across threads.
//
// Register tile: 4 rows x 8 columns (eight f32x4 accumulators); the B row segment is loaded once
// per k and each A value is broadcast with one load32_splat.

export function gemm(a: usize, sai: i32, sak: i32, b: usize, ldb: i32, c: usize, ldc: i32, m: i32, n: i32, k: i32, accumulate: i32): void {
  const sai4 = <usize>sai << 2;
  const sak4 = <usize>sak << 2;
  const ldb4 = <usize>ldb << 2;
  const ldc4 = <usize>ldc << 2;
  let j = 0;
  for (; j + 8 <= n; j += 8) {
    let i = 0;
    for (; i + 4 <= m; i += 4) {
      const c0 = c + <usize>i * ldc4 + (<usize>j << 2);
      const c1 = c0 + ldc4;
      const c2 = c1 + ldc4;
      const c3 = c2 + ldc4;
      let x00 = f32x4.splat(0), x01 = f32x4.splat(0);
      let x10 = f32x4.splat(0), x11 = f32x4.splat(0);
      let x20 = f32x4.splat(0), x21 = f32x4.splat(0);
      let x30 = f32x4.splat(0), x31 = f32x4.splat(0);
      if (accumulate) {
        x00 = v128.load(c0); x01 = v128.load(c0, 16);
        x10 = v128.load(c1); x11 = v128.load(c1, 16);
        x20 = v128.load(c2); x21 = v128.load(c2, 16);
        x30 = v128.load(c3); x31 = v128.load(c3, 16);
      }
      let pa = a + <usize>i * sai4;
      let pb = b + (<usize>j << 2);
      for (let kk = 0; kk < k; kk++) {
        const b0 = v128.load(pb);
        const b1 = v128.load(pb, 16);
        const a0 = v128.load32_splat(pa);
        const a1 = v128.load32_splat(pa + sai4);
        const a2 = v128.load32_splat(pa + 2 * sai4);
        const a3 = v128.load32_splat(pa + 3 * sai4);
        x00 = f32x4.add(x00, f32x4.mul(a0, b0)); x01 = f32x4.add(x01, f32x4.mul(a0, b1));
        x10 = f32x4.add(x10, f32x4.mul(a1, b0)); x11 = f32x4.add(x11, f32x4.mul(a1, b1));
        x20 = f32x4.add(x20, f32x4.mul(a2, b0)); x21 = f32x4.add(x21, f32x4.mul(a2, b1));
        x30 = f32x4.add(x30, f32x4.mul(a3, b0)); x31 = f32x4.add(x31, f32x4.mul(a3, b1));
        pa += sak4;
        pb += ldb4;
      }
      v128.store(c0, x00); v128.store(c0, x01, 16);
      v128.store(c1, x10); v128.store(c1, x11, 16);
      v128.store(c2, x20); v128.store(c2, x21, 16);
      v128.store(c3, x30); v128.store(c3, x31, 16);
    }
    for (; i < m; i++) {
      const c0 = c + <usize>i * ldc4 + (<usize>j << 2);
      let x0 = f32x4.splat(0), x1 = f32x4.splat(0);
      if (accumulate) {
        x0 = v128.load(c0); x1 = v128.load(c0, 16);
      }
      let pa = a + <usize>i * sai4;
      let pb = b + (<usize>j << 2);
      for (let kk = 0; kk < k; kk++) {
        const a0 = v128.load32_splat(pa);
        x0 = f32x4.add(x0, f32x4.mul(a0, v128.load(pb)));
        x1 = f32x4.add(x1, f32x4.mul(a0, v128.load(pb, 16)));
        pa += sak4;
        pb += ldb4;
      }
      v128.store(c0, x0); v128.store(c0, x1, 16);
    }
  }
  for (; j + 4 <= n; j += 4) {
    for (let i = 0; i < m; i++) {
      const c0 = c + <usize>i * ldc4 + (<usize>j << 2);
      let x0 = accumulate ? v128.load(c0) : f32x4.splat(0);
      let pa = a + <usize>i * sai4;
      let pb = b + (<usize>j << 2);
      for (let kk = 0; kk < k; kk++) {
        x0 = f32x4.add(x0, f32x4.mul(v128.load32_splat(pa), v128.load(pb)));
        pa += sak4;
        pb += ldb4;
      }
      v128.store(c0, x0);
    }
  }
  for (; j < n; j++) {
    for (let i = 0; i < m; i++) {
      const c0 = c + <usize>i * ldc4 + (<usize>j << 2);
      let x: f32 = accumulate ? load<f32>(c0) : 0;
      let pa = a + <usize>i * sai4;
      let pb = b + (<usize>j << 2);
      for (let kk = 0; kk < k; kk++) {
        x += load<f32>(pa) * load<f32>(pb);
        pa += sak4;
        pb += ldb4;
      }
      store<f32>(c0, x);
    }
  }
}
