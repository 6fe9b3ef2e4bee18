import { statSync } from "node:fs";
import { dirname } from "node:path";
import { CarvqError } from "../errors.ts";
import { detectFileKind, readFileCatalog } from "./detect.ts";
import { findEmbeddingName, type PickableCheckpoint } from "./embedding.ts";
import {
  findFolderWeights,
  isShardIndex,
  readFolderConfig,
  readJsonObject,
  readShardIndex,
  shardEmbeddingHint,
  tiedEmbeddings,
  type ShardIndex,
} from "./hf.ts";
import { printable, withModelFile } from "./modelFile.ts";
import { readTensorBytes, readTensorF32, type ModelFormat, type TensorCatalog, type TensorInfo } from "./tensor.ts";

export type { TensorInfo } from "./tensor.ts";

/**
 * Any input carvq reads, opened as a set of named tensors: one model file (safetensors, GGUF, .npy,
 * .npz, PyTorch zip, llama2.c), a Hugging Face model folder (config.json + model.safetensors, or a
 * shard index and its shards), or a shard index file itself. Headers are read lazily: naming the
 * tensors of a sharded checkpoint reads only its index, and describing one tensor reads only the
 * header of the shard that holds it.
 */
export interface CheckpointSource extends PickableCheckpoint {
  /** The input as the user gave it. */
  readonly path: string;
  /** "folder" and "index" inputs are read through a shard index or the folder's weight file. */
  readonly kind: "file" | "folder" | "index";
  /** The folder's config.json (folder and index inputs). */
  readonly config?: Record<string, unknown>;
  /** config.json's tie_word_embeddings, when stated. */
  readonly tiedEmbeddings?: boolean;
  /** The model file (or the shard index) the tensors come from. */
  readonly weights: string;
  /** Every tensor name, in file or index order (cheap: no shard header is read). */
  readonly names: readonly string[];
  /** The format of the file holding `name` (reads only that file's header). */
  formatOf(name: string): ModelFormat;
  /** One tensor's description, reading only the header of the file that holds it. */
  describe(name: string): TensorInfo;
  /** Every tensor described (reads every shard's header, not their data). */
  describeAll(): readonly TensorInfo[];
}

/** Opens `path` (a file, a folder or a shard index) without reading any tensor data. */
export function openSource(path: string): CheckpointSource {
  let isFolder: boolean;
  try {
    isFolder = statSync(path).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CarvqError(
      `${path}: cannot open (${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? String(err))})`,
    );
  }
  if (isFolder) return folderSource(path);
  const kind = withModelFile(path, detectFileKind);
  if (kind !== "json") return fileSource(path);
  const json = readJsonObject(path, "JSON file");
  if (isShardIndex(json)) return indexSource(path, "index", readShardIndex(path, json), readFolderConfig(dirname(path)));
  // A config.json stands for its folder.
  if ("architectures" in json || "model_type" in json) return folderSource(dirname(path));
  throw new CarvqError(
    `${path}: a JSON file with neither weight_map (a shard index) nor model_type (a config.json); expected a model file, folder or shard index`,
  );
}

function folderSource(folder: string): CheckpointSource {
  const config = readFolderConfig(folder);
  const weights = findFolderWeights(folder);
  const kind = withModelFile(weights, detectFileKind);
  if (kind === "json") return indexSource(folder, "folder", readShardIndex(weights), config);
  return { ...fileSource(weights), path: folder, kind: "folder", weights, ...(config ? { config } : {}), ...withTie(config) };
}

function withTie(config: Record<string, unknown> | undefined): { tiedEmbeddings?: boolean } {
  const tied = tiedEmbeddings(config);
  return tied === undefined ? {} : { tiedEmbeddings: tied };
}

function fileSource(path: string): CheckpointSource {
  const catalog = readFileCatalog(path);
  const byName = new Map(catalog.tensors.map((t) => [t.name, t]));
  return {
    path,
    kind: "file",
    weights: path,
    names: catalog.tensors.map((t) => t.name),
    ...(catalog.defaultTensor !== undefined ? { defaultTensor: catalog.defaultTensor } : {}),
    formatOf: () => catalog.format,
    describe: (name) => byName.get(name) ?? notFound(path, name),
    describeAll: () => catalog.tensors,
    missingEmbeddingHint: () => shardEmbeddingHint(path),
  };
}

function notFound(path: string, name: string): never {
  throw new CarvqError(`${path}: tensor '${printable(name)}' not found`);
}

/** A sharded checkpoint: names from the index, each shard's header read the first time one of its tensors is needed. */
function indexSource(
  path: string,
  kind: "folder" | "index",
  index: ShardIndex,
  config: Record<string, unknown> | undefined,
): CheckpointSource {
  const catalogs = new Map<string, TensorCatalog & { byName: Map<string, TensorInfo> }>();
  const shardCatalog = (shard: string) => {
    let catalog = catalogs.get(shard);
    if (catalog === undefined) {
      const read = readFileCatalog(shard);
      catalog = { ...read, byName: new Map(read.tensors.map((t) => [t.name, t])) };
      catalogs.set(shard, catalog);
    }
    return catalog;
  };
  const shardOf = (name: string) => index.weightMap.get(name) ?? notFound(path, name);
  const describe = (name: string): TensorInfo => {
    const shard = shardOf(name);
    const info = shardCatalog(shard).byName.get(name);
    if (info === undefined)
      throw new CarvqError(
        `${index.path}: weight_map puts tensor '${printable(name)}' in ${shard}, which has no such tensor; the index does not match its shards`,
      );
    return info;
  };
  const names = [...index.weightMap.keys()];
  return {
    path,
    kind,
    weights: index.path,
    ...(config ? { config } : {}),
    ...withTie(config),
    names,
    formatOf: (name) => shardCatalog(shardOf(name)).format,
    describe,
    describeAll: () => names.map(describe),
  };
}

/** A checkpoint with every tensor described, for code that reads many of its tensors (a model's forward pass). */
export interface Checkpoint {
  readonly path: string;
  readonly kind: "file" | "folder" | "index";
  readonly config?: Record<string, unknown>;
  readonly tiedEmbeddings?: boolean;
  /** Every tensor by name, in file or index order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The token embedding's name, as compress picks it. */
  readonly embedding: string | undefined;
  /** A tensor's bytes as stored (decompressed if its container compressed them), read only from the file that holds it. */
  readRaw(name: string): Promise<Uint8Array>;
  /** A tensor as float32 values in row-major order, whatever its stored type (F32/F16/BF16/F64, GGUF blocks), byte order or layout. */
  readF32(name: string): Promise<Float32Array>;
}

/** Opens a model file, folder or shard index and describes every tensor (headers only, no tensor data). */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const source = openSource(path);
  const tensors = new Map(source.describeAll().map((t) => [t.name, t]));
  const lookup = (name: string) => tensors.get(name) ?? notFound(path, name);
  let embedding: string | undefined;
  try {
    embedding = findEmbeddingName(source);
  } catch {
    embedding = undefined;
  }
  return {
    path,
    kind: source.kind,
    ...(source.config ? { config: source.config } : {}),
    ...(source.tiedEmbeddings !== undefined ? { tiedEmbeddings: source.tiedEmbeddings } : {}),
    tensors,
    embedding,
    readRaw: async (name) => readTensorBytes(lookup(name)),
    readF32: async (name) => readTensorF32(lookup(name)),
  };
}
