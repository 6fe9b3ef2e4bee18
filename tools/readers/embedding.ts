import { CarvqError } from "../errors.ts";
import { printable } from "./modelFile.ts";
import type { TensorInfo } from "./tensor.ts";

/**
 * Names token embeddings go by, most common first: Llama/Mistral/Qwen (HF), GGUF, Meta's original
 * checkpoints, GPT-2, BERT-likes, bare GPT-2 exports, submodule exports, GPT-NeoX/Pythia, T5/BART, Bloom, Falcon,
 * then the names small hand-written PyTorch models use (minGPT's tok_emb, token_embedding).
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
  "token_embedding.weight",
  "tok_emb.weight",
];

/** Name endings that identify a token embedding nested under a wrapper module (e.g. multimodal "language_model."). */
const EMBEDDING_NAME_SUFFIXES: readonly string[] = [
  ".embed_tokens.weight",
  ".tok_embeddings.weight",
  ".wte.weight",
  ".word_embeddings.weight",
  ".embed_in.weight",
];

/** How many tensor names an error message lists before "and N more". */
const NAMES_SHOWN = 8;

/** What picking needs to know about a checkpoint: its names cheaply, full descriptions only for messages. */
export interface PickableCheckpoint {
  readonly path: string;
  readonly names: readonly string[];
  /** npy and llama2.c inputs hold their table at a known name. */
  readonly defaultTensor?: string;
  /** Every tensor described (may read every shard's header; used only to word a refusal). */
  describeAll(): readonly TensorInfo[];
  /** A sentence to add when no embedding is found (e.g. "the index puts it in shard 2"). */
  missingEmbeddingHint?(): string | undefined;
}

/** The name of the tensor to read: `requested` if given (and present), else the token embedding. */
export function pickTensorName(checkpoint: PickableCheckpoint, requested: string | undefined): { name: string; autoPicked: boolean } {
  if (requested !== undefined) {
    if (!checkpoint.names.includes(requested))
      throw new CarvqError(
        `${checkpoint.path}: tensor '${printable(requested)}' not found; available: ${listNames(checkpoint.describeAll())}`,
      );
    return { name: requested, autoPicked: false };
  }
  return { name: findEmbeddingName(checkpoint), autoPicked: true };
}

/** The format's own default, else the first known embedding name, else a unique suffix match, else the only tensor. */
export function findEmbeddingName(checkpoint: PickableCheckpoint): string {
  const { path, names } = checkpoint;
  const present = new Set(names);
  const preferred = checkpoint.defaultTensor ?? EMBEDDING_TENSOR_NAMES.find((name) => present.has(name));
  if (preferred !== undefined && present.has(preferred)) return preferred;
  const nested = names.filter((name) => EMBEDDING_NAME_SUFFIXES.some((suffix) => name.endsWith(suffix)));
  if (nested.length === 1) return nested[0];
  const all = () => checkpoint.describeAll();
  if (nested.length > 1)
    throw new CarvqError(
      `${path}: several tensors look like token embeddings (${listNames(all().filter((t) => nested.includes(t.name)))}); pass --tensor NAME`,
    );
  if (names.length === 1) return names[0];
  if (names.length === 0) throw new CarvqError(`${path}: holds no tensors`);
  const hint = checkpoint.missingEmbeddingHint?.();
  if (hint !== undefined) throw new CarvqError(`${path}: no token embedding among its ${names.length} tensors; ${hint}`);
  throw new CarvqError(
    `${path}: no token embedding among ${names.length} tensors (looked for ${EMBEDDING_TENSOR_NAMES.slice(0, 4).join(", ")}, ...); pass --tensor NAME, e.g. one of: ${listNames(all())}`,
  );
}

/** A few names for an error message, 2-D tensors first since only those can be read as a matrix. */
export function listNames(tensors: readonly TensorInfo[]): string {
  if (tensors.length === 0) return "(none)";
  const ordered = [...tensors.filter((t) => t.shape.length === 2), ...tensors.filter((t) => t.shape.length !== 2)];
  const shown = ordered.slice(0, NAMES_SHOWN).map((t) => `${printable(t.name, 80)} [${t.shape.join("x")}]`);
  const more = tensors.length - shown.length;
  return shown.join(", ") + (more > 0 ? `, and ${more} more` : "");
}

/** True when `name` is one of the known token-embedding names (used to say "the embedding is in shard N"). */
export function isEmbeddingName(name: string): boolean {
  return EMBEDDING_TENSOR_NAMES.includes(name) || EMBEDDING_NAME_SUFFIXES.some((suffix) => name.endsWith(suffix));
}
