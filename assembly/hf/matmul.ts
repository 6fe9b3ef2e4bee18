// The transformer forward's matrix product (tools/hf/matmul-kernel.ts loads it), compiled into
// build/hf-kernels.wasm (tools/dev/build-train-kernels.mjs) with SIMD and one imported shared memory, so
// every worker thread runs it on the same weights:
//
//   out[t, o] = sum over k < inDim of f32(w[o, k]) * x[t, k]     for t < rows, o0 <= o < o1
//
// w is an nn.Linear weight (outDim x inDim, row-major) in f32, f16 or bf16, widened to f32 here.
// Every sum is docs/FORMAT.md's eight-lane sum (the order tools/hf/matmul.ts documents and its
// JavaScript reference takes): two f32x4 accumulators per output element hold lanes 0-3 and 4-7,
// combined as ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)), then the last inDim mod 8 terms
// are added one at a time; products and sums rounded to f32, no fused multiply-add. `matmulScalar`
// is the twin with eight f32 locals instead of vectors; both give the reference's bits.
//
// Register tile: 1 token x 4 outputs (eight f32x4 accumulators), each x vector used four times.
// (2 x 2 and 4 x 1 tiles measured slower: V8 hoists the loads of an iteration and spills more.)
// Cache blocking: the outputs are taken in blocks whose weight rows fit in L2 (WEIGHT_BLOCK_BYTES)
// and every token runs over the whole block, so a weight row comes from memory once per call
// rather than once per token. f16 blocks are widened once into a scratch block (see matmulF16).
import { f16ToF32, widen4 } from "../kernels";

const DT_F32: i32 = 0;
const DT_F16: i32 = 1;
const DT_BF16: i32 = 2;

/** Weight bytes per output block: half of a 1 MiB L2, leaving room for two rows of x. */
const WEIGHT_BLOCK_BYTES: i32 = 512 * 1024;

// The weight's storage is a type parameter W, so that each kernel is compiled once per storage
// with no branch in its loops: f32 for f32, u16 for f16 bit patterns, i16 for bf16 bit patterns.

/** Bytes per weight of storage W. */
// @ts-ignore: decorator
@inline function elementBytes<W>(): usize {
  return isFloat<W>() ? 4 : 2;
}

/** Weights k .. k+3 of the eight at p, widened (bf16: each 16-bit pattern becomes the top half of an f32). */
// @ts-ignore: decorator
@inline function wideLo<W>(p: usize): v128 {
  if (isFloat<W>()) return v128.load(p);
  if (isSigned<W>()) return i8x16.shuffle(i32x4.splat(0), v128.load(p), 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  return widen4(v128.load16x4_u(p));
}

/** Weights k+4 .. k+7 of the eight at p, widened. */
// @ts-ignore: decorator
@inline function wideHi<W>(p: usize): v128 {
  if (isFloat<W>()) return v128.load(p, 16);
  if (isSigned<W>()) return i8x16.shuffle(i32x4.splat(0), v128.load(p), 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  return widen4(v128.load16x4_u(p + 8));
}

/** One weight at p, widened to f32. */
// @ts-ignore: decorator
@inline function wide1<W>(p: usize): f32 {
  if (isFloat<W>()) return load<f32>(p);
  const h = <u32>load<u16>(p);
  if (isSigned<W>()) return reinterpret<f32>(h << 16);
  return f16ToF32(h);
}

/** ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)) of lanes 0-3 in `a` and 4-7 in `b`. */
// @ts-ignore: decorator
@inline function combineLanes(a: v128, b: v128): f32 {
  const v = f32x4.add(a, b);
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** `sum` plus the terms k = n8 .. n - 1 (the tail after the lanes), one at a time. */
// @ts-ignore: decorator
@inline function addTail<W>(sum: f32, w: usize, x: usize, n8: i32, n: i32): f32 {
  for (let k = n8; k < n; k++) sum += wide1<W>(w + <usize>k * elementBytes<W>()) * load<f32>(x + (<usize>k << 2));
  return sum;
}

/**
 * One token at x times four consecutive weight rows from w0 (rowBytes apart) -> out at c .. c + 12.
 * The k loop is unrolled twice (sixteen terms a pass, the same lanes in the same order): V8 then
 * overlaps one pass's loads with the other's arithmetic.
 */
// @ts-ignore: decorator
@inline function tile14<W>(x: usize, w0: usize, rowBytes: usize, n: i32, c: usize): void {
  const es = elementBytes<W>();
  let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
  let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
  const w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
  const n8 = n & ~7;
  let k = 0;
  for (; k + 16 <= n8; k += 16) {
    const pw = <usize>k * es;
    const px = x + (<usize>k << 2);
    let xl = v128.load(px), xh = v128.load(px, 16);
    a0 = f32x4.add(a0, f32x4.mul(wideLo<W>(w0 + pw), xl)); b0 = f32x4.add(b0, f32x4.mul(wideHi<W>(w0 + pw), xh));
    a1 = f32x4.add(a1, f32x4.mul(wideLo<W>(w1 + pw), xl)); b1 = f32x4.add(b1, f32x4.mul(wideHi<W>(w1 + pw), xh));
    a2 = f32x4.add(a2, f32x4.mul(wideLo<W>(w2 + pw), xl)); b2 = f32x4.add(b2, f32x4.mul(wideHi<W>(w2 + pw), xh));
    a3 = f32x4.add(a3, f32x4.mul(wideLo<W>(w3 + pw), xl)); b3 = f32x4.add(b3, f32x4.mul(wideHi<W>(w3 + pw), xh));
    const pw2 = pw + 8 * es;
    xl = v128.load(px, 32);
    xh = v128.load(px, 48);
    a0 = f32x4.add(a0, f32x4.mul(wideLo<W>(w0 + pw2), xl)); b0 = f32x4.add(b0, f32x4.mul(wideHi<W>(w0 + pw2), xh));
    a1 = f32x4.add(a1, f32x4.mul(wideLo<W>(w1 + pw2), xl)); b1 = f32x4.add(b1, f32x4.mul(wideHi<W>(w1 + pw2), xh));
    a2 = f32x4.add(a2, f32x4.mul(wideLo<W>(w2 + pw2), xl)); b2 = f32x4.add(b2, f32x4.mul(wideHi<W>(w2 + pw2), xh));
    a3 = f32x4.add(a3, f32x4.mul(wideLo<W>(w3 + pw2), xl)); b3 = f32x4.add(b3, f32x4.mul(wideHi<W>(w3 + pw2), xh));
  }
  for (; k < n8; k += 8) {
    const pw = <usize>k * es;
    const px = x + (<usize>k << 2);
    const xl = v128.load(px), xh = v128.load(px, 16);
    a0 = f32x4.add(a0, f32x4.mul(wideLo<W>(w0 + pw), xl)); b0 = f32x4.add(b0, f32x4.mul(wideHi<W>(w0 + pw), xh));
    a1 = f32x4.add(a1, f32x4.mul(wideLo<W>(w1 + pw), xl)); b1 = f32x4.add(b1, f32x4.mul(wideHi<W>(w1 + pw), xh));
    a2 = f32x4.add(a2, f32x4.mul(wideLo<W>(w2 + pw), xl)); b2 = f32x4.add(b2, f32x4.mul(wideHi<W>(w2 + pw), xh));
    a3 = f32x4.add(a3, f32x4.mul(wideLo<W>(w3 + pw), xl)); b3 = f32x4.add(b3, f32x4.mul(wideHi<W>(w3 + pw), xh));
  }
  store<f32>(c, addTail<W>(combineLanes(a0, b0), w0, x, n8, n));
  store<f32>(c, addTail<W>(combineLanes(a1, b1), w1, x, n8, n), 4);
  store<f32>(c, addTail<W>(combineLanes(a2, b2), w2, x, n8, n), 8);
  store<f32>(c, addTail<W>(combineLanes(a3, b3), w3, x, n8, n), 12);
}

/** One token at x times one weight row w -> out at c. */
// @ts-ignore: decorator
@inline function tile11<W>(x: usize, w: usize, n: i32, c: usize): void {
  const es = elementBytes<W>();
  let a = f32x4.splat(0), b = f32x4.splat(0);
  const n8 = n & ~7;
  for (let k = 0; k < n8; k += 8) {
    const pw = w + <usize>k * es;
    const px = x + (<usize>k << 2);
    a = f32x4.add(a, f32x4.mul(wideLo<W>(pw), v128.load(px)));
    b = f32x4.add(b, f32x4.mul(wideHi<W>(pw), v128.load(px, 16)));
  }
  store<f32>(c, addTail<W>(combineLanes(a, b), w, x, n8, n));
}

/** Outputs per cache block: weight rows filling WEIGHT_BLOCK_BYTES, a multiple of 4, at least 4. */
function blockOutputs(rowBytes: usize): i32 {
  return max<i32>(4, <i32>(<usize>WEIGHT_BLOCK_BYTES / max<usize>(rowBytes, 1)) & ~3);
}

// @ts-ignore: decorator
@inline function matmulSimd<W>(x: usize, rows: i32, w: usize, inDim: i32, o0: i32, o1: i32, out: usize, ldo: i32): void {
  const rowBytes = <usize>inDim * elementBytes<W>();
  const xRow = <usize>inDim << 2;
  const ldo4 = <usize>ldo << 2;
  const block = blockOutputs(rowBytes);
  for (let ob = o0; ob < o1; ob += block) {
    const oe = min<i32>(o1, ob + block);
    for (let t = 0; t < rows; t++) {
      const xt = x + <usize>t * xRow;
      const ct = out + <usize>t * ldo4;
      let o = ob;
      for (; o + 4 <= oe; o += 4) tile14<W>(xt, w + <usize>o * rowBytes, rowBytes, inDim, ct + (<usize>o << 2));
      for (; o < oe; o++) tile11<W>(xt, w + <usize>o * rowBytes, inDim, ct + (<usize>o << 2));
    }
  }
}

/**
 * Outputs per cache block for weights of this width and dtype (the f16 path blocks its widened f32
 * rows): the pool cuts products into tiles of this many columns, each one block.
 */
export function blockColumns(inDim: i32, dtype: i32): i32 {
  return blockOutputs(<usize>inDim * (dtype == DT_BF16 ? 2 : 4));
}

/** Bytes of scratch `matmul` needs for f16 weights of this width (its widened block). */
export function f16ScratchBytes(inDim: i32): i32 {
  return max<i32>(WEIGHT_BLOCK_BYTES, 4 * (inDim << 2));
}

/**
 * f16 weights: each block of rows is widened once into `scratch` as f32 (exact), then multiplied
 * as f32 rows, the same bits as widening inside the loop; the f16 conversion costs ten vector
 * operations per four weights, too many to repeat for every token.
 */
function matmulF16(x: usize, rows: i32, w: usize, inDim: i32, o0: i32, o1: i32, out: usize, ldo: i32, scratch: usize): void {
  const rowBytes = <usize>inDim << 1;
  const block = blockOutputs(<usize>inDim << 2);
  for (let ob = o0; ob < o1; ob += block) {
    const oe = min<i32>(o1, ob + block);
    const from = w + <usize>ob * rowBytes;
    const count = <usize>(oe - ob) * <usize>inDim;
    let e: usize = 0;
    for (; e + 8 <= count; e += 8) {
      const v = v128.load(from + (e << 1));
      v128.store(scratch + (e << 2), widen4(i32x4.extend_low_i16x8_u(v)));
      v128.store(scratch + (e << 2), widen4(i32x4.extend_high_i16x8_u(v)), 16);
    }
    for (; e < count; e++) store<f32>(scratch + (e << 2), f16ToF32(<u32>load<u16>(from + (e << 1))));
    matmulSimd<f32>(x, rows, scratch - <usize>ob * (<usize>inDim << 2), inDim, ob, oe, out, ldo);
  }
}

/**
 * out[t * ldo + o] for t < rows, o0 <= o < o1 (addresses in bytes; x is rows x inDim f32, w the
 * whole outDim x inDim weight; dtype 0 f32, 1 f16, 2 bf16). f16 needs `scratch`: f16ScratchBytes
 * bytes of this thread's own (unused by the other dtypes).
 */
export function matmul(x: usize, rows: i32, w: usize, dtype: i32, inDim: i32, o0: i32, o1: i32, out: usize, ldo: i32, scratch: usize): void {
  if (dtype == DT_BF16) matmulSimd<i16>(x, rows, w, inDim, o0, o1, out, ldo);
  else if (dtype == DT_F16) matmulF16(x, rows, w, inDim, o0, o1, out, ldo, scratch);
  else matmulSimd<f32>(x, rows, w, inDim, o0, o1, out, ldo);
}

/** The eight-lane sum of f32(w[k]) * x[k] for k < n with eight f32 locals (the scalar twin's dot product). */
// @ts-ignore: decorator
@inline function dotScalar<W>(x: usize, w: usize, n: i32): f32 {
  const es = elementBytes<W>();
  let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0, s4: f32 = 0, s5: f32 = 0, s6: f32 = 0, s7: f32 = 0;
  const n8 = n & ~7;
  for (let k = 0; k < n8; k += 8) {
    const pw = w + <usize>k * es;
    const px = x + (<usize>k << 2);
    s0 += wide1<W>(pw) * load<f32>(px);
    s1 += wide1<W>(pw + es) * load<f32>(px, 4);
    s2 += wide1<W>(pw + 2 * es) * load<f32>(px, 8);
    s3 += wide1<W>(pw + 3 * es) * load<f32>(px, 12);
    s4 += wide1<W>(pw + 4 * es) * load<f32>(px, 16);
    s5 += wide1<W>(pw + 5 * es) * load<f32>(px, 20);
    s6 += wide1<W>(pw + 6 * es) * load<f32>(px, 24);
    s7 += wide1<W>(pw + 7 * es) * load<f32>(px, 28);
  }
  return addTail<W>(((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)), w, x, n8, n);
}

// @ts-ignore: decorator
@inline function matmulScalarOf<W>(x: usize, rows: i32, w: usize, inDim: i32, o0: i32, o1: i32, out: usize, ldo: i32): void {
  const es = elementBytes<W>();
  for (let o = o0; o < o1; o++) {
    const row = w + <usize>o * <usize>inDim * es;
    for (let t = 0; t < rows; t++) {
      store<f32>(out + ((<usize>t * <usize>ldo + <usize>o) << 2), dotScalar<W>(x + ((<usize>t * <usize>inDim) << 2), row, inDim));
    }
  }
}

/** The scalar twin of `matmul`: same arguments, same bits, no vector instruction in its loops. */
export function matmulScalar(x: usize, rows: i32, w: usize, dtype: i32, inDim: i32, o0: i32, o1: i32, out: usize, ldo: i32): void {
  if (dtype == DT_BF16) matmulScalarOf<i16>(x, rows, w, inDim, o0, o1, out, ldo);
  else if (dtype == DT_F16) matmulScalarOf<u16>(x, rows, w, inDim, o0, o1, out, ldo);
  else matmulScalarOf<f32>(x, rows, w, inDim, o0, o1, out, ldo);
}
