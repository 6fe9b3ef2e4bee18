// Writes Hugging Face model folders: config.json, model.safetensors and optionally tokenizer.json.
// For tests and benchmarks (no model hub here): tiny random checkpoints of each architecture, a
// 1B-shaped one for timing, and stories260K exported from llama2.c, with q and k rows permuted from
// llama2.c's interleaved RoPE pairs (2i, 2i+1) to the rotate-half layout (i, i + headDim/2), as the
// usual llama2.c-to-Hugging-Face export does, and tok512.bin turned into a sentencepiece-style BPE
// tokenizer.json.
import { mkdirSync, openSync, closeSync, writeSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { f32ToF16 } from "../fp16.ts";
import { createRandom, deriveSeed } from "../random.ts";
import type { Architecture } from "./config.ts";
import type { Llama2cModel } from "../llama2c/model.ts";
import type { Tokenizer } from "../llama2c/tokenizer.ts";

export type StoredDtype = "F32" | "F16" | "BF16";

export interface TensorToWrite {
  readonly name: string;
  readonly shape: readonly number[];
  /** Values, rounded to `dtype` on writing (bf16: to nearest even); a function is called only when the tensor is written. */
  readonly data: Float32Array | (() => Float32Array);
  readonly dtype: StoredDtype;
}

/** bf16 bits of f32 bits, rounded to nearest even (NaN kept a NaN). */
function bitsToBf16(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

const scratchF32 = new Float32Array(1);
const scratchBits = new Uint32Array(scratchF32.buffer);

/** bf16 bits of an f32 value, rounded to nearest even (NaN kept a NaN). */
export function f32ToBf16(value: number): number {
  scratchF32[0] = value;
  return bitsToBf16(scratchBits[0]);
}

function elementCount(t: TensorToWrite): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

function encodeTensor(t: TensorToWrite): Uint8Array {
  const data = typeof t.data === "function" ? t.data() : t.data;
  if (data.length !== elementCount(t)) throw new Error(`${t.name}: ${data.length} values for shape [${t.shape.join(", ")}]`);
  if (t.dtype === "F32") return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const halves = new Uint16Array(data.length);
  if (t.dtype === "BF16") {
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < halves.length; i++) halves[i] = bitsToBf16(bits[i]);
  } else {
    for (let i = 0; i < halves.length; i++) halves[i] = f32ToF16(data[i]);
  }
  return new Uint8Array(halves.buffer);
}

/** Writes one safetensors file, tensor by tensor (a 1B-shaped checkpoint never sits in memory twice). */
export function writeSafetensors(path: string, tensors: readonly TensorToWrite[]): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    const bytes = elementCount(t) * (t.dtype === "F32" ? 4 : 2);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8); // data starts 8-byte aligned
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = openSync(path, "w");
  try {
    writeSync(fd, prefix);
    writeSync(fd, Buffer.from(json));
    for (const t of tensors) writeSync(fd, encodeTensor(t));
  } finally {
    closeSync(fd);
  }
}

export interface HfFolder {
  readonly config: Record<string, unknown>;
  readonly tensors: readonly TensorToWrite[];
  readonly tokenizer?: Record<string, unknown>;
}

/** Writes `dir`/config.json, model.safetensors and (if given) tokenizer.json. */
export function writeHfFolder(dir: string, folder: HfFolder): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), `${JSON.stringify(folder.config, null, 2)}\n`);
  writeSafetensors(join(dir, "model.safetensors"), folder.tensors);
  if (folder.tokenizer !== undefined) writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(folder.tokenizer));
}

/**
 * Rows of a [heads x headDim, cols] q or k weight reordered from interleaved pairs to halves: row
 * (h, j, i) of the result (j in {0, 1}, i < headDim / 2) is row h * headDim + 2i + j of `w`.
 */
export function permuteForRotateHalf(w: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const to = (h * headDim + j * half + i) * cols;
        const from = (h * headDim + 2 * i + j) * cols;
        out.set(w.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

/** A llama2.c checkpoint as a LlamaForCausalLM folder (f32 weights), with tokenizer.json when a tokenizer is given. */
export function llama2cToHf(model: Llama2cModel, tokenizer?: Tokenizer): HfFolder {
  const { dim, hiddenDim, nHeads, nKvHeads, vocabSize, seqLen } = model.config;
  const { headSize, kvDim } = model;
  const tied = model.wcls === model.tokenEmbedding;
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: dim,
    intermediate_size: hiddenDim,
    num_hidden_layers: model.layers.length,
    num_attention_heads: nHeads,
    num_key_value_heads: nKvHeads,
    vocab_size: vocabSize,
    max_position_embeddings: seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: tied,
    hidden_act: "silu",
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
  };
  const f32 = (name: string, shape: number[], data: Float32Array): TensorToWrite => ({ name, shape, data, dtype: "F32" });
  const tensors: TensorToWrite[] = [f32("model.embed_tokens.weight", [vocabSize, dim], model.tokenEmbedding)];
  model.layers.forEach((layer, l) => {
    const p = `model.layers.${l}.`;
    tensors.push(
      f32(`${p}input_layernorm.weight`, [dim], layer.rmsAtt),
      f32(`${p}self_attn.q_proj.weight`, [dim, dim], permuteForRotateHalf(layer.wq, nHeads, headSize, dim)),
      f32(`${p}self_attn.k_proj.weight`, [kvDim, dim], permuteForRotateHalf(layer.wk, nKvHeads, headSize, dim)),
      f32(`${p}self_attn.v_proj.weight`, [kvDim, dim], layer.wv),
      f32(`${p}self_attn.o_proj.weight`, [dim, dim], layer.wo),
      f32(`${p}post_attention_layernorm.weight`, [dim], layer.rmsFfn),
      f32(`${p}mlp.gate_proj.weight`, [hiddenDim, dim], layer.w1),
      f32(`${p}mlp.up_proj.weight`, [hiddenDim, dim], layer.w3),
      f32(`${p}mlp.down_proj.weight`, [dim, hiddenDim], layer.w2),
    );
  });
  tensors.push(f32("model.norm.weight", [dim], model.rmsFinal));
  if (!tied) tensors.push(f32("lm_head.weight", [vocabSize, dim], model.wcls));
  return { config, tensors, tokenizer: tokenizer === undefined ? undefined : llama2cTokenizerJson(tokenizer) };
}

const SPECIAL_PIECES = ["<unk>", "<s>", "</s>"];

/**
 * A llama2.c sentencepiece vocabulary (ids 0-2 unk/BOS/EOS, 3-258 the bytes as <0xXX>, then pieces
 * with spaces) as a tokenizer.json BPE model the way sentencepiece Llama tokenizers are converted:
 * "▁" for spaces, a "▁" prepended to the text, byte fallback, BOS added, and one merge (left, right)
 * for every way a piece splits into two pieces, ranked by the merged piece's score. Ranking merges
 * by score is run.c's encode (merge the adjacent pair whose result scores highest), so both give the
 * same ids.
 */
export function llama2cTokenizerJson(tokenizer: Tokenizer): Record<string, unknown> {
  const pieces = tokenizer.pieces.map((bytes, id) =>
    id < SPECIAL_PIECES.length ? SPECIAL_PIECES[id] : Buffer.from(bytes).toString("utf8").replaceAll(" ", "▁"),
  );
  const vocab: Record<string, number> = {};
  pieces.forEach((piece, id) => {
    if (!(piece in vocab)) vocab[piece] = id;
  });
  const merges: { left: string; right: string; score: number; id: number }[] = [];
  pieces.forEach((piece, id) => {
    if (id < 3 + 256) return; // specials and bytes are never merge results
    const chars = Array.from(piece);
    for (let cut = 1; cut < chars.length; cut++) {
      const left = chars.slice(0, cut).join("");
      const right = chars.slice(cut).join("");
      if (left in vocab && right in vocab) merges.push({ left, right, score: tokenizer.scores[id], id });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id || vocab[a.left] - vocab[b.left]);
  const special = (id: number) => ({
    id,
    content: SPECIAL_PIECES[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "▁" },
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map((m) => [m.left, m.right]),
    },
  };
}

export interface RandomCheckpointOptions {
  readonly architecture: Architecture;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly vocabSize: number;
  readonly dtype: StoredDtype;
  readonly tied: boolean;
  readonly seed: number;
  /** config.json head_dim, when it differs from hidden_size / heads. */
  readonly headDim?: number;
  readonly ropeTheta?: number;
  /** config.json rope_scaling as written (e.g. Llama 3.2's llama3 block). */
  readonly ropeScaling?: Record<string, unknown>;
  readonly partialRotaryFactor?: number;
  readonly maxPositions?: number;
  /** Extra config.json fields (e.g. attention_bias). */
  readonly extraConfig?: Record<string, unknown>;
}

/**
 * A checkpoint of the given shape with seeded random weights: matrices uniform in +-sqrt(3 / in)
 * (unit-variance outputs for unit-variance inputs, so activations stay in range through the layers),
 * embeddings uniform in +-1, norm weights near 1, biases small. The tensor names and shapes are those
 * transformers' modeling code for the architecture loads; values are drawn only while writing.
 */
export function randomHfFolder(o: RandomCheckpointOptions): HfFolder {
  const d = o.hiddenSize;
  const headDim = o.headDim ?? d / o.heads;
  const qDim = o.heads * headDim;
  const kvDim = o.kvHeads * headDim;
  const ffn = o.intermediateSize;
  const fused = o.architecture === "Phi3ForCausalLM";
  const qkvBias = o.architecture === "Qwen2ForCausalLM" || o.extraConfig?.attention_bias === true;
  const oBias = o.architecture !== "Qwen2ForCausalLM" && o.extraConfig?.attention_bias === true;
  let index = 0;
  const uniform = (shape: number[], center: number, halfWidth: number): TensorToWrite["data"] => {
    const seed = deriveSeed(o.seed, index++);
    return () => {
      const next = createRandom(seed);
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      for (let i = 0; i < data.length; i++) data[i] = center + (2 * next() - 1) * halfWidth;
      return data;
    };
  };
  const tensor = (name: string, shape: number[], center: number, halfWidth: number, dtype = o.dtype): TensorToWrite => ({
    name,
    shape,
    dtype,
    data: uniform(shape, center, halfWidth),
  });
  const linear = (name: string, out: number, inDim: number) => tensor(name, [out, inDim], 0, Math.sqrt(3 / inDim));
  const norm = (name: string) => tensor(name, [d], 1, 0.1);
  const bias = (name: string, n: number) => tensor(name, [n], 0, 0.1);

  const tensors: TensorToWrite[] = [tensor("model.embed_tokens.weight", [o.vocabSize, d], 0, 1)];
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(norm(`${p}input_layernorm.weight`));
    if (fused) tensors.push(linear(`${p}self_attn.qkv_proj.weight`, qDim + 2 * kvDim, d));
    else
      tensors.push(
        linear(`${p}self_attn.q_proj.weight`, qDim, d),
        linear(`${p}self_attn.k_proj.weight`, kvDim, d),
        linear(`${p}self_attn.v_proj.weight`, kvDim, d),
      );
    if (qkvBias)
      tensors.push(
        bias(`${p}self_attn.q_proj.bias`, qDim),
        bias(`${p}self_attn.k_proj.bias`, kvDim),
        bias(`${p}self_attn.v_proj.bias`, kvDim),
      );
    tensors.push(linear(`${p}self_attn.o_proj.weight`, d, qDim));
    if (oBias) tensors.push(bias(`${p}self_attn.o_proj.bias`, d));
    tensors.push(norm(`${p}post_attention_layernorm.weight`));
    if (fused) tensors.push(linear(`${p}mlp.gate_up_proj.weight`, 2 * ffn, d));
    else tensors.push(linear(`${p}mlp.gate_proj.weight`, ffn, d), linear(`${p}mlp.up_proj.weight`, ffn, d));
    tensors.push(linear(`${p}mlp.down_proj.weight`, d, ffn));
  }
  tensors.push(norm("model.norm.weight"));
  if (!o.tied) tensors.push(linear("lm_head.weight", o.vocabSize, d));
  const config: Record<string, unknown> = {
    architectures: [o.architecture],
    hidden_size: d,
    intermediate_size: ffn,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    vocab_size: o.vocabSize,
    max_position_embeddings: o.maxPositions ?? 2048,
    rms_norm_eps: 1e-5,
    rope_theta: o.ropeTheta ?? 10000,
    tie_word_embeddings: o.tied,
    hidden_act: "silu",
    torch_dtype: { F32: "float32", F16: "float16", BF16: "bfloat16" }[o.dtype],
    ...(o.headDim === undefined ? {} : { head_dim: o.headDim }),
    ...(o.ropeScaling === undefined ? {} : { rope_scaling: o.ropeScaling }),
    ...(o.partialRotaryFactor === undefined ? {} : { partial_rotary_factor: o.partialRotaryFactor }),
    ...o.extraConfig,
  };
  return { config, tensors };
}
