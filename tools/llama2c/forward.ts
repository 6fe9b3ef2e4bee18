// The llama2.c forward pass (run.c's forward()), one token at a time with a KV cache:
//   x = embedding[token]
//   per layer: x += wo · attention(rope(wq · rmsnorm(x)), rope(wk · rmsnorm(x)), wv · rmsnorm(x))
//              x += w2 · (silu(w1 · rmsnorm(x)) * (w3 · rmsnorm(x)))
//   logits = wcls · rmsnorm(x)
// RMSNorm eps 1e-5; RoPE base 10000 rotating the pairs (2i, 2i+1) of every head; grouped-query
// attention (n_heads / n_kv_heads query heads share one kv head). Buffers are Float32Array allocated
// once per state, sums are accumulated in doubles, and the loops are plain index loops so V8 keeps
// them monomorphic: about a million multiply-adds per token for stories260K.
import { CarvqError } from "../errors.ts";
import type { Llama2cModel } from "./model.ts";

/** out = log softmax(logits), in doubles. */
export function logSoftmax(logits: ArrayLike<number>, out: Float64Array, at = 0): void {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i] - max);
  const logTotal = Math.log(total) + max;
  for (let i = 0; i < logits.length; i++) out[at + i] = logits[i] - logTotal;
}

export const RMS_EPS = 1e-5;
export const ROPE_BASE = 10000;

/** Scratch buffers and the KV cache of one sequence being run through a model. */
export interface ForwardState {
  readonly model: Llama2cModel;
  /** Positions the KV cache holds (at most the model's seq_len). */
  readonly maxPositions: number;
  readonly x: Float32Array;
  readonly xb: Float32Array;
  readonly xb2: Float32Array;
  readonly q: Float32Array;
  readonly hb: Float32Array;
  readonly hb2: Float32Array;
  /** Attention scores of one head over the positions so far (scratch). */
  readonly att: Float64Array;
  /** One head's attention output before it is stored (scratch). */
  readonly headAcc: Float64Array;
  /** [layer][position][kvDim] */
  readonly keyCache: Float32Array;
  readonly valueCache: Float32Array;
  /** RoPE inverse frequencies, one per pair of a head: base^(-2i / head_size). */
  readonly invFreq: Float64Array;
  /** cos and sin of the current position's angles (scratch). */
  readonly ropeCos: Float64Array;
  readonly ropeSin: Float64Array;
  readonly logits: Float32Array;
}

/** Allocates the buffers to run up to `maxPositions` tokens (default: the model's seq_len) through `model`. */
export function createForwardState(model: Llama2cModel, maxPositions = model.config.seqLen): ForwardState {
  const { dim, hiddenDim, nLayers, nHeads, vocabSize, seqLen } = model.config;
  if (!Number.isInteger(maxPositions) || maxPositions < 1 || maxPositions > seqLen) {
    throw new CarvqError(`${model.path}: ${maxPositions} positions requested; the model's seq_len allows 1 to ${seqLen}`);
  }
  const half = model.headSize / 2;
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = 1 / ROPE_BASE ** ((2 * i) / model.headSize);
  return {
    model,
    maxPositions,
    x: new Float32Array(dim),
    xb: new Float32Array(dim),
    xb2: new Float32Array(dim),
    q: new Float32Array(dim),
    hb: new Float32Array(hiddenDim),
    hb2: new Float32Array(hiddenDim),
    att: new Float64Array(maxPositions),
    headAcc: new Float64Array(model.headSize),
    keyCache: new Float32Array(nLayers * maxPositions * model.kvDim),
    valueCache: new Float32Array(nLayers * maxPositions * model.kvDim),
    invFreq,
    ropeCos: new Float64Array(half),
    ropeSin: new Float64Array(half),
    logits: new Float32Array(vocabSize),
  };
}

/** out = weight * x / rms(x), elementwise weight. */
function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, n: number): void {
  let ss = 0;
  for (let j = 0; j < n; j++) ss += x[j] * x[j];
  const scale = 1 / Math.sqrt(ss / n + RMS_EPS);
  for (let j = 0; j < n; j++) out[j] = weight[j] * (scale * x[j]);
}

/** out[outAt + i] = sum_j w[i * n + j] * x[j] for i < d (w row-major [d, n]). */
function matmul(out: Float32Array, outAt: number, x: Float32Array, w: Float32Array, n: number, d: number): void {
  // Four independent partial sums per row let the CPU overlap the multiply-adds.
  const n4 = n & ~3;
  for (let i = 0; i < d; i++) {
    const row = i * n;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let j = 0;
    for (; j < n4; j += 4) {
      s0 += w[row + j] * x[j];
      s1 += w[row + j + 1] * x[j + 1];
      s2 += w[row + j + 2] * x[j + 2];
      s3 += w[row + j + 3] * x[j + 3];
    }
    for (; j < n; j++) s0 += w[row + j] * x[j];
    out[outAt + i] = s0 + s1 + (s2 + s3);
  }
}

/** Rotates the pairs (2i, 2i+1) of every head of vec[at, at + width) by pos * invFreq[i]. */
function rope(vec: Float32Array, at: number, width: number, headSize: number, cos: Float64Array, sin: Float64Array): void {
  for (let h = 0; h < width; h += headSize) {
    for (let i = 0; i < headSize; i += 2) {
      const a = at + h + i;
      const v0 = vec[a];
      const v1 = vec[a + 1];
      const c = cos[i >> 1];
      const s = sin[i >> 1];
      vec[a] = v0 * c - v1 * s;
      vec[a + 1] = v0 * s + v1 * c;
    }
  }
}

/**
 * One attention head: out[at, at + headSize) = sum over t < count of softmax_t(q . k_t * scale) v_t,
 * where k_t and v_t start at kvAt + t * stride of the caches and q at q[at].
 */
function attendHead(
  out: Float32Array,
  q: Float32Array,
  at: number,
  keys: Float32Array,
  values: Float32Array,
  kvAt: number,
  stride: number,
  headSize: number,
  count: number,
  scores: Float64Array,
  acc: Float64Array,
  scale: number,
): void {
  let max = -Infinity;
  for (let t = 0; t < count; t++) {
    const k = kvAt + t * stride;
    let score = 0;
    for (let i = 0; i < headSize; i++) score += q[at + i] * keys[k + i];
    score *= scale;
    scores[t] = score;
    if (score > max) max = score;
  }
  let total = 0;
  for (let t = 0; t < count; t++) {
    const e = Math.exp(scores[t] - max);
    scores[t] = e;
    total += e;
  }
  for (let i = 0; i < headSize; i++) acc[i] = 0;
  for (let t = 0; t < count; t++) {
    const a = scores[t] / total;
    const v = kvAt + t * stride;
    for (let i = 0; i < headSize; i++) acc[i] += a * values[v + i];
  }
  for (let i = 0; i < headSize; i++) out[at + i] = acc[i];
}

/**
 * Runs `token` at position `pos` (positions 0..pos-1 must already have been run through this state)
 * and returns the next-token logits. The returned array is the state's own buffer: it is overwritten
 * by the next call, so copy it to keep it. `input`, when given, is the token's input embedding row
 * (dim values) served from elsewhere, e.g. a compressed table, instead of the model's own table.
 */
export function forward(state: ForwardState, token: number, pos: number, input?: Float32Array): Float32Array {
  const { model } = state;
  const { dim, hiddenDim, nHeads, nKvHeads, vocabSize } = model.config;
  if (!Number.isInteger(token) || token < 0 || token >= vocabSize)
    throw new CarvqError(`${model.path}: token ${token} is out of range (0 to ${vocabSize - 1})`);
  if (!Number.isInteger(pos) || pos < 0 || pos >= state.maxPositions)
    throw new CarvqError(`${model.path}: position ${pos} is out of range (0 to ${state.maxPositions - 1})`);
  const { x, xb, xb2, q, hb, hb2, att, headAcc, keyCache, valueCache, invFreq, logits } = state;
  const { headSize, kvDim } = model;
  const kvMul = nHeads / nKvHeads;
  const positions = state.maxPositions;
  const invSqrtHead = 1 / Math.sqrt(headSize);

  const { ropeCos: cos, ropeSin: sin } = state;
  for (let i = 0; i < invFreq.length; i++) {
    const angle = pos * invFreq[i];
    cos[i] = Math.cos(angle);
    sin[i] = Math.sin(angle);
  }

  if (input !== undefined && input.length !== dim)
    throw new Error(`forward: the input row has ${input.length} values, the model's dim is ${dim}`);
  x.set(input ?? model.tokenEmbedding.subarray(token * dim, (token + 1) * dim));

  for (let l = 0; l < model.layers.length; l++) {
    const layer = model.layers[l];
    const cacheBase = l * positions * kvDim;

    // Attention: q for this position, k and v written straight into the cache.
    rmsnorm(xb, x, layer.rmsAtt, dim);
    matmul(q, 0, xb, layer.wq, dim, dim);
    matmul(keyCache, cacheBase + pos * kvDim, xb, layer.wk, dim, kvDim);
    matmul(valueCache, cacheBase + pos * kvDim, xb, layer.wv, dim, kvDim);
    rope(q, 0, dim, headSize, cos, sin);
    rope(keyCache, cacheBase + pos * kvDim, kvDim, headSize, cos, sin);

    for (let h = 0; h < nHeads; h++) {
      const kvAt = cacheBase + Math.floor(h / kvMul) * headSize;
      attendHead(xb, q, h * headSize, keyCache, valueCache, kvAt, kvDim, headSize, pos + 1, att, headAcc, invSqrtHead);
    }
    matmul(xb2, 0, xb, layer.wo, dim, dim);
    for (let j = 0; j < dim; j++) x[j] += xb2[j];

    // SwiGLU feed-forward.
    rmsnorm(xb, x, layer.rmsFfn, dim);
    matmul(hb, 0, xb, layer.w1, dim, hiddenDim);
    matmul(hb2, 0, xb, layer.w3, dim, hiddenDim);
    for (let i = 0; i < hiddenDim; i++) {
      const v = hb[i];
      hb[i] = (v / (1 + Math.exp(-v))) * hb2[i];
    }
    matmul(xb, 0, hb, layer.w2, hiddenDim, dim);
    for (let j = 0; j < dim; j++) x[j] += xb[j];
  }

  rmsnorm(x, x, model.rmsFinal, dim);
  matmul(logits, 0, x, model.wcls, dim, vocabSize);
  return logits;
}

/**
 * Teacher-forced logits of a whole sequence: row p (p < tokens.length) holds the logits after
 * tokens[0..p], i.e. the prediction of tokens[p + 1]. Returns a [tokens.length, vocab] array.
 */
export function sequenceLogits(model: Llama2cModel, tokens: ArrayLike<number>, state?: ForwardState): Float32Array {
  const vocab = model.config.vocabSize;
  const run = state ?? createForwardState(model, Math.max(1, Math.min(tokens.length, model.config.seqLen)));
  if (run.model !== model) throw new Error("sequenceLogits: the state belongs to another model");
  const out = new Float32Array(tokens.length * vocab);
  for (let p = 0; p < tokens.length; p++) out.set(forward(run, tokens[p], p), p * vocab);
  return out;
}
