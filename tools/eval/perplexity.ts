// End-to-end quality of a replacement input embedding on a real llama2.c model. The evaluation text
// is sampled from the original model (tools/llama2c/sample.ts); both the original and the modified
// model read it teacher-forced, and we compare their next-token distributions:
//   ppl_orig, ppl = exp(mean over predicted tokens of -log p(next token))   (original, modified)
//   kl            = mean over positions of KL(p_orig || p_modified)          (nats)
// Only the input embedding is replaced; the output classifier keeps its original values even when
// tied. Both models go through the same code, so an identical embedding gives identical numbers.
import type { Matrix } from "../matrix.ts";
import { createForwardState, forward, logSoftmax } from "../llama2c/forward.ts";
import { withInputEmbedding, type Llama2cModel } from "../llama2c/model.ts";
import { DEFAULT_SAMPLE_OPTIONS, originalEvaluation, type SampleOptions } from "../llama2c/sample.ts";

export { logSoftmax, originalEvaluation };

export interface PerplexityResult {
  /** Perplexity of the original model on the evaluation text. */
  readonly ppl_orig: number;
  /** Perplexity with the replacement input embedding. */
  readonly ppl: number;
  /** Mean KL(original || modified) of the next-token distributions, in nats. */
  readonly kl: number;
  /** Predicted tokens (positions) averaged over. */
  readonly tokens: number;
  /** Evaluation sequences (each BOS + sampled tokens). */
  readonly sequences: number;
}

/** Log-probabilities [positions, vocab] of every sequence under `model`, teacher-forced; position p predicts token p + 1. */
function teacherForcedLogProbs(model: Llama2cModel, sequences: readonly Int32Array[]): Float64Array[] {
  const vocab = model.config.vocabSize;
  return sequences.map((tokens) => {
    const positions = tokens.length - 1;
    const state = createForwardState(model, positions);
    const out = new Float64Array(positions * vocab);
    for (let p = 0; p < positions; p++) logSoftmax(forward(state, tokens[p], p), out, p * vocab);
    return out;
  });
}

/**
 * Perplexity and KL of `model` with its input embedding replaced by `embedding` (vocab x dim; a
 * CarvqError names both shapes when they differ), on the evaluation text sampled from the original
 * `model` with `options` (default: 8 sequences of 300 tokens, 2,400 predictions). The original
 * model's samples and log-probabilities are memoised in memory per model object.
 */
export function evaluatePerplexity(
  model: Llama2cModel,
  embedding: Matrix,
  options: Partial<SampleOptions> = {},
  name?: string,
): PerplexityResult {
  const modified = withInputEmbedding(model, embedding, name);
  const o: SampleOptions = { ...DEFAULT_SAMPLE_OPTIONS, ...options };
  const { sequences, logProbs: originalLogProbs } = originalEvaluation(model, o);
  const modifiedLogProbs = teacherForcedLogProbs(modified, sequences);
  const vocab = model.config.vocabSize;
  let nllOriginal = 0;
  let nllModified = 0;
  let klSum = 0;
  let tokens = 0;
  for (let s = 0; s < sequences.length; s++) {
    const seq = sequences[s];
    const lpo = originalLogProbs[s];
    const lpm = modifiedLogProbs[s];
    for (let p = 0; p + 1 < seq.length; p++) {
      const row = p * vocab;
      const next = seq[p + 1];
      nllOriginal -= lpo[row + next];
      nllModified -= lpm[row + next];
      let kl = 0;
      for (let i = 0; i < vocab; i++) {
        const a = lpo[row + i];
        kl += Math.exp(a) * (a - lpm[row + i]);
      }
      klSum += kl;
      tokens++;
    }
  }
  return {
    ppl_orig: Math.exp(nllOriginal / tokens),
    ppl: Math.exp(nllModified / tokens),
    kl: klSum / tokens,
    tokens,
    sequences: sequences.length,
  };
}
