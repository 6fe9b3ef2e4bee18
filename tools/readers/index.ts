import { extname } from "node:path";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { GGUF_MAGIC, readGgufCatalog } from "./gguf.ts";
import { looksLikeLlama2c, readLlama2cCatalog } from "./llama2c.ts";
import { printable, readBytes, withModelFile, type ModelFile } from "./modelFile.ts";
import { hasNpyMagic, readNpyCatalog } from "./npy.ts";
import { looksLikeSafetensors, readSafetensorsCatalog } from "./safetensors.ts";
import { readFloatMatrix, type ModelFormat, type TensorCatalog, type TensorInfo } from "./tensor.ts";

export type { ModelFormat, TensorCatalog, TensorInfo } from "./tensor.ts";

export interface LoadedMatrix {
  readonly matrix: Matrix;
  /** The tensor that was read (for npy "array", for llama2.c "token_embedding_table"). */
  readonly tensor: string;
  readonly format: ModelFormat;
  readonly path: string;
  /** True when no --tensor was given and the reader chose the token embedding itself. */
  readonly autoPicked: boolean;
}

export interface LoadOptions {
  /** Tensor name to read (--tensor); without it the token embedding is found by its usual names. */
  readonly tensor?: string;
}

/**
 * Names token embeddings go by, most common first: Llama/Mistral/Qwen (HF), GGUF, Meta's original
 * checkpoints, GPT-2, BERT-likes, bare GPT-2 exports, submodule exports, GPT-NeoX/Pythia, T5/BART, Bloom, Falcon.
 */
export const EMBEDDING_TENSOR_NAMES: readonly string[] = [
  "model.embed_tokens.weight",
  "token_embd.weight",
  "tok_embeddings.weight",
  "transformer.wte.weight",
  "embeddings.word_embeddings.weight",
  "model.embeddings.word_embeddings.weight",
  "bert.embeddings.word_embeddings.weight",
  "wte.weight",
  "embed_tokens.weight",
  "gpt_neox.embed_in.weight",
  "shared.weight",
  "model.shared.weight",
  "transformer.word_embeddings.weight",
  "word_embeddings.weight",
];

/** Name endings that identify a token embedding nested under a wrapper module (e.g. multimodal "language_model."). */
const EMBEDDING_NAME_SUFFIXES: readonly string[] = [".embed_tokens.weight", ".tok_embeddings.weight", ".wte.weight", ".word_embeddings.weight", ".embed_in.weight"];

/** How many tensor names an error message lists before "and N more". */
const NAMES_SHOWN = 8;

/** Reads the token embedding (or `options.tensor`) of a model file as a float32 matrix, reading only that tensor's bytes. */
export function loadMatrix(path: string, options: LoadOptions = {}): LoadedMatrix {
  return withModelFile(path, (file) => {
    const catalog = readCatalog(file);
    const { info, autoPicked } = pickTensor(file.path, catalog, options.tensor);
    const matrix = readFloatMatrix(file, info);
    return { matrix, tensor: info.name, format: catalog.format, path, autoPicked };
  });
}

/** Lists a model file's tensors without reading their data (for `--tensor` help and inspection). */
export function listTensors(path: string): TensorCatalog {
  return withModelFile(path, readCatalog);
}

const CATALOG_READERS: Readonly<Record<ModelFormat, (file: ModelFile) => TensorCatalog>> = {
  safetensors: readSafetensorsCatalog,
  gguf: readGgufCatalog,
  npy: readNpyCatalog,
  llama2c: readLlama2cCatalog,
};

function readCatalog(file: ModelFile): TensorCatalog {
  return CATALOG_READERS[detectFormat(file)](file);
}

/** File extensions that name a format; used only when the content matches no format, to give that format's specific error. */
const EXTENSION_HINTS: Readonly<Record<string, ModelFormat>> = { ".safetensors": "safetensors", ".gguf": "gguf", ".npy": "npy", ".bin": "llama2c" };

/**
 * Decides the format from the first bytes: GGUF and npy have magic numbers, safetensors a plausible
 * header length followed by '{', llama2.c a header whose implied size equals the file size. When
 * nothing matches, the extension picks a parser so the user hears what is wrong with the file
 * (e.g. a truncated header) rather than just "unknown format".
 */
export function detectFormat(file: ModelFile): ModelFormat {
  if (file.size === 0) throw new CarvqError(`${file.path}: file is empty; expected a model file`);
  const head = readBytes(file, 0, Math.min(32, file.size), "first bytes");
  const view = new DataView(head.buffer);
  if (head.length >= 4 && view.getUint32(0, true) === GGUF_MAGIC) return "gguf";
  if (hasNpyMagic(head)) return "npy";
  if (looksLikeSafetensors(head, file.size)) return "safetensors";
  if (looksLikeLlama2c(head, file.size)) return "llama2c";
  const hinted = EXTENSION_HINTS[extname(file.path).toLowerCase()];
  if (hinted) return hinted;
  const shown = Array.from(head.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
  throw new CarvqError(`${file.path}: unknown format (first bytes ${shown}); expected safetensors, GGUF, .npy or a llama2.c checkpoint`);
}

function pickTensor(path: string, catalog: TensorCatalog, requested: string | undefined): { info: TensorInfo; autoPicked: boolean } {
  if (requested !== undefined) {
    const info = catalog.tensors.find((t) => t.name === requested);
    if (!info) throw new CarvqError(`${path}: tensor '${printable(requested)}' not found; available: ${listNames(catalog.tensors)}`);
    return { info, autoPicked: false };
  }
  return { info: findEmbedding(path, catalog), autoPicked: true };
}

/** The format's own default, else the first known embedding name, else a unique suffix match, else the only tensor. */
function findEmbedding(path: string, catalog: TensorCatalog): TensorInfo {
  const byName = new Map(catalog.tensors.map((t) => [t.name, t]));
  const preferred = catalog.defaultTensor ?? EMBEDDING_TENSOR_NAMES.find((name) => byName.has(name));
  const found = preferred === undefined ? undefined : byName.get(preferred);
  if (found) return found;
  const nested = catalog.tensors.filter((t) => EMBEDDING_NAME_SUFFIXES.some((suffix) => t.name.endsWith(suffix)));
  if (nested.length === 1) return nested[0];
  if (nested.length > 1) throw new CarvqError(`${path}: several tensors look like token embeddings (${listNames(nested)}); pass --tensor NAME`);
  if (catalog.tensors.length === 1) return catalog.tensors[0];
  if (catalog.tensors.length === 0) throw new CarvqError(`${path}: file holds no tensors`);
  throw new CarvqError(`${path}: no token embedding among ${catalog.tensors.length} tensors (looked for ${EMBEDDING_TENSOR_NAMES.slice(0, 4).join(", ")}, ...); pass --tensor NAME, e.g. one of: ${listNames(catalog.tensors)}`);
}

/** A few names for an error message, 2-D tensors first since only those can be read as a matrix. */
function listNames(tensors: readonly TensorInfo[]): string {
  if (tensors.length === 0) return "(none)";
  const ordered = [...tensors.filter((t) => t.shape.length === 2), ...tensors.filter((t) => t.shape.length !== 2)];
  const shown = ordered.slice(0, NAMES_SHOWN).map((t) => `${printable(t.name, 80)} [${t.shape.join("x")}]`);
  const more = tensors.length - shown.length;
  return shown.join(", ") + (more > 0 ? `, and ${more} more` : "");
}
