// The corrective adaptor (blob v1.2, docs/FORMAT.md "The adaptor"): gamma(t) = sigma1(sigma0[t])
// added to each decoded row after the RVQ sum and any row scale.
//
// Memory. Tokens are evaluated in batches of up to `batch` (the output rows written together):
// two activation buffers of batch x max(w_0 .. w_(C-1)) f32 (ping-pong between layers; the last
// layer adds straight into the output rows) and batch x 8 bytes of LayerNorm statistics.
// - Resident: sigma0 and sigma1 are read in place from the blob in memory.
// - Streaming: one ADAPTOR_TABLE record per token is read with one fd_pread into a record buffer.
//   The MLP is either read whole into the arena once per run ("cached", when it fits beside
//   everything else) or streamed layer by layer through one tile buffer: a layer that fits the
//   tile is read with one fd_pread (weights, scales, bias, LayerNorm parameters: they are
//   contiguous), a larger one in tiles of output channels (a tile's weight rows, then its scales
//   and biases), each tile applied to every token of the batch before the next is read; the
//   LayerNorm gamma and beta then pass through the same buffer in chunks. The smallest tile is one
//   output channel of the widest layer: if even that cannot fit, streaming is refused (exit 6).
import { ADAPTOR_INT8, ADAPTOR_LN_EPS, ADAPTOR_TABLE_HEADER_BYTES } from "./format";
import {
  adapted, adTablePrecision, adTableOffset, adTableRowBytes, adMlpPrecision, adMlpOffset, adMlpLength,
  adLayers, adWidth, adLayerAt, L_WEIGHTS, L_SCALES, L_BIAS, L_GAMMA, L_BETA, L_END, resident, readAt,
} from "./blob";
import { arenaAlloc, arenaCost, arenaFree } from "./arena";
import { dotI8, dotF16, dot4, dotRows4, finish4, f16ToF32, normalizeSpan, reluInPlace, sumF32, sumSquaredDeviations } from "./kernels";

/** Four dot products of dot4. */
const DOTS: usize = memory.data(16, 16);

/** Streaming: whole layers are preferred, but a tile of at least this much keeps fd_pread calls few. */
const TILE_FLOOR_BYTES: u64 = 64 * 1024;

// ---- Geometry ----

/** The widest layer input, max(w_0 .. w_(C-1)): the width of one token's activation buffer. */
function maxInput(): u32 {
  let m: u32 = 0;
  for (let k: u32 = 0; k < adLayers; k++) if (adWidth(k) > m) m = adWidth(k);
  return m;
}

/** Bytes of one token's activations in each of the two buffers (16-aligned so SIMD loads stay in it). */
function strideBytes(): u64 {
  return arenaCost(<u64>maxInput() * 4);
}

function int8Weights(): bool {
  return adMlpPrecision == ADAPTOR_INT8;
}

/** Bytes of one output channel's weights in layer k. */
function rowWeightBytes(k: u32): u64 {
  return <u64>adWidth(k) * (int8Weights() ? 1 : 2);
}

/** Bytes of one output channel in a tile: its weights, its int8 scale and its bias. */
function channelBytes(k: u32): u64 {
  return rowWeightBytes(k) + (int8Weights() ? 4 : 2);
}

/** Bytes of layer k in ADAPTOR_MLP: weights, scales, bias and (hidden layers) gamma and beta. */
export function layerBytes(k: u32): u64 {
  return <u64>(adLayerAt(k, L_END) - adLayerAt(k, L_WEIGHTS));
}

function maxLayerBytes(): u64 {
  let m: u64 = 0;
  for (let k: u32 = 0; k < adLayers; k++) if (layerBytes(k) > m) m = layerBytes(k);
  return m;
}

/** The smallest streaming tile: one output channel of the widest layer (and a gamma/beta pair). */
export function minTileBytes(): u64 {
  let m: u64 = 4;
  for (let k: u32 = 0; k < adLayers; k++) if (channelBytes(k) > m) m = channelBytes(k);
  return m;
}

/** Arena bytes of the activations and statistics of `batch` tokens. */
function actCost(batch: u64): u64 {
  return 2 * arenaCost(batch * strideBytes()) + arenaCost(batch * 8);
}

/** Arena bytes the adaptor needs at the least in resident mode (one token's activations). */
export function adaptorResidentNeed(): u64 {
  return adapted ? actCost(1) : 0;
}

/** Arena bytes the adaptor needs at the least in streaming mode: a table record, one token's activations, one tile. */
export function adaptorStreamingNeed(): u64 {
  return adapted ? arenaCost(<u64>adTableRowBytes) + actCost(1) + arenaCost(minTileBytes()) : 0;
}

/** Bytes of the MLP weights and parameters (the ADAPTOR_MLP section). */
export function mlpBytes(): u64 {
  return adMlpLength;
}

// ---- The plan in force ----

/** Tokens evaluated together; the lookup writes at most this many rows per batch. */
export let batch: u32 = 1;
/** Streaming: the whole MLP was read into the arena once. */
export let cached: bool = false;
/** Streaming: bytes of the tile buffer (0 when cached or resident). */
export let tileBytes: u64 = 0;
/** Command-line caps (0 = none): tokens per batch, bytes of MLP held in the arena (tile or cache). */
export let batchCap: u32 = 0;
export let tileCap: u64 = 0;

let stride: usize = 0;
let actA: usize = 0;
let actB: usize = 0;
let stats: usize = 0;
let recBuf: usize = 0;
let tilePtr: usize = 0;
/** Address of ADAPTOR_MLP's first byte when the whole section is in memory (resident or cached), else 0. */
let mlpBase: usize = 0;

/** Forgets the plan of the last blob (the caps stay). */
export function resetAdaptorPlan(): void {
  batch = 1;
  cached = false;
  tileBytes = 0;
  stride = 0;
  actA = 0;
  actB = 0;
  stats = 0;
  recBuf = 0;
  tilePtr = 0;
  mlpBase = 0;
}

export function setCaps(tokens: u32, bytes: u64): void {
  batchCap = tokens;
  tileCap = bytes;
}

/**
 * The largest batch (at most `maxBatch`) whose output rows (`rowOut` bytes each) and activations
 * fit in `avail` bytes; 0 if not even one does.
 */
function fitBatch(maxBatch: u64, rowOut: u64, avail: u64): u64 {
  const per = rowOut + 2 * strideBytes() + 8;
  let b = avail / per;
  if (b > maxBatch) b = maxBatch;
  while (b > 0 && arenaCost(b * rowOut) + actCost(b) > avail) b--;
  return b;
}

/**
 * Plans the adaptor's buffers after the mode's own (record, window): chooses the batch (at most
 * `maxBatch` rows of `rowOut` bytes, which the caller then reserves) and, streaming, the cache or
 * the tile. The caller checked that the mode's minimum fits. Returns the batch, or 0 if the host
 * refused memory.
 */
export function planAdaptor(streaming: bool, maxBatch: u64, rowOut: u64): u32 {
  resetAdaptorPlan();
  stride = <usize>strideBytes();
  if (batchCap > 0 && maxBatch > <u64>batchCap) maxBatch = <u64>batchCap;
  if (maxBatch < 1) maxBatch = 1;
  let free = arenaFree();
  if (streaming) {
    recBuf = arenaAlloc(<u64>adTableRowBytes);
    if (recBuf == 0) return 0;
    free = arenaFree();
    const capped = tileCap > 0;
    const mlpCost = arenaCost(adMlpLength);
    let b: u64 = 0;
    if (!capped || tileCap >= adMlpLength) {
      // Cache the whole MLP if it fits with the full batch.
      if (mlpCost <= free && fitBatch(maxBatch, rowOut, free - mlpCost) == maxBatch) {
        b = maxBatch;
        cached = true;
      }
    }
    if (cached) {
      mlpBase = arenaAlloc(adMlpLength);
      if (mlpBase == 0) return 0;
      if (!readAt(mlpBase, adMlpOffset, <usize>adMlpLength)) return 0;
      tileBytes = 0;
    } else {
      const minTile = minTileBytes();
      let tileMax = maxLayerBytes();
      if (capped && tileCap < tileMax) tileMax = tileCap > minTile ? tileCap : minTile;
      let floor = tileMax < TILE_FLOOR_BYTES ? tileMax : TILE_FLOOR_BYTES;
      if (floor < minTile) floor = minTile;
      b = free > arenaCost(floor) ? fitBatch(maxBatch, rowOut, free - arenaCost(floor)) : 0;
      if (b < 1) b = 1;
      const used = arenaCost(b * rowOut) + actCost(b);
      let tile = free > used ? (free - used) & ~(<u64>15) : 0;
      if (tile > tileMax) tile = tileMax;
      if (tile < minTile) return 0; // the minimum was checked: only a host refusal gets here
      tileBytes = tile;
      tilePtr = arenaAlloc(tile);
      if (tilePtr == 0) return 0;
    }
    batch = <u32>b;
  } else {
    mlpBase = resident + <usize>adMlpOffset;
    let b = fitBatch(maxBatch, rowOut, free);
    if (b < 1) b = 1;
    batch = <u32>b;
  }
  actA = arenaAlloc(<u64>batch * <u64>stride);
  actB = actA != 0 ? arenaAlloc(<u64>batch * <u64>stride) : 0;
  stats = actB != 0 ? arenaAlloc(<u64>batch * 8) : 0;
  return stats != 0 ? batch : 0;
}

// ---- Evaluation ----

/** Loads sigma0's row of token t (dequantized) as the input of batch slot `slot`. */
export function loadTableRow(t: u32, slot: u32): void {
  const off = adTableOffset + <u64>ADAPTOR_TABLE_HEADER_BYTES + <u64>t * <u64>adTableRowBytes;
  let rec: usize;
  if (resident != 0) rec = resident + <usize>off;
  else {
    readAt(recBuf, off, adTableRowBytes);
    rec = recBuf;
  }
  const x = actA + <usize>slot * stride;
  const m0 = adWidth(0);
  if (adTablePrecision == ADAPTOR_INT8) {
    const scale = f16ToF32(<u32>load<u16>(rec));
    for (let i: u32 = 0; i < m0; i++) store<f32>(x + (<usize>i << 2), scale * <f32>load<i8>(rec + 2 + <usize>i));
  } else {
    for (let i: u32 = 0; i < m0; i++) store<f32>(x + (<usize>i << 2), f16ToF32(<u32>load<u16>(rec + (<usize>i << 1))));
  }
}

/**
 * Output channels [o0, o0 + rows) of layer k for `count` tokens: weights at `w` (one row per
 * channel), int8 scales at `s`, biases at `bias` (FP16, from channel o0). Hidden layers store
 * y[o] = scale * (w . x) + bias (FP16: w . x + bias); the last layer adds it to the output row.
 */
function channels(k: u32, w: usize, s: usize, bias: usize, o0: u32, rows: u32, x: usize, y: usize, yStride: usize, count: u32, last: bool): void {
  const inputs = adWidth(k);
  const rowW = <usize>rowWeightBytes(k);
  const int8 = int8Weights();
  // SIMD: tokens four at a time per pass over a weight row (dot4); the tokens left over (all of
  // them in a one-token batch) four rows at a time (dotRows4). Every value is the same sum as
  // dotI8 / dotF16 would take alone, so the grouping never changes a bit.
  const grouped: u32 = ASC_FEATURE_SIMD ? count & ~3 : 0;
  if (ASC_FEATURE_SIMD && grouped > 0) {
    for (let r: u32 = 0; r < rows; r++) {
      const wr = w + <usize>r * rowW;
      // The row's scale and bias, widened once for all its tokens.
      const b0 = f16ToF32(<u32>load<u16>(bias + (<usize>r << 1)));
      const sc = int8 ? f16ToF32(<u32>load<u16>(s + (<usize>r << 1))) : <f32>1;
      for (let b: u32 = 0; b < grouped; b += 4) {
        dot4(wr, int8, x + <usize>b * stride, stride, inputs, DOTS);
        for (let j: u32 = 0; j < 4; j++) {
          const dot = load<f32>(DOTS + (<usize>j << 2));
          storeChannel(y + <usize>(b + j) * yStride + (<usize>(o0 + r) << 2), (int8 ? dot * sc : dot) + b0, last);
        }
      }
    }
  }
  for (let b = grouped; b < count; b++) {
    const xb = x + <usize>b * stride;
    let r: u32 = 0;
    if (ASC_FEATURE_SIMD) {
      for (; r + 4 <= rows; r += 4) {
        dotRows4(w + <usize>r * rowW, rowW, int8, xb, inputs, DOTS);
        finish4(DOTS, s + (<usize>r << 1), bias + (<usize>r << 1), int8, y + <usize>b * yStride + (<usize>(o0 + r) << 2), last);
      }
    }
    for (; r < rows; r++) {
      const wr = w + <usize>r * rowW;
      putChannel(s, bias, o0, r, y, yStride, b, int8 ? dotI8(wr, xb, inputs) : dotF16(wr, xb, inputs), int8, last);
    }
  }
}

/**
 * Finishes channel o0 + r of token b from its dot product: times the row's int8 scale, plus its
 * bias; stored (hidden layer) or added to the output row (last layer).
 */
// @ts-ignore: decorator
@inline function putChannel(s: usize, bias: usize, o0: u32, r: u32, y: usize, yStride: usize, b: u32, dot: f32, int8: bool, last: bool): void {
  const b0 = f16ToF32(<u32>load<u16>(bias + (<usize>r << 1)));
  const v = (int8 ? dot * f16ToF32(<u32>load<u16>(s + (<usize>r << 1))) : dot) + b0;
  storeChannel(y + <usize>b * yStride + (<usize>(o0 + r) << 2), v, last);
}

/** Stores a finished channel value (hidden layer) or adds it to the output row (last layer). */
// @ts-ignore: decorator
@inline function storeChannel(p: usize, v: f32, last: bool): void {
  if (last) store<f32>(p, load<f32>(p) + v);
  else store<f32>(p, v);
}

/** ReLU, then each token's mean and 1 / sqrt(var + eps) of layer k's outputs into `stats` (blocked f32 sums). */
function reluStats(width: u32, y: usize, count: u32): void {
  const wf = <f32>width;
  for (let b: u32 = 0; b < count; b++) {
    const yb = y + <usize>b * stride;
    reluInPlace(yb, width);
    const mean = sumF32(yb, width) / wf;
    const variance = sumSquaredDeviations(yb, width, mean) / wf;
    store<f32>(stats + (<usize>b << 3), mean);
    store<f32>(stats + (<usize>b << 3) + 4, <f32>1 / Mathf.sqrt(variance + <f32>ADAPTOR_LN_EPS));
  }
}

/** y[o] = (y[o] - mean) * inv * gamma[o] + beta[o] for o in [c0, c0 + n), every token. */
function normalize(gamma: usize, beta: usize, c0: u32, n: u32, y: usize, count: u32): void {
  for (let b: u32 = 0; b < count; b++) {
    const yb = y + <usize>b * stride + (<usize>c0 << 2);
    const mean = load<f32>(stats + (<usize>b << 3));
    const inv = load<f32>(stats + (<usize>b << 3) + 4);
    normalizeSpan(yb, gamma, beta, n, mean, inv);
  }
}

/** Layer k for `count` tokens: inputs in x, outputs to y (hidden, then ReLU + LayerNorm) or added to the rows. */
function layer(k: u32, x: usize, y: usize, yStride: usize, count: u32): void {
  const last = k + 1 == adLayers;
  const outputs = adWidth(k + 1);
  const base = adLayerAt(k, L_WEIGHTS);
  const sRel = <usize>(adLayerAt(k, L_SCALES) - base);
  const bRel = <usize>(adLayerAt(k, L_BIAS) - base);
  let lp: usize = mlpBase != 0 ? mlpBase + <usize>base : 0;
  if (lp == 0 && layerBytes(k) <= tileBytes) {
    readAt(tilePtr, adMlpOffset + <u64>base, <usize>layerBytes(k));
    lp = tilePtr;
  }
  if (lp != 0) {
    channels(k, lp, lp + sRel, lp + bRel, 0, outputs, x, y, yStride, count, last);
  } else {
    const rowW = rowWeightBytes(k);
    const int8 = int8Weights();
    const tileRows = <u32>(tileBytes / channelBytes(k));
    const secOff = adMlpOffset;
    for (let o0: u32 = 0; o0 < outputs; o0 += tileRows) {
      const rows = outputs - o0 < tileRows ? outputs - o0 : tileRows;
      const wBytes = <usize>(<u64>rows * rowW);
      readAt(tilePtr, secOff + <u64>base + <u64>o0 * rowW, wBytes);
      const s = tilePtr + wBytes;
      if (int8) readAt(s, secOff + <u64>adLayerAt(k, L_SCALES) + (<u64>o0 << 1), <usize>rows << 1);
      const bp = int8 ? s + (<usize>rows << 1) : s;
      readAt(bp, secOff + <u64>adLayerAt(k, L_BIAS) + (<u64>o0 << 1), <usize>rows << 1);
      channels(k, tilePtr, s, bp, o0, rows, x, y, yStride, count, last);
    }
  }
  if (last) return;
  reluStats(outputs, y, count);
  if (lp != 0) {
    normalize(lp + <usize>(adLayerAt(k, L_GAMMA) - base), lp + <usize>(adLayerAt(k, L_BETA) - base), 0, outputs, y, count);
  } else {
    const chunk = <u32>(tileBytes >> 2);
    for (let c0: u32 = 0; c0 < outputs; c0 += chunk) {
      const n = outputs - c0 < chunk ? outputs - c0 : chunk;
      readAt(tilePtr, adMlpOffset + <u64>adLayerAt(k, L_GAMMA) + (<u64>c0 << 1), <usize>n << 1);
      readAt(tilePtr + (<usize>n << 1), adMlpOffset + <u64>adLayerAt(k, L_BETA) + (<u64>c0 << 1), <usize>n << 1);
      normalize(tilePtr, tilePtr + (<usize>n << 1), c0, n, y, count);
    }
  }
}

/**
 * Adds gamma(t) to the first `count` rows at `out` (`rowOut` bytes apart), whose tokens' sigma0
 * rows were loaded into slots 0 .. count-1 by loadTableRow. count <= batch.
 */
export function applyAdaptor(out: usize, rowOut: usize, count: u32): void {
  let x = actA;
  let y = actB;
  for (let k: u32 = 0; k < adLayers; k++) {
    const last = k + 1 == adLayers;
    layer(k, x, last ? out : y, last ? rowOut : stride, count);
    const t = x;
    x = y;
    y = t;
  }
}
