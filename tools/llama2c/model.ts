// Every weight of a llama2.c checkpoint in memory, for the TypeScript forward pass. The header and the
// byte layout come from the checkpoint reader (tools/readers/llama2c.ts), which only believes a header
// whose implied size equals the file size; each array is then read by its own byte range, checked
// against the file again, so no weight can be read from past the end. The legacy RoPE tables
// (freq_cis_real / freq_cis_imag) are skipped: the forward pass computes RoPE itself.
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { readBytes, withModelFile, type ModelFile } from "../readers/modelFile.ts";
import { LLAMA2C_EMBEDDING_NAME, readLlama2cCheckpoint, type Llama2cConfig, type Llama2cTensor } from "../readers/llama2c.ts";

export type { Llama2cConfig } from "../readers/llama2c.ts";

/** Weights of one transformer block, each a row-major [out, in] matrix (views into the layer-stacked arrays). */
export interface Llama2cLayer {
  readonly rmsAtt: Float32Array; // [dim]
  readonly wq: Float32Array; // [dim, dim]
  readonly wk: Float32Array; // [kvDim, dim]
  readonly wv: Float32Array; // [kvDim, dim]
  readonly wo: Float32Array; // [dim, dim]
  readonly rmsFfn: Float32Array; // [dim]
  readonly w1: Float32Array; // [hidden, dim]
  readonly w2: Float32Array; // [dim, hidden]
  readonly w3: Float32Array; // [hidden, dim]
}

export interface Llama2cModel {
  /** Where the weights came from (for messages). */
  readonly path: string;
  readonly config: Llama2cConfig;
  /** dim / n_heads. */
  readonly headSize: number;
  /** dim * n_kv_heads / n_heads. */
  readonly kvDim: number;
  /** Input embedding [vocab, dim]; the only thing `withInputEmbedding` replaces. */
  readonly tokenEmbedding: Float32Array;
  readonly layers: readonly Llama2cLayer[];
  readonly rmsFinal: Float32Array; // [dim]
  /** Output classifier [vocab, dim]: the original token embedding when tied, else the file's wcls. */
  readonly wcls: Float32Array;
}

function tensorData(file: ModelFile, tensor: Llama2cTensor): Float32Array {
  // readBytes checks [offset, offset + length) against the file size before reading.
  const bytes = readBytes(file, tensor.offset, tensor.byteLength, `llama2.c weight ${tensor.name} [${tensor.shape.join(", ")}]`);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Loads a llama2.c checkpoint's weights; every failure is a one-line CarvqError naming the file. */
export function loadLlama2cModel(path: string): Llama2cModel {
  return withModelFile(path, (file) => {
    const checkpoint = readLlama2cCheckpoint(file);
    const { config } = checkpoint;
    const byName = new Map<string, Float32Array>();
    for (const tensor of checkpoint.tensors) {
      if (tensor.name.startsWith("freq_cis_")) continue; // legacy RoPE tables: skipped
      byName.set(tensor.name, tensorData(file, tensor));
    }
    const get = (name: string): Float32Array => {
      const data = byName.get(name);
      if (data === undefined) throw new CarvqError(`${path}: llama2.c checkpoint has no ${name} array`);
      return data;
    };
    const { dim, hiddenDim, nLayers, nHeads, nKvHeads } = config;
    const headSize = dim / nHeads;
    const kvDim = (dim * nKvHeads) / nHeads;
    const stacked = (name: string, perLayer: number) => {
      const all = get(name);
      return (l: number) => all.subarray(l * perLayer, (l + 1) * perLayer);
    };
    const rmsAtt = stacked("rms_att_weight", dim);
    const wq = stacked("wq", dim * dim);
    const wk = stacked("wk", kvDim * dim);
    const wv = stacked("wv", kvDim * dim);
    const wo = stacked("wo", dim * dim);
    const rmsFfn = stacked("rms_ffn_weight", dim);
    const w1 = stacked("w1", hiddenDim * dim);
    const w2 = stacked("w2", dim * hiddenDim);
    const w3 = stacked("w3", hiddenDim * dim);
    const layers: Llama2cLayer[] = [];
    for (let l = 0; l < nLayers; l++) {
      layers.push({ rmsAtt: rmsAtt(l), wq: wq(l), wk: wk(l), wv: wv(l), wo: wo(l), rmsFfn: rmsFfn(l), w1: w1(l), w2: w2(l), w3: w3(l) });
    }
    const tokenEmbedding = get(LLAMA2C_EMBEDDING_NAME);
    return {
      path,
      config,
      headSize,
      kvDim,
      tokenEmbedding,
      layers,
      rmsFinal: get("rms_final_weight"),
      wcls: get(checkpoint.classifierName),
    };
  });
}

/** The model's input embedding as a Matrix (a view, not a copy). */
export function inputEmbedding(model: Llama2cModel): Matrix {
  return { rows: model.config.vocabSize, cols: model.config.dim, data: model.tokenEmbedding };
}

/**
 * The same model with its input embedding replaced by `embedding` (vocab x dim). The output classifier
 * keeps its original values even when it is tied to the embedding, as a deployment that compresses
 * only the input table would. Throws a CarvqError naming both shapes when they differ.
 */
export function withInputEmbedding(model: Llama2cModel, embedding: Matrix, name = "replacement embedding"): Llama2cModel {
  const { vocabSize, dim } = model.config;
  if (embedding.rows !== vocabSize || embedding.cols !== dim) {
    throw new CarvqError(`${name} is ${embedding.rows} x ${embedding.cols} but ${model.path}'s token embedding is ${vocabSize} x ${dim}`);
  }
  if (embedding.data.length !== vocabSize * dim)
    throw new CarvqError(`${name}: data has ${embedding.data.length} values; expected ${vocabSize} x ${dim} = ${vocabSize * dim}`);
  return { ...model, tokenEmbedding: embedding.data };
}
