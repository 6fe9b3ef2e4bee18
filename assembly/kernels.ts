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
@inline export function widen4(x: v128): v128 {
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

/**
 * Two levels (the paper's L = 2), SIMD: out[e] = (0 + f32(p0[e])) + f32(p1[e]) (times the scale)
 * for the whole groups of four values of e < count; returns how many values it did.
 */
// @ts-ignore: decorator
@inline function addPairSimd(out: usize, p0: usize, p1: usize, count: u32, scale4: v128, scaled: bool): u32 {
  let e: u32 = 0;
  for (; e + 4 <= count; e += 4) {
    const off = <usize>e << 1;
    let acc = f32x4.add(f32x4.splat(0), widen4(v128.load16x4_u(p0 + off)));
    acc = f32x4.add(acc, widen4(v128.load16x4_u(p1 + off)));
    if (scaled) acc = f32x4.mul(acc, scale4);
    v128.store(out + (<usize>e << 2), acc);
  }
  return e;
}

/**
 * The decode's common case, SIMD build, no row scale: two levels and a sub-vector a multiple of 4
 * long, the entries' addresses passed directly (as addEntries with levels 2, without the pointer
 * table and the general loops around it: the per-sub-vector overhead is a third of a decode).
 */
export function addEntryPair(out: usize, p0: usize, p1: usize, count: u32): void {
  let e: u32 = 0;
  if (ASC_FEATURE_SIMD) e = addPairSimd(out, p0, p1, count, f32x4.splat(1), false);
  for (; e < count; e++) {
    const off = <usize>e << 1;
    store<f32>(out + (<usize>e << 2), (<f32>0 + f16ToF32(<u32>load<u16>(p0 + off))) + f16ToF32(<u32>load<u16>(p1 + off)));
  }
}

/** The gather-add; `scaled` is a constant at both call sites, so each gets its own loops. */
// @ts-ignore: decorator
@inline function gatherAdd(out: usize, ptrs: usize, levels: u32, count: u32, scale: f32, scaled: bool): void {
  let e: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    const scale4 = f32x4.splat(scale);
    if (levels == 2) {
      e = addPairSimd(out, <usize>load<u32>(ptrs), <usize>load<u32>(ptrs, 4), count, scale4, scaled);
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

// ---- The same sums over codebooks widened to f32 once at open (resident mode, where the budget
// holds them). Widening is exact, so the sums, taken in the same order from +0.0, are the same bits.

/** addEntries over f32 entries. */
export function addEntriesF32(out: usize, ptrs: usize, levels: u32, count: u32): void {
  gatherAddF32(out, ptrs, levels, count, 1, false);
}

/** addEntriesScaled over f32 entries. */
export function addEntriesScaledF32(out: usize, ptrs: usize, levels: u32, count: u32, scale: f32): void {
  gatherAddF32(out, ptrs, levels, count, scale, true);
}

/** Two levels over f32 entries: out[e] = (0 + p0[e]) + p1[e], e < count. Inlined: it runs per sub-vector. */
// @ts-ignore: decorator
@inline export function addEntryPairF32(out: usize, p0: usize, p1: usize, count: u32): void {
  let e: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    for (; e + 4 <= count; e += 4) {
      const off = <usize>e << 2;
      v128.store(out + off, f32x4.add(f32x4.add(f32x4.splat(0), v128.load(p0 + off)), v128.load(p1 + off)));
    }
  }
  for (; e < count; e++) {
    const off = <usize>e << 2;
    store<f32>(out + off, (<f32>0 + load<f32>(p0 + off)) + load<f32>(p1 + off));
  }
}

// @ts-ignore: decorator
@inline function gatherAddF32(out: usize, ptrs: usize, levels: u32, count: u32, scale: f32, scaled: bool): void {
  let e: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    const scale4 = f32x4.splat(scale);
    for (; e + 4 <= count; e += 4) {
      const off = <usize>e << 2;
      let acc = f32x4.splat(0);
      for (let l: u32 = 0; l < levels; l++) acc = f32x4.add(acc, v128.load(<usize>load<u32>(ptrs + (<usize>l << 2)) + off));
      if (scaled) acc = f32x4.mul(acc, scale4);
      v128.store(out + off, acc);
    }
  }
  for (; e < count; e++) {
    const off = <usize>e << 2;
    let acc: f32 = 0;
    for (let l: u32 = 0; l < levels; l++) acc += load<f32>(<usize>load<u32>(ptrs + (<usize>l << 2)) + off);
    if (scaled) acc *= scale;
    store<f32>(out + off, acc);
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
// Every sum of the adaptor is taken in f32 in one fixed order, docs/FORMAT.md's "eight-lane sum",
// so the SIMD build, the scalar build and the TypeScript reference (tools/adaptor/forward.ts)
// give the same bits, even where the terms cancel: term i goes to lane i mod 8 for
// i < 8 * floor(n / 8), each lane adding its terms in increasing order from +0; the lanes are
// combined as ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)); the last n mod 8 terms are then
// added one at a time. In the SIMD build the lanes are two f32x4 accumulators (lanes 0-3, 4-7),
// two independent chains; the four-token kernel keeps two per token, and each weight is widened
// once and used four times.

/** ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)) of lanes 0-3 in `a` and 4-7 in `b`. */
// @ts-ignore: decorator
@inline function combineLanes(a: v128, b: v128): f32 {
  const v = f32x4.add(a, b);
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Scalar twin of combineLanes. */
// @ts-ignore: decorator
@inline function combine8(s0: f32, s1: f32, s2: f32, s3: f32, s4: f32, s5: f32, s6: f32, s7: f32): f32 {
  return ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7));
}

/** Four sign-extended int8 lanes (quarter q of a 16-byte load, already widened to i16x8) -> f32x4. */
// @ts-ignore: decorator
@inline function i16LowToF32(v: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v));
}

// @ts-ignore: decorator
@inline function i16HighToF32(v: v128): v128 {
  return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v));
}

/** f32(weight i) for an int8 or FP16 weight row. */
// @ts-ignore: decorator
@inline function weightAt(w: usize, int8: bool, i: u32): f32 {
  return int8 ? <f32>load<i8>(w + <usize>i) : f16ToF32(<u32>load<u16>(w + (<usize>i << 1)));
}

/** The scalar build's eight lanes over i < 8 * floor(n / 8), combined; the tail is the caller's. */
// @ts-ignore: decorator
@inline function dotLanesScalar(w: usize, int8: bool, x: usize, n: u32): f32 {
  let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0, s4: f32 = 0, s5: f32 = 0, s6: f32 = 0, s7: f32 = 0;
  for (let i: u32 = 0; i + 8 <= n; i += 8) {
    const xp = x + (<usize>i << 2);
    s0 += weightAt(w, int8, i) * load<f32>(xp);
    s1 += weightAt(w, int8, i + 1) * load<f32>(xp, 4);
    s2 += weightAt(w, int8, i + 2) * load<f32>(xp, 8);
    s3 += weightAt(w, int8, i + 3) * load<f32>(xp, 12);
    s4 += weightAt(w, int8, i + 4) * load<f32>(xp, 16);
    s5 += weightAt(w, int8, i + 5) * load<f32>(xp, 20);
    s6 += weightAt(w, int8, i + 6) * load<f32>(xp, 24);
    s7 += weightAt(w, int8, i + 7) * load<f32>(xp, 28);
  }
  return combine8(s0, s1, s2, s3, s4, s5, s6, s7);
}

/** The SIMD build's eight lanes (two f32x4) over i < 8 * floor(n / 8), combined. */
// @ts-ignore: decorator
@inline function dotLanesSimd(w: usize, int8: bool, x: usize, n: u32): f32 {
  let a = f32x4.splat(0);
  let b = f32x4.splat(0);
  let i: u32 = 0;
  if (int8) {
    for (; i + 16 <= n; i += 16) {
      const v = v128.load(w + <usize>i);
      const lo = i16x8.extend_low_i8x16_s(v);
      const hi = i16x8.extend_high_i8x16_s(v);
      const xp = x + (<usize>i << 2);
      a = f32x4.add(a, f32x4.mul(i16LowToF32(lo), v128.load(xp)));
      b = f32x4.add(b, f32x4.mul(i16HighToF32(lo), v128.load(xp, 16)));
      a = f32x4.add(a, f32x4.mul(i16LowToF32(hi), v128.load(xp, 32)));
      b = f32x4.add(b, f32x4.mul(i16HighToF32(hi), v128.load(xp, 48)));
    }
    if (i + 8 <= n) {
      const v = v128.load8x8_s(w + <usize>i);
      const xp = x + (<usize>i << 2);
      a = f32x4.add(a, f32x4.mul(i16LowToF32(v), v128.load(xp)));
      b = f32x4.add(b, f32x4.mul(i16HighToF32(v), v128.load(xp, 16)));
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const v = v128.load(w + (<usize>i << 1));
      const xp = x + (<usize>i << 2);
      a = f32x4.add(a, f32x4.mul(widen4(i32x4.extend_low_i16x8_u(v)), v128.load(xp)));
      b = f32x4.add(b, f32x4.mul(widen4(i32x4.extend_high_i16x8_u(v)), v128.load(xp, 16)));
    }
  }
  return combineLanes(a, b);
}

/** The eight-lane dot product of an int8 or FP16 weight row with n f32 values at x. */
// @ts-ignore: decorator
@inline function dotRow(w: usize, int8: bool, x: usize, n: u32): f32 {
  let total = ASC_FEATURE_SIMD ? dotLanesSimd(w, int8, x, n) : dotLanesScalar(w, int8, x, n);
  for (let i = n & ~7; i < n; i++) total += weightAt(w, int8, i) * load<f32>(x + (<usize>i << 2));
  return total;
}

/** sum over i < n of f32(int8 w[i]) * x[i] (x: n f32 values), in the eight-lane order. */
export function dotI8(w: usize, x: usize, n: u32): f32 {
  return dotRow(w, true, x, n);
}

/** sum over i < n of f32(FP16 w[i]) * x[i], in the eight-lane order. */
export function dotF16(w: usize, x: usize, n: u32): f32 {
  return dotRow(w, false, x, n);
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
  let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
  let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
  if (int8) {
    for (; i + 16 <= n; i += 16) {
      const v = v128.load(w + <usize>i);
      const lo = i16x8.extend_low_i8x16_s(v);
      const hi = i16x8.extend_high_i8x16_s(v);
      const c0 = i16LowToF32(lo);
      const c1 = i16HighToF32(lo);
      const c2 = i16LowToF32(hi);
      const c3 = i16HighToF32(hi);
      const off = <usize>i << 2;
      a0 = f32x4.add(f32x4.add(a0, f32x4.mul(c0, v128.load(x + off))), f32x4.mul(c2, v128.load(x + off, 32)));
      b0 = f32x4.add(f32x4.add(b0, f32x4.mul(c1, v128.load(x + off, 16))), f32x4.mul(c3, v128.load(x + off, 48)));
      a1 = f32x4.add(f32x4.add(a1, f32x4.mul(c0, v128.load(x1 + off))), f32x4.mul(c2, v128.load(x1 + off, 32)));
      b1 = f32x4.add(f32x4.add(b1, f32x4.mul(c1, v128.load(x1 + off, 16))), f32x4.mul(c3, v128.load(x1 + off, 48)));
      a2 = f32x4.add(f32x4.add(a2, f32x4.mul(c0, v128.load(x2 + off))), f32x4.mul(c2, v128.load(x2 + off, 32)));
      b2 = f32x4.add(f32x4.add(b2, f32x4.mul(c1, v128.load(x2 + off, 16))), f32x4.mul(c3, v128.load(x2 + off, 48)));
      a3 = f32x4.add(f32x4.add(a3, f32x4.mul(c0, v128.load(x3 + off))), f32x4.mul(c2, v128.load(x3 + off, 32)));
      b3 = f32x4.add(f32x4.add(b3, f32x4.mul(c1, v128.load(x3 + off, 16))), f32x4.mul(c3, v128.load(x3 + off, 48)));
    }
    if (i + 8 <= n) {
      const v = v128.load8x8_s(w + <usize>i);
      const c0 = i16LowToF32(v);
      const c1 = i16HighToF32(v);
      const off = <usize>i << 2;
      a0 = f32x4.add(a0, f32x4.mul(c0, v128.load(x + off)));
      b0 = f32x4.add(b0, f32x4.mul(c1, v128.load(x + off, 16)));
      a1 = f32x4.add(a1, f32x4.mul(c0, v128.load(x1 + off)));
      b1 = f32x4.add(b1, f32x4.mul(c1, v128.load(x1 + off, 16)));
      a2 = f32x4.add(a2, f32x4.mul(c0, v128.load(x2 + off)));
      b2 = f32x4.add(b2, f32x4.mul(c1, v128.load(x2 + off, 16)));
      a3 = f32x4.add(a3, f32x4.mul(c0, v128.load(x3 + off)));
      b3 = f32x4.add(b3, f32x4.mul(c1, v128.load(x3 + off, 16)));
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const v = v128.load(w + (<usize>i << 1));
      const f0 = widen4(i32x4.extend_low_i16x8_u(v));
      const f1 = widen4(i32x4.extend_high_i16x8_u(v));
      const off = <usize>i << 2;
      a0 = f32x4.add(a0, f32x4.mul(f0, v128.load(x + off)));
      b0 = f32x4.add(b0, f32x4.mul(f1, v128.load(x + off, 16)));
      a1 = f32x4.add(a1, f32x4.mul(f0, v128.load(x1 + off)));
      b1 = f32x4.add(b1, f32x4.mul(f1, v128.load(x1 + off, 16)));
      a2 = f32x4.add(a2, f32x4.mul(f0, v128.load(x2 + off)));
      b2 = f32x4.add(b2, f32x4.mul(f1, v128.load(x2 + off, 16)));
      a3 = f32x4.add(a3, f32x4.mul(f0, v128.load(x3 + off)));
      b3 = f32x4.add(b3, f32x4.mul(f1, v128.load(x3 + off, 16)));
    }
  }
  let t0 = combineLanes(a0, b0);
  let t1 = combineLanes(a1, b1);
  let t2 = combineLanes(a2, b2);
  let t3 = combineLanes(a3, b3);
  for (i = n & ~7; i < n; i++) {
    const wi = weightAt(w, int8, i);
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

/**
 * SIMD build: the dot products of four int8 (or FP16) weight rows, `rowBytes` apart from w, with
 * one token's inputs at x, into the four f32 at `out`: each exactly as dotI8 (dotF16) computes
 * it. One row's eight lanes are two chains of dependent adds, so a lone row waits on add latency;
 * four rows give eight independent chains and share each load of x.
 */
export function dotRows4(w: usize, rowBytes: usize, int8: bool, x: usize, n: u32, out: usize): void {
  if (!ASC_FEATURE_SIMD) return;
  const w1 = w + rowBytes;
  const w2 = w1 + rowBytes;
  const w3 = w2 + rowBytes;
  let i: u32 = 0;
  let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
  let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
  if (int8) {
    for (; i + 16 <= n; i += 16) {
      const xp = x + (<usize>i << 2);
      const x0 = v128.load(xp);
      const x1 = v128.load(xp, 16);
      const x2 = v128.load(xp, 32);
      const x3 = v128.load(xp, 48);
      let v = v128.load(w + <usize>i);
      let lo = i16x8.extend_low_i8x16_s(v);
      let hi = i16x8.extend_high_i8x16_s(v);
      a0 = f32x4.add(f32x4.add(a0, f32x4.mul(i16LowToF32(lo), x0)), f32x4.mul(i16LowToF32(hi), x2));
      b0 = f32x4.add(f32x4.add(b0, f32x4.mul(i16HighToF32(lo), x1)), f32x4.mul(i16HighToF32(hi), x3));
      v = v128.load(w1 + <usize>i);
      lo = i16x8.extend_low_i8x16_s(v);
      hi = i16x8.extend_high_i8x16_s(v);
      a1 = f32x4.add(f32x4.add(a1, f32x4.mul(i16LowToF32(lo), x0)), f32x4.mul(i16LowToF32(hi), x2));
      b1 = f32x4.add(f32x4.add(b1, f32x4.mul(i16HighToF32(lo), x1)), f32x4.mul(i16HighToF32(hi), x3));
      v = v128.load(w2 + <usize>i);
      lo = i16x8.extend_low_i8x16_s(v);
      hi = i16x8.extend_high_i8x16_s(v);
      a2 = f32x4.add(f32x4.add(a2, f32x4.mul(i16LowToF32(lo), x0)), f32x4.mul(i16LowToF32(hi), x2));
      b2 = f32x4.add(f32x4.add(b2, f32x4.mul(i16HighToF32(lo), x1)), f32x4.mul(i16HighToF32(hi), x3));
      v = v128.load(w3 + <usize>i);
      lo = i16x8.extend_low_i8x16_s(v);
      hi = i16x8.extend_high_i8x16_s(v);
      a3 = f32x4.add(f32x4.add(a3, f32x4.mul(i16LowToF32(lo), x0)), f32x4.mul(i16LowToF32(hi), x2));
      b3 = f32x4.add(f32x4.add(b3, f32x4.mul(i16HighToF32(lo), x1)), f32x4.mul(i16HighToF32(hi), x3));
    }
    if (i + 8 <= n) {
      const xp = x + (<usize>i << 2);
      const x0 = v128.load(xp);
      const x1 = v128.load(xp, 16);
      let v = v128.load8x8_s(w + <usize>i);
      a0 = f32x4.add(a0, f32x4.mul(i16LowToF32(v), x0));
      b0 = f32x4.add(b0, f32x4.mul(i16HighToF32(v), x1));
      v = v128.load8x8_s(w1 + <usize>i);
      a1 = f32x4.add(a1, f32x4.mul(i16LowToF32(v), x0));
      b1 = f32x4.add(b1, f32x4.mul(i16HighToF32(v), x1));
      v = v128.load8x8_s(w2 + <usize>i);
      a2 = f32x4.add(a2, f32x4.mul(i16LowToF32(v), x0));
      b2 = f32x4.add(b2, f32x4.mul(i16HighToF32(v), x1));
      v = v128.load8x8_s(w3 + <usize>i);
      a3 = f32x4.add(a3, f32x4.mul(i16LowToF32(v), x0));
      b3 = f32x4.add(b3, f32x4.mul(i16HighToF32(v), x1));
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const xp = x + (<usize>i << 2);
      const x0 = v128.load(xp);
      const x1 = v128.load(xp, 16);
      const off = <usize>i << 1;
      let v = v128.load(w + off);
      a0 = f32x4.add(a0, f32x4.mul(widen4(i32x4.extend_low_i16x8_u(v)), x0));
      b0 = f32x4.add(b0, f32x4.mul(widen4(i32x4.extend_high_i16x8_u(v)), x1));
      v = v128.load(w1 + off);
      a1 = f32x4.add(a1, f32x4.mul(widen4(i32x4.extend_low_i16x8_u(v)), x0));
      b1 = f32x4.add(b1, f32x4.mul(widen4(i32x4.extend_high_i16x8_u(v)), x1));
      v = v128.load(w2 + off);
      a2 = f32x4.add(a2, f32x4.mul(widen4(i32x4.extend_low_i16x8_u(v)), x0));
      b2 = f32x4.add(b2, f32x4.mul(widen4(i32x4.extend_high_i16x8_u(v)), x1));
      v = v128.load(w3 + off);
      a3 = f32x4.add(a3, f32x4.mul(widen4(i32x4.extend_low_i16x8_u(v)), x0));
      b3 = f32x4.add(b3, f32x4.mul(widen4(i32x4.extend_high_i16x8_u(v)), x1));
    }
  }
  let t0 = combineLanes(a0, b0);
  let t1 = combineLanes(a1, b1);
  let t2 = combineLanes(a2, b2);
  let t3 = combineLanes(a3, b3);
  for (i = n & ~7; i < n; i++) {
    const xi = load<f32>(x + (<usize>i << 2));
    t0 += weightAt(w, int8, i) * xi;
    t1 += weightAt(w1, int8, i) * xi;
    t2 += weightAt(w2, int8, i) * xi;
    t3 += weightAt(w3, int8, i) * xi;
  }
  store<f32>(out, t0);
  store<f32>(out, t1, 4);
  store<f32>(out, t2, 8);
  store<f32>(out, t3, 12);
}

/**
 * SIMD build: four consecutive output channels of one token finished from their dot products at
 * `dots`: times their int8 scales (FP16 at `scales`), plus their FP16 biases, stored at p (hidden
 * layer) or added to what is there (last layer). Lane for lane the scalar path's mul and add.
 */
export function finish4(dots: usize, scales: usize, bias: usize, int8: bool, p: usize, last: bool): void {
  if (!ASC_FEATURE_SIMD) return;
  let v = v128.load(dots);
  if (int8) v = f32x4.mul(v, widen4(v128.load16x4_u(scales)));
  v = f32x4.add(v, widen4(v128.load16x4_u(bias)));
  if (last) v = f32x4.add(v128.load(p), v);
  v128.store(p, v);
}

/** ReLU in place over n f32 values: max(0, v) as the reference has it (-0 -> +0, NaN stays NaN). */
export function reluInPlace(p: usize, n: u32): void {
  let i: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    const zero = f32x4.splat(0);
    for (; i + 4 <= n; i += 4) {
      const q = p + (<usize>i << 2);
      const v = v128.load(q);
      v128.store(q, v128.bitselect(zero, v, f32x4.le(v, zero)));
    }
  }
  for (; i < n; i++) {
    const q = p + (<usize>i << 2);
    if (load<f32>(q) <= 0) store<f32>(q, 0);
  }
}

/**
 * LayerNorm's affine step over n values: p[c] = (p[c] - mean) * inv * gamma[c] + beta[c], gamma
 * and beta FP16, in that order of operations (lane for lane in the SIMD build).
 */
export function normalizeSpan(p: usize, gamma: usize, beta: usize, n: u32, mean: f32, inv: f32): void {
  let c: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    const mean4 = f32x4.splat(mean);
    const inv4 = f32x4.splat(inv);
    for (; c + 4 <= n; c += 4) {
      const q = p + (<usize>c << 2);
      const g = widen4(v128.load16x4_u(gamma + (<usize>c << 1)));
      const be = widen4(v128.load16x4_u(beta + (<usize>c << 1)));
      v128.store(q, f32x4.add(f32x4.mul(f32x4.mul(f32x4.sub(v128.load(q), mean4), inv4), g), be));
    }
  }
  for (; c < n; c++) {
    const q = p + (<usize>c << 2);
    const g = f16ToF32(<u32>load<u16>(gamma + (<usize>c << 1)));
    const be = f16ToF32(<u32>load<u16>(beta + (<usize>c << 1)));
    store<f32>(q, (load<f32>(q) - mean) * inv * g + be);
  }
}

/** sum over i < n of the f32 values at p, in the eight-lane order (LayerNorm's mean). */
export function sumF32(p: usize, n: u32): f32 {
  let i: u32 = 0;
  let total: f32;
  if (ASC_FEATURE_SIMD) {
    // Lanes 0-3 and 4-7 as two f32x4, each lane adding its terms in order: the same sums.
    let a = f32x4.splat(0);
    let b = f32x4.splat(0);
    for (; i + 8 <= n; i += 8) {
      const q = p + (<usize>i << 2);
      a = f32x4.add(a, v128.load(q));
      b = f32x4.add(b, v128.load(q, 16));
    }
    total = combineLanes(a, b);
  } else {
    let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0, s4: f32 = 0, s5: f32 = 0, s6: f32 = 0, s7: f32 = 0;
    for (; i + 8 <= n; i += 8) {
      const q = p + (<usize>i << 2);
      s0 += load<f32>(q);
      s1 += load<f32>(q, 4);
      s2 += load<f32>(q, 8);
      s3 += load<f32>(q, 12);
      s4 += load<f32>(q, 16);
      s5 += load<f32>(q, 20);
      s6 += load<f32>(q, 24);
      s7 += load<f32>(q, 28);
    }
    total = combine8(s0, s1, s2, s3, s4, s5, s6, s7);
  }
  for (; i < n; i++) total += load<f32>(p + (<usize>i << 2));
  return total;
}

/** (p[i] - mean)^2, one f32 subtract and one f32 multiply. */
// @ts-ignore: decorator
@inline function squaredDeviation(q: usize, mean: f32): f32 {
  const d = load<f32>(q) - mean;
  return d * d;
}

/** sum over i < n of (p[i] - mean)^2, in the eight-lane order (LayerNorm's variance). */
export function sumSquaredDeviations(p: usize, n: u32, mean: f32): f32 {
  let i: u32 = 0;
  let total: f32;
  if (ASC_FEATURE_SIMD) {
    const mean4 = f32x4.splat(mean);
    let a = f32x4.splat(0);
    let b = f32x4.splat(0);
    for (; i + 8 <= n; i += 8) {
      const q = p + (<usize>i << 2);
      const d0 = f32x4.sub(v128.load(q), mean4);
      const d1 = f32x4.sub(v128.load(q, 16), mean4);
      a = f32x4.add(a, f32x4.mul(d0, d0));
      b = f32x4.add(b, f32x4.mul(d1, d1));
    }
    total = combineLanes(a, b);
  } else {
    let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0, s4: f32 = 0, s5: f32 = 0, s6: f32 = 0, s7: f32 = 0;
    for (; i + 8 <= n; i += 8) {
      const q = p + (<usize>i << 2);
      s0 += squaredDeviation(q, mean);
      s1 += squaredDeviation(q + 4, mean);
      s2 += squaredDeviation(q + 8, mean);
      s3 += squaredDeviation(q + 12, mean);
      s4 += squaredDeviation(q + 16, mean);
      s5 += squaredDeviation(q + 20, mean);
      s6 += squaredDeviation(q + 24, mean);
      s7 += squaredDeviation(q + 28, mean);
    }
    total = combine8(s0, s1, s2, s3, s4, s5, s6, s7);
  }
  for (; i < n; i++) total += squaredDeviation(p + (<usize>i << 2), mean);
  return total;
}
