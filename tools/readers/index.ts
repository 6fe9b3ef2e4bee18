import type { Matrix } from "../matrix.ts";
import { openSource } from "./checkpoint.ts";
import { pickTensorName } from "./embedding.ts";
import { dtypeBitsPerWeight, readTensorMatrix, type ModelFormat, type ReadProgress, type TensorCatalog } from "./tensor.ts";

export type { ModelFormat, TensorCatalog, TensorInfo } from "./tensor.ts";
export { EMBEDDING_TENSOR_NAMES } from "./embedding.ts";

export interface LoadedMatrix {
  readonly matrix: Matrix;
  /** The tensor that was read (for npy "array", for llama2.c "token_embedding_table"). */
  readonly tensor: string;
  /** The format of the file that held it (a sharded folder's shards' format). */
  readonly format: ModelFormat;
  /** The input as given (a file, a folder or a shard index). */
  readonly path: string;
  /** The file the values were read from (a shard, for sharded checkpoints). */
  readonly file: string;
  /** The stored element type ("F16", "Q4_K", ...) and the bits per weight it takes. */
  readonly dtype: string;
  readonly bitsPerWeight?: number;
  /** True when no --tensor was given and the reader chose the token embedding itself. */
  readonly autoPicked: boolean;
  /** config.json's tie_word_embeddings, for Hugging Face folders that state it. */
  readonly tiedEmbeddings?: boolean;
}

export interface LoadOptions {
  /** Tensor name to read (--tensor); without it the token embedding is found by its usual names. */
  readonly tensor?: string;
  /** Told the stored bytes read so far, chunk by chunk (a multi-gigabyte table takes seconds). */
  readonly onProgress?: ReadProgress;
}

/**
 * Reads the token embedding (or `options.tensor`) of a model file, folder or shard index as a
 * float32 matrix, reading only that tensor's bytes (and, for a sharded checkpoint, only the header
 * of the shard that holds it).
 */
export function loadMatrix(path: string, options: LoadOptions = {}): LoadedMatrix {
  const source = openSource(path);
  const { name, autoPicked } = pickTensorName(source, options.tensor);
  const info = source.describe(name);
  const matrix = readTensorMatrix(info, options.onProgress);
  const bits = dtypeBitsPerWeight(info.dtype);
  return {
    matrix,
    tensor: name,
    format: source.formatOf(name),
    path: source.path,
    file: info.file,
    dtype: info.dtype,
    ...(bits !== undefined ? { bitsPerWeight: bits } : {}),
    autoPicked,
    ...(source.tiedEmbeddings !== undefined ? { tiedEmbeddings: source.tiedEmbeddings } : {}),
  };
}

/** Lists a model's tensors without reading their data (for `--tensor` help and inspection). */
export function listTensors(path: string): TensorCatalog {
  const source = openSource(path);
  const tensors = source.describeAll();
  return {
    format: source.formatOf(source.names[0] ?? ""),
    tensors,
    ...(source.defaultTensor !== undefined ? { defaultTensor: source.defaultTensor } : {}),
  };
}
