// A Hugging Face decoder checkpoint's weights in memory, at their stored precision: every matrix the
// forward multiplies by stays bf16, f16 or f32 as the file holds it (placed by the matmul backend,
// which widens inside the product), so a model costs its file size. The small vectors (norm weights,
// biases) are widened to f32 once. Tensor names follow transformers' modeling code for each
// architecture; a missing tensor or a shape that disagrees with config.json is a one-line error
// naming both.
import { join } from "node:path";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { convertBf16ToF32, convertF16ToF32 } from "../readers/halfFloat.ts";
import { openCheckpoint, type Checkpoint } from "../readers/checkpoint.ts";
import { parseHfConfig, type HfConfig } from "./config.ts";
import type { MatmulBackend, WeightArray, WeightDtype } from "./matmul.ts";

/** A matrix [outDim, inDim] (an nn.Linear weight, or the embedding [vocab, hidden]) at stored precision. */
export interface Weight {
  readonly name: string;
  readonly dtype: WeightDtype;
  readonly data: WeightArray;
  readonly outDim: number;
  readonly inDim: number;
}

export interface HfLayer {
  readonly inputNorm: Float32Array;
  /** Separate q, k, v projections, or null when the checkpoint fuses them into qkv. */
  readonly q: Weight | null;
  readonly k: Weight | null;
  readonly v: Weight | null;
  /** Phi-3's fused [q; k; v] projection, or null. */
  readonly qkv: Weight | null;
  readonly qBias: Float32Array | null;
  readonly kBias: Float32Array | null;
  readonly vBias: Float32Array | null;
  readonly o: Weight;
  readonly oBias: Float32Array | null;
  readonly postNorm: Float32Array;
  readonly gate: Weight | null;
  readonly up: Weight | null;
  /** Phi-3's fused [gate; up] projection, or null. */
  readonly gateUp: Weight | null;
  readonly down: Weight;
}

/** Where the forward takes a token's input vector from: the checkpoint's embedding or a replacement. */
export interface InputEmbedding {
  readonly rows: number;
  readonly cols: number;
  /** Writes token `t`'s row into out[at, at + cols), as f32. */
  rowInto(t: number, out: Float32Array, at: number): void;
}

export interface HfModel {
  /** The folder (for messages). */
  readonly path: string;
  readonly config: HfConfig;
  readonly embedding: InputEmbedding;
  /** The checkpoint's own embedding matrix (also the head when tied). */
  readonly embedTokens: Weight;
  readonly layers: readonly HfLayer[];
  readonly finalNorm: Float32Array;
  /** Output head [vocab, hidden]: the original embedding when tied, whatever `embedding` is. */
  readonly lmHead: Weight;
  readonly backend: MatmulBackend;
}

/** An InputEmbedding reading rows of a stored-precision matrix. */
export function weightEmbedding(weight: Weight): InputEmbedding {
  const { data, dtype, inDim: cols, outDim: rows } = weight;
  return {
    rows,
    cols,
    rowInto(t, out, at) {
      const from = t * cols;
      const target = out.subarray(at, at + cols);
      if (dtype === "f32") target.set((data as Float32Array).subarray(from, from + cols));
      else if (dtype === "bf16") convertBf16ToF32((data as Uint16Array).subarray(from, from + cols), target);
      else convertF16ToF32((data as Uint16Array).subarray(from, from + cols), target);
    },
  };
}

/** An InputEmbedding reading rows of an f32 matrix (e.g. a blob's decoded table). */
export function matrixEmbedding(matrix: Matrix): InputEmbedding {
  const { rows, cols, data } = matrix;
  return { rows, cols, rowInto: (t, out, at) => out.set(data.subarray(t * cols, (t + 1) * cols), at) };
}

/**
 * The same model with its input embedding replaced. The output head keeps its original weights, also
 * when tied to the embedding, as a deployment that compresses only the input table would.
 */
export function withHfInputEmbedding(model: HfModel, embedding: InputEmbedding, name = "replacement embedding"): HfModel {
  const { vocabSize, hiddenSize } = model.config;
  if (embedding.rows !== vocabSize || embedding.cols !== hiddenSize) {
    throw new CarvqError(
      `${name} is ${embedding.rows} x ${embedding.cols} but ${model.path}'s token embedding is ${vocabSize} x ${hiddenSize}`,
    );
  }
  return { ...model, embedding };
}

const DTYPES: Readonly<Record<string, WeightDtype>> = { F32: "f32", F16: "f16", BF16: "bf16" };

/**
 * Loads a Hugging Face folder (config.json + safetensors, single or sharded) onto `backend`.
 * `beforeWeights` sees the config before any weight is read (to refuse a mismatched request
 * before a multi-gigabyte load).
 */
export async function loadHfModel(dir: string, backend: MatmulBackend, beforeWeights?: (config: HfConfig) => void): Promise<HfModel> {
  const checkpoint = await openCheckpoint(dir);
  if (checkpoint.config === undefined) throw new CarvqError(`${dir}: not a Hugging Face model folder (no config.json beside the weights)`);
  const config = parseHfConfig(checkpoint.config, join(dir, "config.json"));
  beforeWeights?.(config);
  return buildModel(dir, config, checkpoint, backend);
}

async function buildModel(dir: string, config: HfConfig, checkpoint: Checkpoint, backend: MatmulBackend): Promise<HfModel> {
  const { hiddenSize: d, intermediateSize: ffn, heads, kvHeads, headDim, vocabSize } = config;
  const info = (name: string) => {
    const tensor = checkpoint.tensors.get(name);
    if (tensor === undefined)
      throw new CarvqError(`${dir}: checkpoint has no tensor ${name}, which ${config.architecture} with this config.json needs`);
    return tensor;
  };
  const checkShape = (name: string, expected: readonly number[]) => {
    const { shape } = info(name);
    if (shape.length !== expected.length || shape.some((v, i) => v !== expected[i])) {
      throw new CarvqError(`${dir}: tensor ${name} has shape [${shape.join(", ")}]; config.json implies [${expected.join(", ")}]`);
    }
  };
  const dtypeOf = (name: string): WeightDtype => {
    const t = info(name);
    const dtype = DTYPES[t.dtype];
    if (dtype === undefined || t.quantized || t.bigEndian || t.strides !== undefined) {
      throw new CarvqError(
        `${dir}: tensor ${name} is stored as ${t.dtype}${t.bigEndian ? " big-endian" : ""}${t.strides ? " in a non-row-major order" : ""}; the forward reads F32, F16 or BF16 little-endian row-major tensors`,
      );
    }
    return dtype;
  };
  const matrix = async (name: string, outDim: number, inDim: number): Promise<Weight> => {
    checkShape(name, [outDim, inDim]);
    const dtype = dtypeOf(name);
    const data = backend.allocWeight(dtype, outDim * inDim);
    const raw = await checkpoint.readRaw(name);
    if (raw.byteLength !== data.byteLength)
      throw new CarvqError(
        `${dir}: tensor ${name} holds ${raw.byteLength} bytes; [${outDim}, ${inDim}] of ${dtype} needs ${data.byteLength}`,
      );
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(raw);
    return { name, dtype, data, outDim, inDim };
  };
  const vector = async (name: string, length: number): Promise<Float32Array> => {
    checkShape(name, [length]);
    const dtype = dtypeOf(name);
    const raw = await checkpoint.readRaw(name);
    if (raw.byteLength !== length * (dtype === "f32" ? 4 : 2))
      throw new CarvqError(
        `${dir}: tensor ${name} holds ${raw.byteLength} bytes; [${length}] of ${dtype} needs ${length * (dtype === "f32" ? 4 : 2)}`,
      );
    if (dtype === "f32") return new Float32Array(raw.slice().buffer);
    const out = new Float32Array(length);
    const halves = new Uint16Array(raw.slice().buffer);
    (dtype === "bf16" ? convertBf16ToF32 : convertF16ToF32)(halves, out);
    return out;
  };

  const qDim = heads * headDim;
  const kvDim = kvHeads * headDim;
  const layers: HfLayer[] = [];
  for (let l = 0; l < config.layers; l++) {
    const p = `model.layers.${l}.`;
    const fused = config.fusedProjections;
    layers.push({
      inputNorm: await vector(`${p}input_layernorm.weight`, d),
      q: fused ? null : await matrix(`${p}self_attn.q_proj.weight`, qDim, d),
      k: fused ? null : await matrix(`${p}self_attn.k_proj.weight`, kvDim, d),
      v: fused ? null : await matrix(`${p}self_attn.v_proj.weight`, kvDim, d),
      qkv: fused ? await matrix(`${p}self_attn.qkv_proj.weight`, qDim + 2 * kvDim, d) : null,
      qBias: config.qkvBias ? await vector(`${p}self_attn.q_proj.bias`, qDim) : null,
      kBias: config.qkvBias ? await vector(`${p}self_attn.k_proj.bias`, kvDim) : null,
      vBias: config.qkvBias ? await vector(`${p}self_attn.v_proj.bias`, kvDim) : null,
      o: await matrix(`${p}self_attn.o_proj.weight`, d, qDim),
      oBias: config.oBias ? await vector(`${p}self_attn.o_proj.bias`, d) : null,
      postNorm: await vector(`${p}post_attention_layernorm.weight`, d),
      gate: fused ? null : await matrix(`${p}mlp.gate_proj.weight`, ffn, d),
      up: fused ? null : await matrix(`${p}mlp.up_proj.weight`, ffn, d),
      gateUp: fused ? await matrix(`${p}mlp.gate_up_proj.weight`, 2 * ffn, d) : null,
      down: await matrix(`${p}mlp.down_proj.weight`, d, ffn),
    });
  }
  const embedTokens = await matrix("model.embed_tokens.weight", vocabSize, d);
  // A tied checkpoint may still store lm_head.weight (a copy); transformers ties it to the embedding.
  const lmHead = config.tiedEmbeddings ? embedTokens : await matrix("lm_head.weight", vocabSize, d);
  return {
    path: dir,
    config,
    embedding: weightEmbedding(embedTokens),
    embedTokens,
    layers,
    finalNorm: await vector("model.norm.weight", d),
    lmHead,
    backend,
  };
}
