// Seeded sampling from a llama2.c model: the evaluation text for perplexity is a fixed set of
// sequences the original model writes itself from BOS, each with its own seed, at temperature 1.
// Nothing is cached on disk: the same model, options and seeds give the same tokens on every run
// (splitmix32 from tools/random.ts, softmax in doubles), and results are memoised in memory per
// model object.
import { CarvqError } from "../errors.ts";
import { createRandom, deriveSeed } from "../random.ts";
import { createForwardState, forward, logSoftmax } from "./forward.ts";
import type { Llama2cModel } from "./model.ts";
import { BOS } from "./tokenizer.ts";

export interface SampleOptions {
  /** Number of sequences. */
  readonly sequences: number;
  /** Tokens sampled per sequence, after its BOS (so each sequence holds length + 1 ids). */
  readonly length: number;
  /** Base seed; sequence i uses deriveSeed(seed, i). */
  readonly seed: number;
  /** Softmax temperature; 0 means greedy (argmax). */
  readonly temperature: number;
}

/** The evaluation text: 8 x 300 = 2,400 evaluated tokens. */
export const DEFAULT_SAMPLE_OPTIONS: SampleOptions = { sequences: 8, length: 300, seed: 20240601, temperature: 1 };

/**
 * The calibration text, what the compressor may tune on (auto-configuration's KL ranking, KL
 * tuning): 8 x 300 tokens sampled with other seeds, so that no choice is made on the evaluation
 * text that `carvq ppl` and the report measure.
 */
export const CALIBRATION_SAMPLE_OPTIONS: SampleOptions = { sequences: 8, length: 300, seed: 20251123, temperature: 1 };

/** Index of the largest value (the first one on ties). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Draws a token from softmax(logits / temperature) with one uniform number u in [0, 1); temperature 0 is argmax. */
export function sampleFromLogits(logits: ArrayLike<number>, temperature: number, u: number): number {
  if (temperature === 0) return argmax(logits);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    weights[i] = Math.exp((logits[i] - max) / temperature);
    total += weights[i];
  }
  const target = u * total;
  let cumulative = 0;
  for (let i = 0; i < logits.length; i++) {
    cumulative += weights[i];
    if (target < cumulative) return i;
  }
  // Rounding left target at the very top: the last token with any weight.
  for (let i = logits.length - 1; i >= 0; i--) if (weights[i] > 0) return i;
  return 0;
}

export interface GenerateOptions {
  readonly seed?: number;
  readonly temperature?: number;
  /** Sees the logits after each position p (the prediction of token p + 1), prompt positions included. */
  readonly onLogits?: (pos: number, logits: Float32Array) => void;
  /** Writes token's input embedding row (dim values) into `row`; default: the model's own table. */
  readonly input?: (token: number, row: Float32Array) => void;
  /** Sees each sampled token as soon as it is drawn (streaming output). */
  readonly onToken?: (token: number) => void;
  /** Stops before keeping a sampled token for which this is true (llama2.c's run stops at BOS). */
  readonly stopAt?: (token: number) => boolean;
}

/**
 * Feeds `prompt` (which should start with BOS) and then samples `steps` more tokens (fewer when
 * `stopAt` ends it); returns the prompt followed by the sampled ids. Deterministic for a given seed;
 * temperature 0 decodes greedily.
 */
export function generate(model: Llama2cModel, prompt: readonly number[], steps: number, options: GenerateOptions = {}): number[] {
  const temperature = options.temperature ?? 1;
  if (prompt.length < 1) throw new CarvqError("generate: the prompt needs at least one token (BOS)");
  if (!Number.isInteger(steps) || steps < 0) throw new CarvqError(`generate: steps must be a whole number >= 0, got ${steps}`);
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new CarvqError(`generate: temperature must be >= 0, got ${temperature}`);
  const total = prompt.length + steps;
  if (total > model.config.seqLen)
    throw new CarvqError(`generate: ${prompt.length} prompt + ${steps} new tokens exceed the model's seq_len ${model.config.seqLen}`);
  const random = createRandom(options.seed ?? 0);
  const state = createForwardState(model, Math.max(1, total - 1));
  const tokens = [...prompt];
  const row = options.input === undefined ? undefined : new Float32Array(model.config.dim);
  for (let pos = 0; pos < total - 1; pos++) {
    if (row !== undefined) options.input!(tokens[pos], row);
    const logits = forward(state, tokens[pos], pos, row);
    options.onLogits?.(pos, logits);
    if (pos + 1 < prompt.length) continue; // still reading the prompt
    const next = sampleFromLogits(logits, temperature, random());
    if (options.stopAt?.(next)) break;
    tokens.push(next);
    options.onToken?.(next);
  }
  return tokens;
}

const memo = new WeakMap<Llama2cModel, Map<string, readonly Int32Array[]>>();

/**
 * The evaluation text: `sequences` sequences of BOS followed by `length` tokens sampled from `model`,
 * sequence i with seed deriveSeed(seed, i). Memoised per model object and options; with `onLogits`
 * it is generated afresh so the callback sees the logits of every position of every sequence (the
 * original model's teacher-forced logits on its own text, at no extra cost).
 */
export function sampleSequences(
  model: Llama2cModel,
  options: Partial<SampleOptions> = {},
  onLogits?: (sequence: number, pos: number, logits: Float32Array) => void,
): readonly Int32Array[] {
  const o: SampleOptions = { ...DEFAULT_SAMPLE_OPTIONS, ...options };
  if (!Number.isInteger(o.sequences) || o.sequences < 1)
    throw new CarvqError(`sample: sequences must be a whole number >= 1, got ${o.sequences}`);
  if (!Number.isInteger(o.length) || o.length < 1) throw new CarvqError(`sample: length must be a whole number >= 1, got ${o.length}`);
  const key = `${o.sequences}/${o.length}/${o.seed}/${o.temperature}`;
  let byKey = memo.get(model);
  if (byKey === undefined) memo.set(model, (byKey = new Map()));
  const cached = byKey.get(key);
  if (cached !== undefined && onLogits === undefined) return cached;
  const result: Int32Array[] = [];
  for (let i = 0; i < o.sequences; i++) {
    result.push(
      Int32Array.from(
        generate(model, [BOS], o.length, {
          seed: deriveSeed(o.seed, i),
          temperature: o.temperature,
          onLogits: onLogits && ((pos, logits) => onLogits(i, pos, logits)),
        }),
      ),
    );
  }
  byKey.set(key, result);
  return result;
}

const originalMemo = new WeakMap<Llama2cModel, Map<string, { sequences: readonly Int32Array[]; logProbs: Float64Array[] }>>();

function original(model: Llama2cModel, o: SampleOptions) {
  const key = `${o.sequences}/${o.length}/${o.seed}/${o.temperature}`;
  let byKey = originalMemo.get(model);
  if (byKey === undefined) originalMemo.set(model, (byKey = new Map()));
  let entry = byKey.get(key);
  if (entry === undefined) {
    // Sampling already runs the original model teacher-forced on the text it writes: keep those logits.
    const vocab = model.config.vocabSize;
    const logProbs = Array.from({ length: o.sequences }, () => new Float64Array(o.length * vocab));
    const sequences = sampleSequences(model, o, (s, pos, logits) => logSoftmax(logits, logProbs[s], pos * vocab));
    entry = { sequences, logProbs };
    byKey.set(key, entry);
  }
  return entry;
}

/**
 * The evaluation sequences sampled from the original `model` with `options` (default: 8 x 300) and the
 * original model's log-softmax [positions, vocab] on each, as evaluatePerplexity uses them: for
 * callers (e.g. tools/llama2c/backward.ts, tools/eval/perplexity.ts) that need the same reference distributions. Memoised and
 * shared with evaluatePerplexity, so treat the arrays as read-only.
 */
export function originalEvaluation(
  model: Llama2cModel,
  options: Partial<SampleOptions> = {},
): { sequences: readonly Int32Array[]; logProbs: readonly Float64Array[] } {
  return original(model, { ...DEFAULT_SAMPLE_OPTIONS, ...options });
}
