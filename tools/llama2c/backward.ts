// Gradient of the end-to-end KL (tools/eval/perplexity.ts's definition) with respect to the INPUT
// embedding of a llama2.c model: what a compressor needs to tune its table for the model rather than
// for the table's own reconstruction error.
//
// The forward pass is the teacher-forced, whole-sequence version of forward.ts that keeps what the
// backward pass needs (per layer: residual input, inv-rms of both RMSNorms, q/k after RoPE, v, the
// causal attention probabilities, the FFN pre-activations). In "float32" precision it stores every
// activation as a Float32Array and performs the very same operations in the very same order as
// forward.ts, so the modified log-probabilities, and therefore the KL, are identical bit for bit to
// evaluatePerplexity's (and exactly 0 with the original embedding). "float64" stores doubles instead:
// slower to agree with the evaluation but smooth, which finite-difference checks need.
//
// The backward pass runs in doubles. The output classifier is the ORIGINAL model's wcls (only the
// input embedding is replaced, as a deployment that compresses the input table would), and it is not
// differentiated: only the input rows are. d KL / d logits at a position = softmax(modified logits) -
// p_orig, divided by the number of predicted positions (KL is a mean).
import { CarvqError } from "../errors.ts";
import { logSoftmax } from "./forward.ts";
import type { Matrix } from "../matrix.ts";
import { RMS_EPS, ROPE_BASE } from "./forward.ts";
import { withInputEmbedding, type Llama2cModel } from "./model.ts";

export interface KlGradient {
  /** Mean KL(p_orig || p_mod) over the predicted positions, in nats. */
  readonly kl: number;
  /** Predicted positions averaged over. */
  readonly tokens: number;
  /** d kl / d embedding, vocab x dim row-major; rows of tokens never used as an input are 0. */
  readonly gradient: Float32Array;
}

/** How the forward pass stores activations: "float32" is forward.ts's arithmetic exactly, "float64" is smooth. */
export type Precision = "float32" | "float64";

export interface KlGradientOptions {
  /** Default "float32" (kl identical to evaluatePerplexity's); "float64" for finite-difference checks. */
  readonly precision?: Precision;
}

type Vec = Float32Array | Float64Array;

/** What the backward pass needs from one layer's forward, for every position of one sequence. */
interface LayerActivations {
  /** Residual stream entering the layer [T, dim]. */
  readonly x: Vec;
  /** 1 / rms of x per position (attention RMSNorm) [T]. */
  readonly attScale: Float64Array;
  /** Queries and keys after RoPE [T, dim] and [T, kvDim]; values [T, kvDim]. */
  readonly q: Vec;
  readonly k: Vec;
  readonly v: Vec;
  /** Attention probabilities per head, causal rows packed: head h, position p at h * T(T+1)/2 + p(p+1)/2. */
  readonly probs: Float64Array;
  /** Residual stream after the attention block [T, dim]. */
  readonly mid: Vec;
  /** 1 / rms of mid per position (FFN RMSNorm) [T]. */
  readonly ffnScale: Float64Array;
  /** FFN pre-activations w1 x and w3 x [T, hidden]. */
  readonly h1: Vec;
  readonly h3: Vec;
}

/** Activations, scratch and gradient buffers for sequences of up to `positions` predicted tokens. */
interface Buffers {
  readonly positions: number;
  readonly layers: LayerActivations[];
  /** Residual stream after the last layer [T, dim], and its final-RMSNorm 1 / rms [T]. */
  readonly top: Vec;
  readonly finalScale: Float64Array;
  /** Log-softmax of the modified model [T, vocab]. */
  readonly logProbs: Float64Array;
  /** cos and sin of position p's RoPE angles at p * headSize / 2 + i. */
  readonly cos: Float64Array;
  readonly sin: Float64Array;
  // Forward scratch, in the storage precision so each rounding matches forward.ts.
  readonly xn: Vec;
  readonly attOut: Vec;
  readonly proj: Vec;
  readonly gated: Vec;
  readonly logits: Vec;
  readonly headAcc: Float64Array;
  readonly scores: Float64Array; // [T]
  // Backward, in doubles.
  readonly dx: Float64Array; // [T, dim]: d KL / d residual stream at the current depth
  readonly dAtt: Float64Array; // [T, dim]
  readonly dq: Float64Array; // [T, dim]
  readonly dk: Float64Array; // [T, kvDim]
  readonly dv: Float64Array; // [T, kvDim]
  readonly da: Float64Array; // [T]
  readonly dxn: Float64Array; // [dim]
  readonly dg: Float64Array; // [hidden]
  readonly dh1: Float64Array; // [hidden]
  readonly dh3: Float64Array; // [hidden]
  readonly dLogits: Float64Array; // [vocab]
}

// Integer arithmetic (>> 1, not / 2) keeps V8 from treating these offsets as doubles and deoptimizing.
const triangle = (n: number): number => (n * (n + 1)) >> 1;

function createBuffers(model: Llama2cModel, positions: number, precision: Precision): Buffers {
  const { dim, hiddenDim, nLayers, nHeads, vocabSize } = model.config;
  const { kvDim, headSize } = model;
  const vec = (n: number): Vec => (precision === "float32" ? new Float32Array(n) : new Float64Array(n));
  const layers: LayerActivations[] = [];
  for (let l = 0; l < nLayers; l++) {
    layers.push({
      x: vec(positions * dim),
      attScale: new Float64Array(positions),
      q: vec(positions * dim),
      k: vec(positions * kvDim),
      v: vec(positions * kvDim),
      probs: new Float64Array(nHeads * triangle(positions)),
      mid: vec(positions * dim),
      ffnScale: new Float64Array(positions),
      h1: vec(positions * hiddenDim),
      h3: vec(positions * hiddenDim),
    });
  }
  const half = headSize / 2;
  const cos = new Float64Array(positions * half);
  const sin = new Float64Array(positions * half);
  for (let i = 0; i < half; i++) {
    // Same expressions as forward.ts, so the angles (and their cos / sin) are the same doubles.
    const invFreq = 1 / ROPE_BASE ** ((2 * i) / headSize);
    for (let p = 0; p < positions; p++) {
      const angle = p * invFreq;
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return {
    positions,
    layers,
    top: vec(positions * dim),
    finalScale: new Float64Array(positions),
    logProbs: new Float64Array(positions * vocabSize),
    cos,
    sin,
    xn: vec(dim),
    attOut: vec(dim),
    proj: vec(dim),
    gated: vec(hiddenDim),
    logits: vec(vocabSize),
    headAcc: new Float64Array(headSize),
    scores: new Float64Array(positions),
    dx: new Float64Array(positions * dim),
    dAtt: new Float64Array(positions * dim),
    dq: new Float64Array(positions * dim),
    dk: new Float64Array(positions * kvDim),
    dv: new Float64Array(positions * kvDim),
    da: new Float64Array(positions),
    dxn: new Float64Array(dim),
    dg: new Float64Array(hiddenDim),
    dh1: new Float64Array(hiddenDim),
    dh3: new Float64Array(hiddenDim),
    dLogits: new Float64Array(vocabSize),
  };
}

// ------------------------------------------------------------------------------------ kernels

/** out = weight * x[xAt, xAt + n) / rms; returns the 1 / rms it scaled by (forward.ts's rmsnorm). */
function rmsnorm(out: Vec, x: Vec, xAt: number, weight: Float32Array, n: number): number {
  let ss = 0;
  for (let j = 0; j < n; j++) ss += x[xAt + j] * x[xAt + j];
  const scale = 1 / Math.sqrt(ss / n + RMS_EPS);
  for (let j = 0; j < n; j++) out[j] = weight[j] * (scale * x[xAt + j]);
  return scale;
}

/** out[outAt + i] = sum_j w[i * n + j] * x[xAt + j], i < d: forward.ts's matmul, same summation order. */
function matmul(out: Vec, outAt: number, x: Vec, xAt: number, w: Float32Array, n: number, d: number): void {
  const n4 = n & ~3;
  for (let i = 0; i < d; i++) {
    const row = i * n;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let j = 0;
    for (; j < n4; j += 4) {
      s0 += w[row + j] * x[xAt + j];
      s1 += w[row + j + 1] * x[xAt + j + 1];
      s2 += w[row + j + 2] * x[xAt + j + 2];
      s3 += w[row + j + 3] * x[xAt + j + 3];
    }
    for (; j < n; j++) s0 += w[row + j] * x[xAt + j];
    out[outAt + i] = s0 + s1 + (s2 + s3);
  }
}

/** out[outAt + j] += sum_i w[i * n + j] * g[gAt + i], j < n, i < d: the transpose of matmul, for gradients. */
function matmulTransposedAdd(out: Float64Array, outAt: number, g: Float64Array, gAt: number, w: Float32Array, n: number, d: number): void {
  // Four rows of w per pass: a quarter of the loads and stores of out, the bottleneck here.
  const d4 = d & ~3;
  let i = 0;
  for (; i < d4; i += 4) {
    const g0 = g[gAt + i];
    const g1 = g[gAt + i + 1];
    const g2 = g[gAt + i + 2];
    const g3 = g[gAt + i + 3];
    const r0 = i * n;
    const r1 = r0 + n;
    const r2 = r1 + n;
    const r3 = r2 + n;
    for (let j = 0; j < n; j++) out[outAt + j] += g0 * w[r0 + j] + g1 * w[r1 + j] + (g2 * w[r2 + j] + g3 * w[r3 + j]);
  }
  for (; i < d; i++) {
    const gi = g[gAt + i];
    const row = i * n;
    for (let j = 0; j < n; j++) out[outAt + j] += gi * w[row + j];
  }
}

/**
 * dx[dxAt + j] += d/dx_j of sum_k dy_k * y_k for y = weight * x * scale, scale = 1 / sqrt(mean(x^2) + eps):
 * weight_j scale dy_j - x_j scale^3 / n * sum_k weight_k dy_k x_k (scale depends on every x_k).
 */
function rmsnormBackwardAdd(
  dx: Float64Array,
  dxAt: number,
  dy: Float64Array,
  x: Vec,
  xAt: number,
  scale: number,
  weight: Float32Array,
  n: number,
): void {
  let dot = 0;
  for (let j = 0; j < n; j++) dot += weight[j] * dy[j] * x[xAt + j];
  const c = (scale * scale * scale * dot) / n;
  for (let j = 0; j < n; j++) dx[dxAt + j] += scale * weight[j] * dy[j] - c * x[xAt + j];
}

/** Rotates the pairs (2i, 2i+1) of every head of vec[at, at + width) by +angle (forward) or -angle (sign -1, its transpose). */
function rope(
  vec: Vec,
  at: number,
  width: number,
  headSize: number,
  cos: Float64Array,
  sin: Float64Array,
  trigAt: number,
  sign: 1 | -1,
): void {
  for (let h = 0; h < width; h += headSize) {
    for (let i = 0; i < headSize; i += 2) {
      const a = at + h + i;
      const v0 = vec[a];
      const v1 = vec[a + 1];
      const c = cos[trigAt + (i >> 1)];
      const s = sign * sin[trigAt + (i >> 1)];
      vec[a] = v0 * c - v1 * s;
      vec[a + 1] = v0 * s + v1 * c;
    }
  }
}

// ------------------------------------------------------------------------------------ forward

/** Attention of head h at position p over positions 0..p (forward.ts's attendHead), keeping the probabilities. */
function attendHead(model: Llama2cModel, b: Buffers, act: LayerActivations, h: number, p: number): void {
  const { headSize, kvDim } = model;
  const kvHead = Math.floor(h / (model.config.nHeads / model.config.nKvHeads));
  const qAt = p * model.config.dim + h * headSize;
  const kvAt = kvHead * headSize;
  const { q, k, v } = act;
  // Scores in a small scratch row (stays in L1), copied to the stored probabilities once normalised.
  const scores = b.scores;
  const scale = 1 / Math.sqrt(headSize);
  let max = -Infinity;
  for (let t = 0; t <= p; t++) {
    const kAt = kvAt + t * kvDim;
    let score = 0;
    for (let i = 0; i < headSize; i++) score += q[qAt + i] * k[kAt + i];
    score *= scale;
    scores[t] = score;
    if (score > max) max = score;
  }
  let total = 0;
  for (let t = 0; t <= p; t++) {
    const e = Math.exp(scores[t] - max);
    scores[t] = e;
    total += e;
  }
  const acc = b.headAcc;
  acc.fill(0);
  const probs = act.probs;
  const row = h * triangle(b.positions) + triangle(p);
  for (let t = 0; t <= p; t++) {
    const a = scores[t] / total;
    probs[row + t] = a;
    const vAt = kvAt + t * kvDim;
    for (let i = 0; i < headSize; i++) acc[i] += a * v[vAt + i];
  }
  for (let i = 0; i < headSize; i++) b.attOut[h * headSize + i] = acc[i];
}

function attentionForward(model: Llama2cModel, b: Buffers, l: number, p: number): void {
  const { dim, nHeads } = model.config;
  const { kvDim, headSize } = model;
  const layer = model.layers[l];
  const act = b.layers[l];
  const at = p * dim;
  act.attScale[p] = rmsnorm(b.xn, act.x, at, layer.rmsAtt, dim);
  matmul(act.q, at, b.xn, 0, layer.wq, dim, dim);
  matmul(act.k, p * kvDim, b.xn, 0, layer.wk, dim, kvDim);
  matmul(act.v, p * kvDim, b.xn, 0, layer.wv, dim, kvDim);
  rope(act.q, at, dim, headSize, b.cos, b.sin, (p * headSize) >> 1, 1);
  rope(act.k, p * kvDim, kvDim, headSize, b.cos, b.sin, (p * headSize) >> 1, 1);
  for (let h = 0; h < nHeads; h++) attendHead(model, b, act, h, p);
  matmul(b.proj, 0, b.attOut, 0, layer.wo, dim, dim);
  for (let j = 0; j < dim; j++) act.mid[at + j] = act.x[at + j] + b.proj[j];
}

function ffnForward(model: Llama2cModel, b: Buffers, l: number, p: number): void {
  const { dim, hiddenDim } = model.config;
  const layer = model.layers[l];
  const act = b.layers[l];
  const at = p * dim;
  const hAt = p * hiddenDim;
  act.ffnScale[p] = rmsnorm(b.xn, act.mid, at, layer.rmsFfn, dim);
  matmul(act.h1, hAt, b.xn, 0, layer.w1, dim, hiddenDim);
  matmul(act.h3, hAt, b.xn, 0, layer.w3, dim, hiddenDim);
  for (let i = 0; i < hiddenDim; i++) {
    const v = act.h1[hAt + i];
    b.gated[i] = (v / (1 + Math.exp(-v))) * act.h3[hAt + i];
  }
  matmul(b.proj, 0, b.gated, 0, layer.w2, hiddenDim, dim);
  const next = l + 1 < b.layers.length ? b.layers[l + 1].x : b.top;
  for (let j = 0; j < dim; j++) next[at + j] = act.mid[at + j] + b.proj[j];
}

/** Runs `tokens[0..positions)` teacher-forced through the model with input table `embedding`, filling `b`. */
function forwardSequence(model: Llama2cModel, embedding: Float32Array, b: Buffers, tokens: Int32Array, positions: number): void {
  const { dim, vocabSize } = model.config;
  for (let p = 0; p < positions; p++) {
    const at = p * dim;
    const x0 = b.layers[0].x;
    for (let j = 0; j < dim; j++) x0[at + j] = embedding[tokens[p] * dim + j];
    for (let l = 0; l < b.layers.length; l++) {
      attentionForward(model, b, l, p);
      ffnForward(model, b, l, p);
    }
    b.finalScale[p] = rmsnorm(b.xn, b.top, at, model.rmsFinal, dim);
    matmul(b.logits, 0, b.xn, 0, model.wcls, dim, vocabSize);
    logSoftmax(b.logits, b.logProbs, p * vocabSize);
  }
}

/** klSum plus KL(orig || mod) of each position, added one position at a time as evaluatePerplexity does (same rounding). */
function addKl(klSum: number, original: Float64Array, modified: Float64Array, positions: number, vocab: number): number {
  let sum = klSum;
  for (let p = 0; p < positions; p++) {
    const row = p * vocab;
    let kl = 0;
    for (let i = 0; i < vocab; i++) {
      const a = original[row + i];
      kl += Math.exp(a) * (a - modified[row + i]);
    }
    sum += kl;
  }
  return sum;
}

// ------------------------------------------------------------------------------------ backward

/**
 * What the backward pass starts from at the logits: the KL against the original model's log-probs
 * [positions, vocab] (d KL / d logits = softmax(modified) - p_orig), or a given cotangent per
 * position [positions, vocab] (the gradient of sum_p cotangent_p . logits_p).
 */
type Target = { readonly logProbs: Float64Array } | { readonly cotangents: Float64Array };

/** dx[p] = d loss / d (residual after the last layer) at every position, through logits and the final RMSNorm. */
function headBackward(model: Llama2cModel, b: Buffers, target: Target, positions: number, invCount: number): void {
  const { dim, vocabSize } = model.config;
  b.dx.fill(0, 0, positions * dim);
  for (let p = 0; p < positions; p++) {
    const row = p * vocabSize;
    if ("cotangents" in target) {
      for (let i = 0; i < vocabSize; i++) b.dLogits[i] = target.cotangents[row + i] * invCount;
    } else {
      const original = target.logProbs;
      for (let i = 0; i < vocabSize; i++) b.dLogits[i] = (Math.exp(b.logProbs[row + i]) - Math.exp(original[row + i])) * invCount;
    }
    b.dxn.fill(0);
    matmulTransposedAdd(b.dxn, 0, b.dLogits, 0, model.wcls, dim, vocabSize);
    rmsnormBackwardAdd(b.dx, p * dim, b.dxn, b.top, p * dim, b.finalScale[p], model.rmsFinal, dim);
  }
}

/** Turns dx from d/d(layer output) into d/d(mid): the residual passes dx through, the SwiGLU branch adds to it. */
function ffnBackward(model: Llama2cModel, b: Buffers, l: number, positions: number): void {
  const { dim, hiddenDim } = model.config;
  const layer = model.layers[l];
  const act = b.layers[l];
  const { dg, dh1, dh3, dxn } = b;
  for (let p = 0; p < positions; p++) {
    const hAt = p * hiddenDim;
    dg.fill(0);
    matmulTransposedAdd(dg, 0, b.dx, p * dim, layer.w2, hiddenDim, dim);
    for (let i = 0; i < hiddenDim; i++) {
      const v = act.h1[hAt + i];
      const sig = 1 / (1 + Math.exp(-v));
      // silu(v) = v sig(v); silu'(v) = sig(v) (1 + v (1 - sig(v))).
      dh1[i] = dg[i] * act.h3[hAt + i] * sig * (1 + v * (1 - sig));
      dh3[i] = dg[i] * v * sig;
    }
    dxn.fill(0);
    matmulTransposedAdd(dxn, 0, dh1, 0, layer.w1, dim, hiddenDim);
    matmulTransposedAdd(dxn, 0, dh3, 0, layer.w3, dim, hiddenDim);
    rmsnormBackwardAdd(b.dx, p * dim, dxn, act.mid, p * dim, act.ffnScale[p], layer.rmsFfn, dim);
  }
}

/** Adds head h's contribution at query position p to dq, dk, dv (softmax with the causal mask, one shared kv head). */
function attendHeadBackward(model: Llama2cModel, b: Buffers, act: LayerActivations, h: number, p: number): void {
  const { headSize, kvDim } = model;
  const kvHead = Math.floor(h / (model.config.nHeads / model.config.nKvHeads));
  const qAt = p * model.config.dim + h * headSize;
  const kvAt = kvHead * headSize;
  const row = h * triangle(b.positions) + triangle(p);
  const { q, k, v, probs } = act;
  const { dAtt, dq, dk, dv, da } = b;
  const scale = 1 / Math.sqrt(headSize);
  // out = sum_t a_t v_t: da_t = dout . v_t, dv_t += a_t dout.
  let weighted = 0;
  for (let t = 0; t <= p; t++) {
    const a = probs[row + t];
    const vAt = kvAt + t * kvDim;
    let s = 0;
    for (let i = 0; i < headSize; i++) {
      const g = dAtt[qAt + i];
      s += g * v[vAt + i];
      dv[vAt + i] += a * g;
    }
    da[t] = s;
    weighted += a * s;
  }
  // Softmax: d score_t = a_t (da_t - sum_u a_u da_u); score_t = scale q . k_t.
  for (let t = 0; t <= p; t++) {
    const ds = probs[row + t] * (da[t] - weighted) * scale;
    const kAt = kvAt + t * kvDim;
    for (let i = 0; i < headSize; i++) {
      dq[qAt + i] += ds * k[kAt + i];
      dk[kAt + i] += ds * q[qAt + i];
    }
  }
}

/** Turns dx from d/d(mid) into d/d(layer input): the residual passes dx through, the attention branch adds to it. */
function attentionBackward(model: Llama2cModel, b: Buffers, l: number, positions: number): void {
  const { dim, nHeads } = model.config;
  const { kvDim, headSize } = model;
  const layer = model.layers[l];
  const act = b.layers[l];
  b.dAtt.fill(0, 0, positions * dim);
  b.dq.fill(0, 0, positions * dim);
  b.dk.fill(0, 0, positions * kvDim);
  b.dv.fill(0, 0, positions * kvDim);
  for (let p = 0; p < positions; p++) matmulTransposedAdd(b.dAtt, p * dim, b.dx, p * dim, layer.wo, dim, dim);
  for (let h = 0; h < nHeads; h++) for (let p = 0; p < positions; p++) attendHeadBackward(model, b, act, h, p);
  for (let p = 0; p < positions; p++) {
    // RoPE is a rotation: its transpose rotates by the negative angle. dk[p] is complete only now,
    // after every later query position has added to it.
    rope(b.dq, p * dim, dim, headSize, b.cos, b.sin, (p * headSize) >> 1, -1);
    rope(b.dk, p * kvDim, kvDim, headSize, b.cos, b.sin, (p * headSize) >> 1, -1);
    b.dxn.fill(0);
    matmulTransposedAdd(b.dxn, 0, b.dq, p * dim, layer.wq, dim, dim);
    matmulTransposedAdd(b.dxn, 0, b.dk, p * kvDim, layer.wk, dim, kvDim);
    matmulTransposedAdd(b.dxn, 0, b.dv, p * kvDim, layer.wv, dim, kvDim);
    rmsnormBackwardAdd(b.dx, p * dim, b.dxn, act.x, p * dim, act.attScale[p], layer.rmsAtt, dim);
  }
}

/** Adds d loss / d embedding of one sequence (already run forward into `b`; the backward pass leaves that forward intact) to `gradient`. */
function backwardSequence(
  model: Llama2cModel,
  b: Buffers,
  tokens: Int32Array,
  positions: number,
  target: Target,
  invCount: number,
  gradient: Float64Array,
): void {
  const { dim } = model.config;
  headBackward(model, b, target, positions, invCount);
  for (let l = b.layers.length - 1; l >= 0; l--) {
    ffnBackward(model, b, l, positions);
    attentionBackward(model, b, l, positions);
  }
  for (let p = 0; p < positions; p++) {
    const rowAt = tokens[p] * dim;
    for (let j = 0; j < dim; j++) gradient[rowAt + j] += b.dx[p * dim + j];
  }
}

// ------------------------------------------------------------------------------------ entry point

/** Checks the sequences and reference log-probs against the model; returns the number of predicted positions. */
function checkInputs(model: Llama2cModel, sequences: readonly Int32Array[], originalLogProbs: readonly Float64Array[]): number {
  const { vocabSize, seqLen } = model.config;
  if (sequences.length !== originalLogProbs.length)
    throw new CarvqError(`klGradient: ${sequences.length} sequences but ${originalLogProbs.length} original log-prob arrays`);
  let count = 0;
  sequences.forEach((tokens, s) => {
    const positions = Math.max(0, tokens.length - 1);
    if (positions > seqLen)
      throw new CarvqError(`klGradient: sequence ${s} predicts ${positions} tokens; ${model.path}'s seq_len allows ${seqLen}`);
    if (originalLogProbs[s].length < positions * vocabSize)
      throw new CarvqError(
        `klGradient: original log-probs of sequence ${s} hold ${originalLogProbs[s].length} values; ${positions} x ${vocabSize} needed`,
      );
    for (const token of tokens)
      if (!(token >= 0 && token < vocabSize))
        throw new CarvqError(`klGradient: sequence ${s} has token ${token}, out of range (0 to ${vocabSize - 1})`);
    count += positions;
  });
  if (count === 0) throw new CarvqError("klGradient: no sequence has a token to predict (each needs at least 2 tokens)");
  return count;
}

/**
 * Mean KL(p_orig || p_mod) over predicted positions (evaluatePerplexity's definition: in each sequence,
 * the positions p with p + 1 < length) of the model whose INPUT embedding is `embedding` (vocab x dim),
 * teacher-forced on `sequences`, and its gradient with respect to every row of `embedding` (rows of
 * tokens never used as an input are 0). `originalLogProbs[s]` is the original model's log-softmax for
 * sequence s, [positions, vocab] (tools/eval/perplexity.ts's originalEvaluation). The classifier stays
 * the original model's. Throws a CarvqError for a wrong shape, token or log-prob length.
 */
export function klGradient(
  model: Llama2cModel,
  embedding: Matrix,
  sequences: readonly Int32Array[],
  originalLogProbs: readonly Float64Array[],
  options: KlGradientOptions = {},
): KlGradient {
  const modified = withInputEmbedding(model, embedding); // checks the shape
  const count = checkInputs(model, sequences, originalLogProbs);
  const { vocabSize, dim } = model.config;
  const longest = Math.max(...sequences.map((tokens) => tokens.length - 1));
  const b = createBuffers(model, longest, options.precision ?? "float32");
  const gradient = new Float64Array(vocabSize * dim);
  let klSum = 0;
  for (let s = 0; s < sequences.length; s++) {
    const positions = sequences[s].length - 1;
    if (positions < 1) continue;
    forwardSequence(modified, modified.tokenEmbedding, b, sequences[s], positions);
    klSum = addKl(klSum, originalLogProbs[s], b.logProbs, positions, vocabSize);
    backwardSequence(modified, b, sequences[s], positions, { logProbs: originalLogProbs[s] }, 1 / count, gradient);
  }
  return { kl: klSum / count, tokens: count, gradient: Float32Array.from(gradient) };
}

/**
 * For one sequence (BOS + tokens, teacher-forced) and each cotangent set c ([positions, vocab]), the
 * gradient with respect to every row of `embedding` of sum_p c_p . logits_p: vector-Jacobian products
 * of the logits, what tools/llama2c/fisher.ts builds the model's curvature from. The forward pass runs
 * once for all sets (the backward pass leaves it intact). Throws a CarvqError for a wrong shape,
 * token or cotangent length.
 */
export function logitGradients(
  model: Llama2cModel,
  embedding: Matrix,
  tokens: Int32Array,
  cotangentSets: readonly Float64Array[],
  options: KlGradientOptions = {},
): Float64Array[] {
  const modified = withInputEmbedding(model, embedding); // checks the shape
  const { vocabSize, dim, seqLen } = model.config;
  const positions = tokens.length - 1;
  if (positions < 1) throw new CarvqError("logitGradients: the sequence has no token to predict (it needs at least 2 tokens)");
  if (positions > seqLen)
    throw new CarvqError(`logitGradients: the sequence predicts ${positions} tokens; ${model.path}'s seq_len allows ${seqLen}`);
  for (const token of tokens)
    if (!(token >= 0 && token < vocabSize)) throw new CarvqError(`logitGradients: token ${token} is out of range (0 to ${vocabSize - 1})`);
  cotangentSets.forEach((c, k) => {
    if (c.length !== positions * vocabSize)
      throw new CarvqError(`logitGradients: cotangent set ${k} holds ${c.length} values; ${positions} x ${vocabSize} needed`);
  });
  const b = createBuffers(model, positions, options.precision ?? "float32");
  forwardSequence(modified, modified.tokenEmbedding, b, tokens, positions);
  return cotangentSets.map((cotangents) => {
    const gradient = new Float64Array(vocabSize * dim);
    backwardSequence(modified, b, tokens, positions, { cotangents }, 1, gradient);
    return gradient;
  });
}
