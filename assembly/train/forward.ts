// The adaptor's evaluation for many tokens at once (tools/adaptor/forward.ts), with exactly
// the arithmetic of the reference (tools/adaptor/forward.ts, FORMAT.md "The adaptor"): f32
// throughout, every sum FORMAT.md's eight-lane sum. The eight lanes are two f32x4 accumulators
// (lanes 0-3 and 4-7), combined as ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)), then the tail
// added one term at a time, so the result is the reference's, bit for bit. It exists because the
// compressor decodes a whole table (128256 rows of 1.25 M multiply-adds each) to measure it, and
// the reference's scalar f32 emulation in JavaScript takes minutes for that.
//
// Tokens are batched so that each weight row is read once per batch (from L1) instead of once per
// token (from memory): the loop runs over outputs, then tokens.

/** The eight-lane sum of w[i] · x[i] for i < n (each product rounded to f32). */
@inline
function laneDot(w: usize, x: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const at = <usize>i << 2;
    acc0 = f32x4.add(acc0, f32x4.mul(v128.load(w + at), v128.load(x + at)));
    acc1 = f32x4.add(acc1, f32x4.mul(v128.load(w + at, 16), v128.load(x + at, 16)));
  }
  const v = f32x4.add(acc0, acc1);
  let total: f32 = (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
  for (; i < n; i++) total = total + load<f32>(w + (<usize>i << 2)) * load<f32>(x + (<usize>i << 2));
  return total;
}

/**
 * y[t, o] = (scales ? f32(Σ w[o, i] · x[t, i] · 1) · scales[o] : Σ ...) + bias[o] for `tokens` rows of
 * x (tokens × inputs) into y (tokens × outputs); w is outputs × inputs. scales = 0: none (FP16 weights).
 */
export function adaptorLinear(w: usize, scales: usize, bias: usize, x: usize, y: usize, tokens: i32, inputs: i32, outputs: i32): void {
  const rowBytes = <usize>inputs << 2;
  for (let o = 0; o < outputs; o++) {
    const row = w + <usize>o * rowBytes;
    const scale: f32 = scales !== 0 ? load<f32>(scales + (<usize>o << 2)) : 1;
    const b = load<f32>(bias + (<usize>o << 2));
    for (let t = 0; t < tokens; t++) {
      const sum = laneDot(row, x + <usize>t * rowBytes, inputs);
      store<f32>(y + ((<usize>t * <usize>outputs + <usize>o) << 2), (scales !== 0 ? sum * scale : sum) + b);
    }
  }
}

/** The eight-lane sum of y[i] (centre = false) or of (y[i] − mean)² (centre = true). */
@inline
function laneSum(y: usize, n: i32, centre: bool, mean: f32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  const m = f32x4.splat(mean);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    let a = v128.load(y + (<usize>i << 2));
    let b = v128.load(y + (<usize>i << 2), 16);
    if (centre) {
      a = f32x4.sub(a, m);
      b = f32x4.sub(b, m);
      a = f32x4.mul(a, a);
      b = f32x4.mul(b, b);
    }
    acc0 = f32x4.add(acc0, a);
    acc1 = f32x4.add(acc1, b);
  }
  const v = f32x4.add(acc0, acc1);
  let total: f32 = (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
  for (; i < n; i++) {
    let d = load<f32>(y + (<usize>i << 2));
    if (centre) {
      d = d - mean;
      d = d * d;
    }
    total = total + d;
  }
  return total;
}

/** ReLU then LayerNorm of each of `tokens` rows of y (tokens × width), in place, as the reference. */
export function adaptorReluLayerNorm(y: usize, tokens: i32, width: i32, gamma: usize, beta: usize, eps: f32): void {
  const n = <f32>width;
  for (let t = 0; t < tokens; t++) {
    const row = y + <usize>t * (<usize>width << 2);
    for (let o = 0; o < width; o++) store<f32>(row + (<usize>o << 2), max<f32>(0, load<f32>(row + (<usize>o << 2))));
    const mean: f32 = laneSum(row, width, false, 0) / n;
    const variance: f32 = laneSum(row, width, true, mean) / n;
    const inverse: f32 = <f32>1 / sqrt<f32>(variance + eps);
    for (let o = 0; o < width; o++) {
      const at = row + (<usize>o << 2);
      store<f32>(at, ((load<f32>(at) - mean) * inverse) * load<f32>(gamma + (<usize>o << 2)) + load<f32>(beta + (<usize>o << 2)));
    }
  }
}
