import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, extname, isAbsolute, join, normalize, sep } from "node:path";
import { CarvqError } from "../errors.ts";
import { isEmbeddingName } from "./embedding.ts";
import { printable } from "./modelFile.ts";

/**
 * Hugging Face model folders: config.json beside either one weight file (model.safetensors,
 * pytorch_model.bin) or a shard index (model.safetensors.index.json: {"weight_map": {tensor: shard
 * file}}) and its shards. Only names and files are resolved here; the shards are read by the
 * format readers, each only when one of its tensors is needed.
 */

export const CONFIG_FILE = "config.json";

/** The weight files a folder is searched for, in this order (safetensors before PyTorch pickles, an index before a single file). */
export const WEIGHT_FILES: readonly string[] = [
  "model.safetensors.index.json",
  "model.safetensors",
  "pytorch_model.bin.index.json",
  "pytorch_model.bin",
];

/** Extensions that make a lone file in a folder its weights. */
const MODEL_EXTENSIONS = new Set([".safetensors", ".gguf", ".bin", ".pt", ".pth", ".npz", ".npy"]);

/** JSON files larger than this are refused before reading (indexes of the largest models are a few MB). */
const MAX_JSON_BYTES = 64 << 20;

/** A shard index: which file holds each tensor. */
export interface ShardIndex {
  readonly path: string;
  /** Tensor name to shard path (the index's folder joined with the shard's file name), in index order. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** The distinct shard paths, in order of first appearance. */
  readonly shards: readonly string[];
}

/** Reads a JSON object from `path`, refusing other JSON values and files too large to be an index or config. */
export function readJsonObject(path: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_JSON_BYTES) throw new CarvqError(`${path}: ${what} has ${size} bytes; expected at most ${MAX_JSON_BYTES}`);
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof CarvqError) throw err;
    throw new CarvqError(`${path}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CarvqError(`${path}: ${what} is not valid JSON (${printable((err as Error).message, 120)})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new CarvqError(
      `${path}: ${what} is ${Array.isArray(parsed) ? "an array" : String(parsed === null ? "null" : typeof parsed)}; expected a JSON object`,
    );
  return parsed as Record<string, unknown>;
}

/** True when a JSON object is a shard index rather than a config. */
export function isShardIndex(json: Record<string, unknown>): boolean {
  return "weight_map" in json;
}

/** Parses a shard index, checking that every shard is a plain file name inside the index's folder. */
export function readShardIndex(path: string, json: Record<string, unknown> = readJsonObject(path, "shard index")): ShardIndex {
  const map = json.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw new CarvqError(`${path}: weight_map is ${JSON.stringify(map)?.slice(0, 60)}; expected an object of tensor name to shard file`);
  const folder = dirname(path);
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== "string" || !isPlainRelativePath(file)) {
      throw new CarvqError(
        `${path}: weight_map['${printable(name)}'] is ${printable(JSON.stringify(file) ?? String(file), 120)}; expected a shard file name in the index's folder`,
      );
    }
    const shard = join(folder, file);
    if (!shards.includes(shard)) shards.push(shard);
    weightMap.set(name, shard);
  }
  if (weightMap.size === 0) throw new CarvqError(`${path}: weight_map is empty; expected at least one tensor`);
  return { path, weightMap, shards };
}

/** A relative path that stays inside its folder: no absolute path, no "..", no empty name. */
function isPlainRelativePath(file: string): boolean {
  if (file === "" || isAbsolute(file) || file.includes("\0")) return false;
  return (
    !normalize(file)
      .split(/[\\/]/)
      .some((part) => part === ".." || part === "") && !file.startsWith(sep)
  );
}

/** A folder's config.json, if it has one. */
export function readFolderConfig(folder: string): Record<string, unknown> | undefined {
  const path = join(folder, CONFIG_FILE);
  return existsSync(path) ? readJsonObject(path, "model config") : undefined;
}

/** config.json's tie_word_embeddings, when stated (the embedding is then also the output head). */
export function tiedEmbeddings(config: Record<string, unknown> | undefined): boolean | undefined {
  const value = config?.tie_word_embeddings;
  return typeof value === "boolean" ? value : undefined;
}

/** The weight file (or shard index) of a model folder. */
export function findFolderWeights(folder: string): string {
  for (const name of WEIGHT_FILES) {
    const path = join(folder, name);
    if (existsSync(path)) return path;
  }
  let names: string[];
  try {
    names = readdirSync(folder).sort();
  } catch (err) {
    throw new CarvqError(`${folder}: cannot list the folder (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const candidates = names.filter((name) => MODEL_EXTENSIONS.has(extname(name).toLowerCase()));
  if (candidates.length === 1) return join(folder, candidates[0]);
  const listed =
    names
      .slice(0, 8)
      .map((n) => printable(n, 60))
      .join(", ") + (names.length > 8 ? `, and ${names.length - 8} more` : "");
  const why =
    candidates.length > 1
      ? `several model files (${candidates.slice(0, 6).join(", ")}); pass one of them`
      : `no ${WEIGHT_FILES.join(", ")} or other model file`;
  throw new CarvqError(`${folder}: a folder with ${why} (files: ${listed || "none"})`);
}

/**
 * For a shard given on its own (model-00001-of-00002.safetensors) that lacks the embedding: where
 * the sibling index says the embedding is, so the user can pass the folder instead.
 */
export function shardEmbeddingHint(path: string): string | undefined {
  if (!/-\d+-of-\d+\.[a-z]+$/i.test(basename(path))) return undefined;
  const folder = dirname(path);
  for (const name of WEIGHT_FILES.filter((n) => n.endsWith(".index.json"))) {
    const indexPath = join(folder, name);
    if (!existsSync(indexPath)) continue;
    let index: ShardIndex;
    try {
      index = readShardIndex(indexPath);
    } catch {
      continue;
    }
    const found = [...index.weightMap].find(([tensor]) => isEmbeddingName(tensor));
    if (found)
      return `${basename(indexPath)} puts '${printable(found[0])}' in ${basename(found[1])}: pass the folder ${folder} (or the index) to read it`;
  }
  return undefined;
}
