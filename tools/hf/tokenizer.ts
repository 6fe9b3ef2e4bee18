// A Hugging Face folder's tokenizer (tokenizer.json, and tokenizer_config.json when present) through
// @huggingface/tokenizers, the maintained pure-JavaScript implementation transformers.js uses: the
// same normalizers, pre-tokenizers, BPE/Unigram/WordPiece models and post-processors the Rust
// library runs, read from the same files.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { CarvqError } from "../errors.ts";

export interface HfTokenizer {
  readonly path: string;
  /** Token ids of `text`, with the special tokens the tokenizer's post-processor adds (Llama: BOS first). */
  encode(text: string): number[];
}

function readJson(path: string): object {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CarvqError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const json: unknown = JSON.parse(text);
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("expected a JSON object");
    return json;
  } catch (err) {
    throw new CarvqError(`${path}: not a JSON object (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Loads `dir`/tokenizer.json; a missing or malformed file is one line naming it. */
export function loadHfTokenizer(dir: string): HfTokenizer {
  const path = join(dir, "tokenizer.json");
  if (!existsSync(path))
    throw new CarvqError(`${path}: not found; --text needs the model folder's tokenizer.json (or give token ids with --tokens)`);
  const json = readJson(path);
  const configPath = join(dir, "tokenizer_config.json");
  const config = existsSync(configPath) ? readJson(configPath) : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (err) {
    throw new CarvqError(`${path}: cannot build a tokenizer from it (${err instanceof Error ? err.message : String(err)})`);
  }
  return { path, encode: (text) => tokenizer.encode(text).ids };
}
