import { CarvqError } from "../errors.ts";
import { readBytes, withModelFile, type ModelFile } from "./modelFile.ts";
import type { TensorCatalog, TensorInfo } from "./tensor.ts";

/**
 * llama.c checkpoints (karpathy/llama2.c, legacy "version 0" export): a 7 x int32 header, then
 * float32 arrays in a fixed order (see ../shared/models/README.md). There is no magic number, so the
 * header is only believed when the file size is exactly what it implies; that keeps random .bin
 * files from being misread as models.
 */

export const LLAMA2C_HEADER_BYTES = 28;

/** The token embedding's name in llama2.c's run.c; the other weights keep run.c's names too. */
export const LLAMA2C_EMBEDDING_NAME = "token_embedding_table";

/** Largest dimension believed in a header (all real checkpoints are far below it); keeps sizes safe integers. */
const MAX_HEADER_DIM = 1 << 20;

export interface Llama2cConfig {
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  /** Always positive here; `sharedClassifier` says whether the header's value was positive. */
  readonly vocabSize: number;
  readonly seqLen: number;
  /** True when the output classifier is the token embedding (header vocab_size > 0); false when wcls follows at the end. */
  readonly sharedClassifier: boolean;
}

/** One weight array of the checkpoint: where it is and its shape (outermost first). */
export interface Llama2cTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** Absolute byte offset in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface Llama2cCheckpoint {
  readonly config: Llama2cConfig;
  /** Every array in file order, including the legacy RoPE tables ("freq_cis_real", "freq_cis_imag"). */
  readonly tensors: readonly Llama2cTensor[];
  /** The tensor the forward pass uses as the classifier: "wcls" if present, else the token embedding. */
  readonly classifierName: string;
}

type HeaderValues = readonly [number, number, number, number, number, number, number];

/** Parses the header and lays out every weight; throws a CarvqError unless the file size matches exactly. */
export function readLlama2cCheckpoint(file: ModelFile): Llama2cCheckpoint {
  if (file.size < LLAMA2C_HEADER_BYTES)
    throw new CarvqError(
      `${file.path}: file has ${file.size} bytes; a llama2.c checkpoint starts with a ${LLAMA2C_HEADER_BYTES}-byte header`,
    );
  const values = decodeHeader(readBytes(file, 0, LLAMA2C_HEADER_BYTES, "llama2.c header"));
  const config = checkConfig(file.path, values);
  const tensors = layoutTensors(file.path, config);
  const last = tensors[tensors.length - 1];
  const expectedSize = last.offset + last.byteLength;
  if (expectedSize !== file.size) {
    throw new CarvqError(
      `${file.path}: llama2.c header (dim ${config.dim}, hidden_dim ${config.hiddenDim}, n_layers ${config.nLayers}, n_heads ${config.nHeads}, n_kv_heads ${config.nKvHeads}, vocab_size ${values[5]}, seq_len ${config.seqLen}) implies ${expectedSize} bytes but the file has ${file.size}; not a llama2.c checkpoint, or truncated`,
    );
  }
  return { config, tensors, classifierName: config.sharedClassifier ? LLAMA2C_EMBEDDING_NAME : "wcls" };
}

/** Content test for format detection: a sane header whose implied size equals the file size. */
export function looksLikeLlama2c(firstBytes: Uint8Array, fileSize: number): boolean {
  if (firstBytes.length < LLAMA2C_HEADER_BYTES) return false;
  const values = decodeHeader(firstBytes);
  try {
    const tensors = layoutTensors("", checkConfig("", values));
    const last = tensors[tensors.length - 1];
    return last.offset + last.byteLength === fileSize;
  } catch {
    return false;
  }
}

export function readLlama2cCatalog(file: ModelFile): TensorCatalog {
  const checkpoint = readLlama2cCheckpoint(file);
  const tensors: TensorInfo[] = checkpoint.tensors.map((t) => ({
    name: t.name,
    dtype: "F32",
    shape: t.shape,
    file: file.path,
    offset: t.offset,
    byteLength: t.byteLength,
  }));
  return { format: "llama2c", tensors, defaultTensor: LLAMA2C_EMBEDDING_NAME };
}

function decodeHeader(bytes: Uint8Array): HeaderValues {
  const view = new DataView(bytes.buffer, bytes.byteOffset, LLAMA2C_HEADER_BYTES);
  const at = (i: number) => view.getInt32(i * 4, true);
  return [at(0), at(1), at(2), at(3), at(4), at(5), at(6)];
}

const FIELD_NAMES = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"] as const;

function checkConfig(path: string, values: HeaderValues): Llama2cConfig {
  values.forEach((value, i) => {
    const magnitude = i === 5 ? Math.abs(value) : value; // vocab_size's sign only says whether wcls is shared
    if (!(magnitude >= 1 && magnitude <= MAX_HEADER_DIM)) {
      throw new CarvqError(
        `${path}: llama2.c header ${FIELD_NAMES[i]} is ${value}; expected ${i === 5 ? "a non-zero value" : "a value"} between 1 and ${MAX_HEADER_DIM}${i === 5 ? " in magnitude" : ""}`,
      );
    }
  });
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, signedVocab, seqLen] = values;
  if (dim % nHeads !== 0) throw new CarvqError(`${path}: llama2.c header dim ${dim} is not a multiple of n_heads ${nHeads}`);
  if ((dim / nHeads) % 2 !== 0)
    throw new CarvqError(`${path}: llama2.c header head size dim / n_heads = ${dim / nHeads} is odd; RoPE needs pairs`);
  if (nHeads % nKvHeads !== 0)
    throw new CarvqError(`${path}: llama2.c header n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(signedVocab), seqLen, sharedClassifier: signedVocab > 0 };
}

/** The arrays in file order, as in llama2.c's memory_map_weights (legacy export). */
function layoutTensors(path: string, config: Llama2cConfig): Llama2cTensor[] {
  const { dim, hiddenDim, nLayers: layers, nHeads, nKvHeads, vocabSize, seqLen } = config;
  const headSize = dim / nHeads;
  const kvDim = (dim * nKvHeads) / nHeads;
  const shapes: [string, number[]][] = [
    [LLAMA2C_EMBEDDING_NAME, [vocabSize, dim]],
    ["rms_att_weight", [layers, dim]],
    ["wq", [layers, dim, dim]],
    ["wk", [layers, kvDim, dim]],
    ["wv", [layers, kvDim, dim]],
    ["wo", [layers, dim, dim]],
    ["rms_ffn_weight", [layers, dim]],
    ["w1", [layers, hiddenDim, dim]],
    ["w2", [layers, dim, hiddenDim]],
    ["w3", [layers, hiddenDim, dim]],
    ["rms_final_weight", [dim]],
    ["freq_cis_real", [seqLen, headSize / 2]],
    ["freq_cis_imag", [seqLen, headSize / 2]],
  ];
  if (!config.sharedClassifier) shapes.push(["wcls", [vocabSize, dim]]);
  let offset = LLAMA2C_HEADER_BYTES;
  return shapes.map(([name, shape]) => {
    // Three dimensions of up to 2^20 can multiply past 2^53, where doubles stop being exact integers;
    // such a size is refused before it is compared with the file size.
    const byteLength = shape.reduce((product, d) => product * d, 4);
    if (!Number.isSafeInteger(byteLength) || !Number.isSafeInteger(offset + byteLength))
      throw new CarvqError(`${path}: llama2.c header implies an impossible byte size for ${name} [${shape.join(", ")}]`);
    const tensor = { name, shape, offset, byteLength };
    offset += byteLength;
    return tensor;
  });
}

/** Opens `path` and returns its checkpoint layout (config and every weight's offset), for the forward pass. */
export function readLlama2cHeader(path: string): Llama2cCheckpoint {
  return withModelFile(path, readLlama2cCheckpoint);
}
