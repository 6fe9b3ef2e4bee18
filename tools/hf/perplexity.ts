// Perplexity and KL of a model with a replacement input embedding, on windows of given token ids,
// for any model that can produce a window's logits: a Hugging Face folder (tools/hf/forward.ts) or a
// llama2.c checkpoint (tools/llama2c/forward.ts). A window runs from position 0 with a fresh cache;
// its predictions from `firstTarget - 1` on are scored (position p predicts token p + 1):
//   ppl_orig, ppl = exp(mean over scored predictions of -log p(next token))   (original, modified)
//   kl            = mean over scored predictions of KL(p_orig || p_modified)    (nats)
// The sums run window by window, position by position, in the order tools/eval/perplexity.ts uses,
// so the same logits give the same figures there and here.
import { readFileSync } from "node:fs";
import { CarvqError } from "../errors.ts";
import { logSoftmax } from "../eval/perplexity.ts";
import { sequenceLogits } from "../llama2c/forward.ts";
import type { Llama2cModel } from "../llama2c/model.ts";
import { headLogits, prefill } from "./forward.ts";
import type { HfModel } from "./model.ts";
import { loadHfTokenizer } from "./tokenizer.ts";

export interface Window {
  readonly tokens: Int32Array;
  /** First position whose token is a scored target (>= 1): predictions from rows firstTarget - 1 .. length - 2. */
  readonly firstTarget: number;
}

/** One window's logits, produced in row chunks (a large vocabulary's [T x vocab] need not exist at once). */
export interface WindowLogits {
  /** out[0 .. count x vocab) = logits of rows [from, from + count). */
  rows(from: number, count: number, out: Float32Array): void;
}

export interface LogitsModel {
  readonly vocab: number;
  /** Longest window it can run. */
  readonly maxPositions: number;
  run(tokens: Int32Array): WindowLogits;
}

export interface ComparisonResult {
  readonly ppl_orig: number;
  readonly ppl: number;
  readonly kl: number;
  /** Scored predictions. */
  readonly tokens: number;
  readonly windows: number;
}

/**
 * A Hugging Face model as a LogitsModel. With `remember`, each window's final hidden states are kept
 * (T x hidden floats, keyed by the window's token array), so comparing several blobs against the same
 * original model runs its layers once per window; only the head is run again.
 */
export function hfLogitsModel(model: HfModel, options: { remember?: boolean } = {}): LogitsModel {
  const remembered = new WeakMap<Int32Array, Float32Array>();
  return {
    vocab: model.config.vocabSize,
    maxPositions: model.config.maxPositions,
    run(tokens) {
      let hidden = options.remember ? remembered.get(tokens) : undefined;
      if (hidden === undefined) {
        hidden = prefill(model, tokens);
        if (options.remember) remembered.set(tokens, hidden);
      }
      const states = hidden;
      return { rows: (from, count, out) => headLogits(model, states, from, count, out) };
    },
  };
}

export function llama2cLogitsModel(model: Llama2cModel): LogitsModel {
  const vocab = model.config.vocabSize;
  return {
    vocab,
    maxPositions: model.config.seqLen,
    run(tokens) {
      const all = sequenceLogits(model, tokens);
      return { rows: (from, count, out) => out.set(all.subarray(from * vocab, (from + count) * vocab)) };
    },
  };
}

/** Rows of logits computed per chunk: about 8 M values (32 MiB) per model at a time. */
const CHUNK_VALUES = 1 << 23;

export interface CompareOptions {
  readonly original: LogitsModel;
  readonly modified: LogitsModel;
  readonly windows: readonly Window[];
  /** Called after each window with the windows done so far. */
  readonly onWindow?: (done: number) => void;
}

/** ppl_orig, ppl and KL(original || modified) over the windows' scored predictions. */
export function comparePerplexity(options: CompareOptions): ComparisonResult {
  const { original, modified, windows } = options;
  const vocab = original.vocab;
  if (modified.vocab !== vocab) throw new Error("comparePerplexity: the two models' vocabularies differ");
  const chunk = Math.max(1, Math.floor(CHUNK_VALUES / vocab));
  const logitsO = new Float32Array(chunk * vocab);
  const logitsM = new Float32Array(chunk * vocab);
  const lpo = new Float64Array(vocab);
  const lpm = new Float64Array(vocab);
  let nllOriginal = 0;
  let nllModified = 0;
  let klSum = 0;
  let tokens = 0;
  windows.forEach((window, w) => {
    const seq = window.tokens;
    const runO = original.run(seq);
    const runM = modified.run(seq);
    const last = seq.length - 2;
    for (let from = window.firstTarget - 1; from <= last; from += chunk) {
      const count = Math.min(chunk, last + 1 - from);
      runO.rows(from, count, logitsO);
      runM.rows(from, count, logitsM);
      for (let r = 0; r < count; r++) {
        logSoftmax(logitsO.subarray(r * vocab, (r + 1) * vocab), lpo);
        logSoftmax(logitsM.subarray(r * vocab, (r + 1) * vocab), lpm);
        const next = seq[from + r + 1];
        nllOriginal -= lpo[next];
        nllModified -= lpm[next];
        let kl = 0;
        for (let i = 0; i < vocab; i++) {
          const a = lpo[i];
          kl += Math.exp(a) * (a - lpm[i]);
        }
        klSum += kl;
        tokens++;
      }
    }
    options.onWindow?.(w + 1);
  });
  if (tokens === 0) throw new CarvqError("no predicted tokens to score: every window is shorter than 2 tokens");
  return {
    ppl_orig: Math.exp(nllOriginal / tokens),
    ppl: Math.exp(nllModified / tokens),
    kl: klSum / tokens,
    tokens,
    windows: windows.length,
  };
}

/**
 * Windows of at most `ctx` tokens over one long token stream, starting every `stride` tokens; each
 * scores only the targets no earlier window scored, so every token after the first is predicted
 * once (the sliding-window evaluation of transformers' perplexity guide). stride = ctx: disjoint windows.
 */
export function textWindows(ids: readonly number[], ctx: number, stride: number): Window[] {
  if (stride > ctx) throw new CarvqError(`--stride ${stride} exceeds --ctx ${ctx}: tokens between windows would never be scored`);
  const windows: Window[] = [];
  let scoredTo = 1; // targets before this index are scored already (token 0 is never a target)
  for (let begin = 0; scoredTo < ids.length; begin += stride) {
    const end = Math.min(begin + ctx, ids.length);
    if (end - begin >= 2 && end > scoredTo)
      windows.push({ tokens: Int32Array.from(ids.slice(begin, end)), firstTarget: Math.max(scoredTo, begin + 1) - begin });
    scoredTo = Math.max(scoredTo, end);
    if (end === ids.length) break;
  }
  return windows;
}

/** A UTF-8 text file tokenized with `tokenizerDir`'s tokenizer.json and cut by textWindows. */
export function readTextWindows(path: string, tokenizerDir: string, ctx: number, stride: number): { windows: Window[]; tokens: number } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CarvqError(`${path}: ${code === undefined ? "not valid UTF-8 text" : `cannot read (${code})`}`);
  }
  const ids = loadHfTokenizer(tokenizerDir).encode(text);
  const windows = textWindows(ids, ctx, stride);
  if (windows.length === 0) throw new CarvqError(`${path}: ${ids.length} token(s); at least 2 are needed to score a prediction`);
  return { windows, tokens: ids.length };
}

/** Reads a --tokens file: a JSON array of token-id arrays, each one window from position 0, all of it scored. */
export function readTokenWindows(path: string, vocab: number, maxPositions: number): Window[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new CarvqError(
      `${path}: cannot read as JSON (${err instanceof Error ? err.message : String((err as NodeJS.ErrnoException).code ?? err)})`,
    );
  }
  if (!Array.isArray(json) || json.length === 0) throw new CarvqError(`${path}: expected a non-empty JSON array of token-id arrays`);
  return json.map((seq: unknown, s) => {
    if (!Array.isArray(seq) || seq.length < 2)
      throw new CarvqError(
        `${path}: sequence ${s} is ${Array.isArray(seq) ? `${seq.length} token(s) long` : "not an array"}; expected an array of at least 2 token ids`,
      );
    if (seq.length > maxPositions)
      throw new CarvqError(`${path}: sequence ${s} has ${seq.length} tokens; the model runs at most ${maxPositions} positions`);
    seq.forEach((id: unknown, i) => {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocab)
        throw new CarvqError(`${path}: sequence ${s}, position ${i}: token ${JSON.stringify(id)} is not an id from 0 to ${vocab - 1}`);
    });
    return { tokens: Int32Array.from(seq as number[]), firstTarget: 1 };
  });
}
