// Decode kernels: FP16 -> f32 widening, the RVQ gather-add and the scalar-method dequantizer.
// One source, two builds: with asc --enable simd, ASC_FEATURE_SIMD is true and the v128 paths are
// compiled; without it those branches are dropped at compile time, so the scalar build contains no
// SIMD instruction at all. Both produce the same bits: f32 additions in level order from +0.0,
// then (v1.1 gain-shape) one f32 multiply by the row's scale.

/** FP16 bits -> f32, exact for every input (subnormals, infinities, NaN payloads). */
// @ts-ignore: decorator
@inline export function f16ToF32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const em = h & 0x7fff;
  let bits: u32;
  if (em >= 0x7c00) {
    bits = (em << 13) + (224 << 23); // infinity / NaN: exponent all ones
  } else if (em >= 0x0400) {
    bits = (em << 13) + (112 << 23); // normal: rebias the exponent by 127 - 15
  } else {
    bits = reinterpret<u32>(<f32>em * 5.9604644775390625e-8); // subnormal or zero: em * 2^-24, exact
  }
  return reinterpret<f32>(bits | sign);
}

/**
 * Four FP16 values (zero-extended u16 in the i32x4 lanes) -> f32x4. Normal numbers, infinities
 * and NaNs are widened with integer shifts and adds; subnormals (|x| < 2^-14) through an exact
 * int -> f32 conversion times 2^-24, chosen per lane with a bit select.
 */
// @ts-ignore: decorator
@inline function widen4(x: v128): v128 {
  const sign = i32x4.shl(v128.and(x, i32x4.splat(0x8000)), 16);
  const em = v128.and(x, i32x4.splat(0x7fff));
  let bits = i32x4.add(i32x4.shl(em, 13), i32x4.splat(112 << 23));
  const infNan = i32x4.gt_s(em, i32x4.splat(0x7bff));
  bits = i32x4.add(bits, v128.and(infNan, i32x4.splat(112 << 23)));
  const sub = i32x4.lt_s(em, i32x4.splat(0x0400));
  const subVal = f32x4.mul(f32x4.convert_i32x4_u(em), f32x4.splat(5.9604644775390625e-8));
  return v128.or(v128.bitselect(subVal, bits, sub), sign);
}

/**
 * out[e] = sum over l < levels, in level order from +0.0, of f32(entry_l[e]), for e < count.
 * `ptrs` holds `levels` u32 addresses of FP16 codebook entries (one per level, already chosen by
 * the token's codes).
 */
export function addEntries(out: usize, ptrs: usize, levels: u32, count: u32): void {
  gatherAdd(out, ptrs, levels, count, 1, false);
}

/**
 * Gain-shape (v1.1 ROW_SCALES): as addEntries, then out[e] = sum * scale, one f32 multiply per
 * value after the level sum (docs/FORMAT.md, Decoding).
 */
export function addEntriesScaled(out: usize, ptrs: usize, levels: u32, count: u32, scale: f32): void {
  gatherAdd(out, ptrs, levels, count, scale, true);
}

/** The gather-add; `scaled` is a constant at both call sites, so each gets its own loops. */
// @ts-ignore: decorator
@inline function gatherAdd(out: usize, ptrs: usize, levels: u32, count: u32, scale: f32, scaled: bool): void {
  let e: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    const scale4 = f32x4.splat(scale);
    if (levels == 2) {
      const p0 = <usize>load<u32>(ptrs);
      const p1 = <usize>load<u32>(ptrs, 4);
      for (; e + 4 <= count; e += 4) {
        const off = <usize>e << 1;
        let acc = f32x4.add(f32x4.splat(0), widen4(v128.load16x4_u(p0 + off)));
        acc = f32x4.add(acc, widen4(v128.load16x4_u(p1 + off)));
        if (scaled) acc = f32x4.mul(acc, scale4);
        v128.store(out + (<usize>e << 2), acc);
      }
    } else {
      for (; e + 4 <= count; e += 4) {
        const off = <usize>e << 1;
        let acc = f32x4.splat(0);
        for (let l: u32 = 0; l < levels; l++) {
          acc = f32x4.add(acc, widen4(v128.load16x4_u(<usize>load<u32>(ptrs + (<usize>l << 2)) + off)));
        }
        if (scaled) acc = f32x4.mul(acc, scale4);
        v128.store(out + (<usize>e << 2), acc);
      }
    }
  }
  for (; e < count; e++) {
    const off = <usize>e << 1;
    let acc: f32 = 0;
    for (let l: u32 = 0; l < levels; l++) {
      acc += f16ToF32(<u32>load<u16>(<usize>load<u32>(ptrs + (<usize>l << 2)) + off));
    }
    if (scaled) acc *= scale;
    store<f32>(out + (<usize>e << 2), acc);
  }
}

/**
 * out[e] = f32(FP16 src[e]) for e < n: an uncompressed FP16 table's lookup, the floor the bench
 * command compares the RVQ decode with. The same widening as the decode kernels (widen4 in the
 * SIMD build, eight values per 16-byte load as dotF16 does), so the comparison is like with like.
 */
export function widenRow(src: usize, out: usize, n: u32): void {
  let e: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    for (; e + 8 <= n; e += 8) {
      const v = v128.load(src + (<usize>e << 1));
      v128.store(out + (<usize>e << 2), widen4(i32x4.extend_low_i16x8_u(v)));
      v128.store(out + (<usize>e << 2), widen4(i32x4.extend_high_i16x8_u(v)), 16);
    }
  }
  for (; e < n; e++) store<f32>(out + (<usize>e << 2), f16ToF32(<u32>load<u16>(src + (<usize>e << 1))));
}

/**
 * Dequantizes one scalar-method record (int4/int3/int2): `blocks` FP16 scales, then n codes of
 * `bits` bits each, LSB-first. value j = (code_j - 2^(bits-1)) * f32(scale[j / block]).
 */
export function decodeScalarRow(rec: usize, out: usize, n: u32, block: u32, bits: u32): void {
  const blocks = (n + block - 1) / block;
  const codes = rec + (<usize>blocks << 1);
  const half = <i32>(1 << (bits - 1));
  const mask: u32 = (1 << bits) - 1;
  let j: u32 = 0;
  for (let b: u32 = 0; b < blocks; b++) {
    const scale = f16ToF32(<u32>load<u16>(rec + (<usize>b << 1)));
    let end = j + block;
    if (end > n) end = n;
    if (bits == 4) {
      for (; j < end; j++) {
        const code = (<u32>load<u8>(codes + (<usize>j >> 1)) >> ((j & 1) << 2)) & 15;
        store<f32>(out + (<usize>j << 2), <f32>(<i32>code - half) * scale);
      }
    } else if (bits == 2) {
      for (; j < end; j++) {
        const code = (<u32>load<u8>(codes + (<usize>j >> 2)) >> ((j & 3) << 1)) & 3;
        store<f32>(out + (<usize>j << 2), <f32>(<i32>code - half) * scale);
      }
    } else {
      for (; j < end; j++) {
        const k = j * bits;
        const at = codes + (<usize>k >> 3);
        const shift = k & 7;
        let v = <u32>load<u8>(at) >> shift;
        if (shift + bits > 8) v |= <u32>load<u8>(at, 1) << (8 - shift);
        store<f32>(out + (<usize>j << 2), <f32>(<i32>(v & mask) - half) * scale);
      }
    }
  }
}

// ---- The corrective adaptor's GEMV (v1.2): one output channel's dot products ----
// Sums are taken in f32 in both builds, blocked so the rounding error grows with the block and
// the block count rather than the width: the SIMD build adds the products of 16 int8 (or 8 FP16)
// weights pairwise into one f32x4 per block of 256 (128) weights, then the blocks into a total;
// the scalar build sums blocks of 64 products in four interleaved partial sums. With widths up to
// 4096 a row stays far within the 1e-5 relative difference the format allows of the reference,
// which sums in f64. The SIMD build also evaluates four tokens per pass over a weight row (each
// weight widened once, used four times); every token's sum is taken in exactly the same order as
// by the one-token kernel, so a row's bits never depend on the batch it was looked up in.

/** Horizontal sum of an f32x4. */
// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Scalar products per block of the scalar build (a multiple of 4). */
const SCALAR_BLOCK: u32 = 64;
/** SIMD weights per block: int8 and FP16. */
const SIMD_BLOCK_I8: u32 = 256;
const SIMD_BLOCK_F16: u32 = 128;

/** The SIMD int8 step: 16 weights (widened to four f32x4) times 16 values of x, summed pairwise. */
// @ts-ignore: decorator
@inline function stepI8(c0: v128, c1: v128, c2: v128, c3: v128, xp: usize): v128 {
  return f32x4.add(
    f32x4.add(f32x4.mul(c0, v128.load(xp)), f32x4.mul(c1, v128.load(xp, 16))),
    f32x4.add(f32x4.mul(c2, v128.load(xp, 32)), f32x4.mul(c3, v128.load(xp, 48))),
  );
}

/** The SIMD FP16 step: 8 weights (two f32x4) times 8 values of x, summed pairwise. */
// @ts-ignore: decorator
@inline function stepF16(f0: v128, f1: v128, xp: usize): v128 {
  return f32x4.add(f32x4.mul(f0, v128.load(xp)), f32x4.mul(f1, v128.load(xp, 16)));
}

/** sum over i < n of f32(int8 w[i]) * x[i] (x: n f32 values). */
export function dotI8(w: usize, x: usize, n: u32): f32 {
  let i: u32 = 0;
  let total: f32 = 0;
  if (ASC_FEATURE_SIMD) {
    let acc = f32x4.splat(0);
    while (i + 16 <= n) {
      let end = i + SIMD_BLOCK_I8;
      if (end > n) end = n;
      let blk = f32x4.splat(0);
      for (; i + 16 <= end; i += 16) {
        const v = v128.load(w + <usize>i);
        const lo = i16x8.extend_low_i8x16_s(v);
        const hi = i16x8.extend_high_i8x16_s(v);
        blk = f32x4.add(blk, stepI8(
          f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)),
          f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)),
          x + (<usize>i << 2),
        ));
      }
      acc = f32x4.add(acc, blk);
    }
    if (i + 8 <= n) {
      const v = v128.load8x8_s(w + <usize>i);
      acc = f32x4.add(acc, stepF16(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)), f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), x + (<usize>i << 2)));
      i += 8;
    }
    total = hsum(acc);
  } else {
    while (i + 4 <= n) {
      let end = i + SCALAR_BLOCK;
      if (end > n) end = n & ~3;
      let s0: f32 = 0;
      let s1: f32 = 0;
      let s2: f32 = 0;
      let s3: f32 = 0;
      for (; i < end; i += 4) {
        const xp = x + (<usize>i << 2);
        const wp = w + <usize>i;
        s0 += <f32>load<i8>(wp) * load<f32>(xp);
        s1 += <f32>load<i8>(wp, 1) * load<f32>(xp, 4);
        s2 += <f32>load<i8>(wp, 2) * load<f32>(xp, 8);
        s3 += <f32>load<i8>(wp, 3) * load<f32>(xp, 12);
      }
      total += (s0 + s1) + (s2 + s3);
    }
  }
  for (; i < n; i++) total += <f32>load<i8>(w + <usize>i) * load<f32>(x + (<usize>i << 2));
  return total;
}

/** sum over i < n of f32(FP16 w[i]) * x[i]. */
export function dotF16(w: usize, x: usize, n: u32): f32 {
  let i: u32 = 0;
  let total: f32 = 0;
  if (ASC_FEATURE_SIMD) {
    let acc = f32x4.splat(0);
    while (i + 8 <= n) {
      let end = i + SIMD_BLOCK_F16;
      if (end > n) end = n;
      let blk = f32x4.splat(0);
      for (; i + 8 <= end; i += 8) {
        const v = v128.load(w + (<usize>i << 1));
        blk = f32x4.add(blk, stepF16(widen4(i32x4.extend_low_i16x8_u(v)), widen4(i32x4.extend_high_i16x8_u(v)), x + (<usize>i << 2)));
      }
      acc = f32x4.add(acc, blk);
    }
    if (i + 4 <= n) {
      acc = f32x4.add(acc, f32x4.mul(widen4(v128.load16x4_u(w + (<usize>i << 1))), v128.load(x + (<usize>i << 2))));
      i += 4;
    }
    total = hsum(acc);
  } else {
    while (i + 4 <= n) {
      let end = i + SCALAR_BLOCK;
      if (end > n) end = n & ~3;
      let s0: f32 = 0;
      let s1: f32 = 0;
      let s2: f32 = 0;
      let s3: f32 = 0;
      for (; i < end; i += 4) {
        const xp = x + (<usize>i << 2);
        const wp = w + (<usize>i << 1);
        s0 += f16ToF32(<u32>load<u16>(wp)) * load<f32>(xp);
        s1 += f16ToF32(<u32>load<u16>(wp, 2)) * load<f32>(xp, 4);
        s2 += f16ToF32(<u32>load<u16>(wp, 4)) * load<f32>(xp, 8);
        s3 += f16ToF32(<u32>load<u16>(wp, 6)) * load<f32>(xp, 12);
      }
      total += (s0 + s1) + (s2 + s3);
    }
  }
  for (; i < n; i++) total += f16ToF32(<u32>load<u16>(w + (<usize>i << 1))) * load<f32>(x + (<usize>i << 2));
  return total;
}

/**
 * SIMD build: the dot products of one int8 (or FP16) weight row with four tokens' inputs at x,
 * x + stride, x + 2 stride, x + 3 stride, into the four f32 at `out`: each exactly as dotI8
 * (dotF16) computes it.
 */
export function dot4(w: usize, int8: bool, x: usize, stride: usize, n: u32, out: usize): void {
  if (!ASC_FEATURE_SIMD) return;
  const x1 = x + stride;
  const x2 = x1 + stride;
  const x3 = x2 + stride;
  let i: u32 = 0;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  if (int8) {
    while (i + 16 <= n) {
      let end = i + SIMD_BLOCK_I8;
      if (end > n) end = n;
      let b0 = f32x4.splat(0);
      let b1 = f32x4.splat(0);
      let b2 = f32x4.splat(0);
      let b3 = f32x4.splat(0);
      for (; i + 16 <= end; i += 16) {
        const v = v128.load(w + <usize>i);
        const lo = i16x8.extend_low_i8x16_s(v);
        const hi = i16x8.extend_high_i8x16_s(v);
        const c0 = f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo));
        const c1 = f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo));
        const c2 = f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi));
        const c3 = f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi));
        const off = <usize>i << 2;
        b0 = f32x4.add(b0, stepI8(c0, c1, c2, c3, x + off));
        b1 = f32x4.add(b1, stepI8(c0, c1, c2, c3, x1 + off));
        b2 = f32x4.add(b2, stepI8(c0, c1, c2, c3, x2 + off));
        b3 = f32x4.add(b3, stepI8(c0, c1, c2, c3, x3 + off));
      }
      a0 = f32x4.add(a0, b0);
      a1 = f32x4.add(a1, b1);
      a2 = f32x4.add(a2, b2);
      a3 = f32x4.add(a3, b3);
    }
    if (i + 8 <= n) {
      const v = v128.load8x8_s(w + <usize>i);
      const c0 = f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v));
      const c1 = f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v));
      const off = <usize>i << 2;
      a0 = f32x4.add(a0, stepF16(c0, c1, x + off));
      a1 = f32x4.add(a1, stepF16(c0, c1, x1 + off));
      a2 = f32x4.add(a2, stepF16(c0, c1, x2 + off));
      a3 = f32x4.add(a3, stepF16(c0, c1, x3 + off));
      i += 8;
    }
  } else {
    while (i + 8 <= n) {
      let end = i + SIMD_BLOCK_F16;
      if (end > n) end = n;
      let b0 = f32x4.splat(0);
      let b1 = f32x4.splat(0);
      let b2 = f32x4.splat(0);
      let b3 = f32x4.splat(0);
      for (; i + 8 <= end; i += 8) {
        const v = v128.load(w + (<usize>i << 1));
        const f0 = widen4(i32x4.extend_low_i16x8_u(v));
        const f1 = widen4(i32x4.extend_high_i16x8_u(v));
        const off = <usize>i << 2;
        b0 = f32x4.add(b0, stepF16(f0, f1, x + off));
        b1 = f32x4.add(b1, stepF16(f0, f1, x1 + off));
        b2 = f32x4.add(b2, stepF16(f0, f1, x2 + off));
        b3 = f32x4.add(b3, stepF16(f0, f1, x3 + off));
      }
      a0 = f32x4.add(a0, b0);
      a1 = f32x4.add(a1, b1);
      a2 = f32x4.add(a2, b2);
      a3 = f32x4.add(a3, b3);
    }
    if (i + 4 <= n) {
      const f = widen4(v128.load16x4_u(w + (<usize>i << 1)));
      const off = <usize>i << 2;
      a0 = f32x4.add(a0, f32x4.mul(f, v128.load(x + off)));
      a1 = f32x4.add(a1, f32x4.mul(f, v128.load(x1 + off)));
      a2 = f32x4.add(a2, f32x4.mul(f, v128.load(x2 + off)));
      a3 = f32x4.add(a3, f32x4.mul(f, v128.load(x3 + off)));
      i += 4;
    }
  }
  let t0 = hsum(a0);
  let t1 = hsum(a1);
  let t2 = hsum(a2);
  let t3 = hsum(a3);
  for (; i < n; i++) {
    const wi: f32 = int8 ? <f32>load<i8>(w + <usize>i) : f16ToF32(<u32>load<u16>(w + (<usize>i << 1)));
    const off = <usize>i << 2;
    t0 += wi * load<f32>(x + off);
    t1 += wi * load<f32>(x1 + off);
    t2 += wi * load<f32>(x2 + off);
    t3 += wi * load<f32>(x3 + off);
  }
  store<f32>(out, t0);
  store<f32>(out, t1, 4);
  store<f32>(out, t2, 8);
  store<f32>(out, t3, 12);
}

/** sum over i < n of the f32 values at p, blocked as the scalar dot products. */
export function sumF32(p: usize, n: u32): f32 {
  let i: u32 = 0;
  let total: f32 = 0;
  while (i + 4 <= n) {
    let end = i + SCALAR_BLOCK;
    if (end > n) end = n & ~3;
    let s0: f32 = 0;
    let s1: f32 = 0;
    let s2: f32 = 0;
    let s3: f32 = 0;
    for (; i < end; i += 4) {
      const q = p + (<usize>i << 2);
      s0 += load<f32>(q);
      s1 += load<f32>(q, 4);
      s2 += load<f32>(q, 8);
      s3 += load<f32>(q, 12);
    }
    total += (s0 + s1) + (s2 + s3);
  }
  for (; i < n; i++) total += load<f32>(p + (<usize>i << 2));
  return total;
}

/** sum over i < n of (p[i] - mean)^2, blocked as sumF32. */
export function sumSquaredDeviations(p: usize, n: u32, mean: f32): f32 {
  let i: u32 = 0;
  let total: f32 = 0;
  while (i + 4 <= n) {
    let end = i + SCALAR_BLOCK;
    if (end > n) end = n & ~3;
    let s0: f32 = 0;
    let s1: f32 = 0;
    let s2: f32 = 0;
    let s3: f32 = 0;
    for (; i < end; i += 4) {
      const q = p + (<usize>i << 2);
      const d0 = load<f32>(q) - mean;
      const d1 = load<f32>(q, 4) - mean;
      const d2 = load<f32>(q, 8) - mean;
      const d3 = load<f32>(q, 12) - mean;
      s0 += d0 * d0;
      s1 += d1 * d1;
      s2 += d2 * d2;
      s3 += d3 * d3;
    }
    total += (s0 + s1) + (s2 + s3);
  }
  for (; i < n; i++) {
    const d = load<f32>(p + (<usize>i << 2)) - mean;
    total += d * d;
  }
  return total;
}
