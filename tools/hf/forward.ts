// The forward pass of a Hugging Face decoder (tools/hf/config.ts lists the architectures), a whole
// window of T tokens at once (prefill), so every projection is one [T x in] · Wᵀ product on the
// model's matmul backend:
//   x = embedding[tokens]
//   per layer: h = rmsnorm(x); q, k, v = h Wqᵀ (+ bias), h Wkᵀ, h Wvᵀ    (Phi-3: one fused [q; k; v])
//              rotate-half RoPE on the first rotaryDim dims of every q and k head
//              x += causal softmax(q kᵀ / sqrt(headDim)) v  Woᵀ (+ bias)   (GQA: heads / kvHeads q heads per kv head)
//              h = rmsnorm(x); x += (silu(h Wgateᵀ) * h Wupᵀ) Wdownᵀ    (Phi-3: one fused [gate; up])
//   hidden = rmsnorm(x); logits = hidden · lm_headᵀ (headLogits, in row chunks: the vocabulary is large)
// The elementwise arithmetic is the llama2.c forward's (tools/llama2c/forward.ts): RMSNorm, RoPE and
// the softmax in doubles rounded to f32. Attention's two products (q · kᵀ and p · v) run on the
// backend like the projections, in f32 where llama2.c sums in doubles: a llama2.c model exported to
// this layout (tools/hf/write.ts) gives its perplexity to about 1e-7 relative, not to the bit.
import { CarvqError } from "../errors.ts";
import { ropeAttentionFactor, ropeInverseFrequencies } from "./config.ts";
import type { HfModel, Weight } from "./model.ts";

/** out[r] = weight * x[r] / rms(x[r]) for each of `rows` rows of width n. */
function rmsnormRows(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, n: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const at = r * n;
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[at + j] * x[at + j];
    const scale = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) out[at + j] = weight[j] * (scale * x[at + j]);
  }
}

function project(model: HfModel, x: Float32Array, rows: number, weight: Weight, out: Float32Array): void {
  model.backend.matmul({ x, rows, weight: weight.data, dtype: weight.dtype, inDim: weight.inDim, outDim: weight.outDim, out });
}

function addBias(out: Float32Array, bias: Float32Array | null, rows: number): void {
  if (bias === null) return;
  const n = bias.length;
  for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) out[r * n + j] += bias[j];
}

/** Copies columns [from, from + width) of each row of a [rows x stride] array into a dense [rows x width] one. */
function takeColumns(out: Float32Array, src: Float32Array, rows: number, stride: number, from: number, width: number): void {
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * stride + from, r * stride + from + width), r * width);
}

/** Rotate-half RoPE on every head of row `row` of `vec` (width heads x headDim), angles pos * invFreq. */
function ropeRow(
  vec: Float32Array,
  at: number,
  heads: number,
  headDim: number,
  rotaryDim: number,
  cos: Float64Array,
  sin: Float64Array,
): void {
  const half = rotaryDim / 2;
  for (let h = 0; h < heads; h++) {
    const base = at + h * headDim;
    for (let i = 0; i < half; i++) {
      const a = base + i;
      const b = a + half;
      const v0 = vec[a];
      const v1 = vec[b];
      const c = cos[i];
      const s = sin[i];
      vec[a] = v0 * c - v1 * s;
      vec[b] = v0 * s + v1 * c;
    }
  }
}

function applyRope(model: HfModel, q: Float32Array, k: Float32Array, rows: number): void {
  const { heads, kvHeads, headDim, rotaryDim } = model.config;
  const invFreq = ropeInverseFrequencies(model.config, rows);
  const scale = ropeAttentionFactor(model.config);
  const cos = new Float64Array(invFreq.length);
  const sin = new Float64Array(invFreq.length);
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < invFreq.length; i++) {
      const angle = t * invFreq[i];
      cos[i] = Math.cos(angle) * scale;
      sin[i] = Math.sin(angle) * scale;
    }
    ropeRow(q, t * heads * headDim, heads, headDim, rotaryDim, cos, sin);
    ropeRow(k, t * kvHeads * headDim, kvHeads, headDim, rotaryDim, cos, sin);
  }
}

/** Scratch weights for attention's products, allocated through the backend once per size (it may keep them). */
interface AttentionScratch {
  /** Values each array holds (positions x headDim, for any model on this backend). */
  readonly capacity: number;
  /** One kv head's keys, [T x headDim]: the "weight" of q · kᵀ. */
  readonly keys: Float32Array;
  /** One kv head's values transposed, [headDim x T]: the "weight" of p · v. */
  readonly valuesT: Float32Array;
}

const attentionScratch = new WeakMap<object, AttentionScratch>();

function scratchFor(model: HfModel, rows: number): AttentionScratch {
  const { backend } = model;
  let scratch = attentionScratch.get(backend);
  const needed = rows * model.config.headDim;
  if (scratch === undefined || scratch.capacity < needed) {
    const capacity = Math.max(needed, scratch?.capacity ?? 0);
    scratch = {
      capacity,
      keys: backend.allocWeight("f32", capacity) as Float32Array,
      valuesT: backend.allocWeight("f32", capacity) as Float32Array,
    };
    attentionScratch.set(backend, scratch);
  }
  return scratch;
}

/**
 * Causal grouped-query attention: out[t, head h] = Σ_{s <= t} softmax_s(q_t,h · k_s,g / sqrt(headDim)) v_s,g
 * with g = the kv head of h. Per kv head, two products on the backend: scores = Q kᵀ for the group's
 * query heads stacked [group·T x headDim], then (masked softmax) · v. The masked half of the score
 * matrix is computed and discarded: at T = 512 that is a few percent of the window's products, and
 * it keeps attention on the same kernel as every other product.
 */
function attention(model: HfModel, q: Float32Array, k: Float32Array, v: Float32Array, rows: number, out: Float32Array): void {
  const { heads, kvHeads, headDim } = model.config;
  const qStride = heads * headDim;
  const kvStride = kvHeads * headDim;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const { keys, valuesT } = scratchFor(model, rows);
  const queries = new Float32Array(group * rows * headDim);
  const scores = new Float32Array(group * rows * rows);
  const mixed = new Float32Array(group * rows * headDim);
  const e = new Float64Array(rows);
  for (let g = 0; g < kvHeads; g++) {
    for (let s = 0; s < rows; s++) {
      for (let i = 0; i < headDim; i++) {
        keys[s * headDim + i] = k[s * kvStride + g * headDim + i];
        valuesT[i * rows + s] = v[s * kvStride + g * headDim + i];
      }
    }
    for (let j = 0; j < group; j++) {
      const h = g * group + j;
      for (let t = 0; t < rows; t++)
        queries.set(q.subarray(t * qStride + h * headDim, t * qStride + (h + 1) * headDim), (j * rows + t) * headDim);
    }
    model.backend.matmul({ x: queries, rows: group * rows, weight: keys, dtype: "f32", inDim: headDim, outDim: rows, out: scores });
    for (let r = 0; r < group * rows; r++) softmaxCausal(scores, r * rows, r % rows, rows, scale, e);
    model.backend.matmul({ x: scores, rows: group * rows, weight: valuesT, dtype: "f32", inDim: rows, outDim: headDim, out: mixed });
    for (let j = 0; j < group; j++) {
      const h = g * group + j;
      for (let t = 0; t < rows; t++)
        out.set(mixed.subarray((j * rows + t) * headDim, (j * rows + t + 1) * headDim), t * qStride + h * headDim);
    }
  }
}

/** In place on row[at, at + rows): softmax of scale * row over s <= t (in doubles, `e` scratch), zero for s > t. */
function softmaxCausal(row: Float32Array, at: number, t: number, rows: number, scale: number, e: Float64Array): void {
  let max = -Infinity;
  for (let s = 0; s <= t; s++) max = Math.max(max, row[at + s] * scale);
  let total = 0;
  for (let s = 0; s <= t; s++) total += e[s] = Math.exp(row[at + s] * scale - max);
  for (let s = 0; s <= t; s++) row[at + s] = e[s] / total;
  row.fill(0, at + t + 1, at + rows);
}

/** Refuses a window the model cannot run as its own code would (a token id or length out of range). */
function checkWindow(model: HfModel, tokens: ArrayLike<number>): void {
  const { vocabSize, slidingWindow } = model.config;
  if (tokens.length < 1) throw new CarvqError(`${model.path}: a window needs at least one token`);
  if (slidingWindow !== null && tokens.length > slidingWindow) {
    throw new CarvqError(
      `${model.path}: a window of ${tokens.length} tokens exceeds the model's sliding_window ${slidingWindow}; use a --ctx of at most ${slidingWindow}`,
    );
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
      throw new CarvqError(`${model.path}: token ${t} at position ${i} is out of range (0 to ${vocabSize - 1})`);
  }
}

/**
 * Runs `tokens` (one window, positions 0 .. T - 1) through the model and returns the final hidden
 * states after the last RMSNorm, [T x hidden]. Row p, through headLogits, predicts token p + 1.
 */
export function prefill(model: HfModel, tokens: ArrayLike<number>): Float32Array {
  checkWindow(model, tokens);
  const { hiddenSize: d, intermediateSize: ffn, heads, kvHeads, headDim, rmsEps } = model.config;
  const T = tokens.length;
  const qDim = heads * headDim;
  const kvDim = kvHeads * headDim;
  const x = new Float32Array(T * d);
  const h = new Float32Array(T * d);
  const proj = new Float32Array(T * d);
  const q = new Float32Array(T * qDim);
  const k = new Float32Array(T * kvDim);
  const v = new Float32Array(T * kvDim);
  const att = new Float32Array(T * qDim);
  const gate = new Float32Array(T * ffn);
  const up = new Float32Array(T * ffn);
  const fused = model.config.fusedProjections ? new Float32Array(T * Math.max(qDim + 2 * kvDim, 2 * ffn)) : null;

  for (let t = 0; t < T; t++) model.embedding.rowInto(tokens[t], x, t * d);

  for (const layer of model.layers) {
    rmsnormRows(h, x, layer.inputNorm, T, d, rmsEps);
    if (layer.qkv !== null && fused !== null) {
      const width = qDim + 2 * kvDim;
      project(model, h, T, layer.qkv, fused);
      takeColumns(q, fused, T, width, 0, qDim);
      takeColumns(k, fused, T, width, qDim, kvDim);
      takeColumns(v, fused, T, width, qDim + kvDim, kvDim);
    } else if (layer.q !== null && layer.k !== null && layer.v !== null) {
      project(model, h, T, layer.q, q);
      project(model, h, T, layer.k, k);
      project(model, h, T, layer.v, v);
    }
    addBias(q, layer.qBias, T);
    addBias(k, layer.kBias, T);
    addBias(v, layer.vBias, T);
    applyRope(model, q, k, T);
    attention(model, q, k, v, T, att);
    project(model, att, T, layer.o, proj);
    addBias(proj, layer.oBias, T);
    for (let i = 0; i < T * d; i++) x[i] += proj[i];

    rmsnormRows(h, x, layer.postNorm, T, d, rmsEps);
    if (layer.gateUp !== null && fused !== null) {
      project(model, h, T, layer.gateUp, fused);
      takeColumns(gate, fused, T, 2 * ffn, 0, ffn);
      takeColumns(up, fused, T, 2 * ffn, ffn, ffn);
    } else if (layer.gate !== null && layer.up !== null) {
      project(model, h, T, layer.gate, gate);
      project(model, h, T, layer.up, up);
    }
    for (let i = 0; i < T * ffn; i++) {
      const g = gate[i];
      gate[i] = (g / (1 + Math.exp(-g))) * up[i];
    }
    project(model, gate, T, layer.down, proj);
    for (let i = 0; i < T * d; i++) x[i] += proj[i];
  }
  rmsnormRows(x, x, model.finalNorm, T, d, rmsEps);
  return x;
}

/** out[0 .. count x vocab) = logits of hidden rows [from, from + count) (the head keeps its original weights). */
export function headLogits(model: HfModel, hidden: Float32Array, from: number, count: number, out: Float32Array): void {
  const d = model.config.hiddenSize;
  project(model, hidden.subarray(from * d, (from + count) * d), count, model.lmHead, out);
}

/** Logits [T x vocab] of a whole window (for small vocabularies and tests; perplexity goes by row chunks). */
export function windowLogits(model: HfModel, tokens: ArrayLike<number>): Float32Array {
  const hidden = prefill(model, tokens);
  const out = new Float32Array(tokens.length * model.config.vocabSize);
  headLogits(model, hidden, 0, tokens.length, out);
  return out;
}
