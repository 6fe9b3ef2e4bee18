// klGradient on the real stories260K: its KL is evaluatePerplexity's, its gradient agrees with central
// finite differences of the double-precision forward (entry by entry and along a random direction),
// and it vanishes where it must (unused rows; everywhere at the original embedding).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evaluatePerplexity, originalEvaluation } from "../tools/eval/perplexity.ts";
import { klGradient } from "../tools/llama2c/backward.ts";
import { loadLlama2cModel, type Llama2cModel } from "../tools/llama2c/model.ts";
import type { Matrix } from "../tools/matrix.ts";
import { createRandom } from "../tools/random.ts";

const MODEL = join(import.meta.dirname, "..", "..", "shared", "models", "stories260K.bin");
const haveModel = existsSync(MODEL);
if (!haveModel) console.warn(`skipping klGradient tests: ${MODEL} is absent (see ../shared/models/README.md)`);

// Short evaluation text so that the ~40 forward passes of the finite-difference checks stay cheap.
const SHORT = { sequences: 2, length: 40, seed: 7 };

/** The model's embedding plus uniform noise of +-`amplitude`, seeded. */
function perturbed(model: Llama2cModel, amplitude: number, seed: number): Matrix {
  const random = createRandom(seed);
  const data = Float32Array.from(model.tokenEmbedding, (v) => v + amplitude * (2 * random() - 1));
  return { rows: model.config.vocabSize, cols: model.config.dim, data };
}

/** Tokens used as an input (every token of a sequence but its last). */
function inputTokens(sequences: readonly Int32Array[]): number[] {
  const used = new Set<number>();
  for (const tokens of sequences) for (let p = 0; p + 1 < tokens.length; p++) used.add(tokens[p]);
  return [...used].sort((a, b) => a - b);
}

describe.skipIf(!haveModel)("klGradient on stories260K", () => {
  let model: Llama2cModel;
  const getModel = () => (model ??= loadLlama2cModel(MODEL));

  it("kl equals evaluatePerplexity's kl for a perturbed embedding (same positions, same rounding)", () => {
    const m = getModel();
    const { sequences, logProbs } = originalEvaluation(m, SHORT);
    const embedding = perturbed(m, 0.05, 1);
    const reference = evaluatePerplexity(m, embedding, SHORT);
    const result = klGradient(m, embedding, sequences, logProbs);
    expect(result.tokens).toBe(reference.tokens);
    expect(result.tokens).toBe(80);
    expect(reference.kl).toBeGreaterThan(1e-4);
    expect(Math.abs(result.kl - reference.kl)).toBeLessThanOrEqual(1e-9 * reference.kl);
  });

  it("the gradient matches central finite differences of the float64 forward, entrywise and along a random direction", () => {
    const m = getModel();
    const { sequences, logProbs } = originalEvaluation(m, SHORT);
    const embedding = perturbed(m, 0.05, 2);
    const { dim } = m.config;
    const exact = klGradient(m, embedding, sequences, logProbs, { precision: "float64" });
    const klAt = (data: Float32Array): number => klGradient(m, { ...embedding, data }, sequences, logProbs, { precision: "float64" }).kl;
    // Float32 storage of the perturbed table limits how small a step can be represented exactly: step
    // with values that are exact in float32 and divide by the step actually taken.
    const h = 2 ** -10;
    const used = inputTokens(sequences);
    const random = createRandom(3);
    let largest = 0;
    for (const v of exact.gradient) largest = Math.max(largest, Math.abs(v));
    for (let n = 0; n < 20; n++) {
      const index = used[Math.floor(random() * used.length)] * dim + Math.floor(random() * dim);
      const plus = Float32Array.from(embedding.data);
      const minus = Float32Array.from(embedding.data);
      plus[index] += h;
      minus[index] -= h;
      const fd = (klAt(plus) - klAt(minus)) / (plus[index] - minus[index]);
      const g = exact.gradient[index];
      expect(Math.abs(fd - g), `entry ${index}: analytic ${g}, finite difference ${fd}`).toBeLessThan(1e-3 * Math.abs(g) + 1e-4 * largest);
    }
    // Directional derivative along a random direction over every used row.
    const direction = new Float32Array(embedding.data.length);
    for (const token of used) for (let j = 0; j < dim; j++) direction[token * dim + j] = 2 * random() - 1;
    let analytic = 0;
    for (let i = 0; i < direction.length; i++) analytic += exact.gradient[i] * direction[i];
    const t = 2 ** -12;
    const plus = Float32Array.from(embedding.data, (v, i) => v + t * direction[i]);
    const minus = Float32Array.from(embedding.data, (v, i) => v - t * direction[i]);
    let step = 0; // the step taken, after float32 rounding of each entry: <plus - minus, direction>
    let norm = 0;
    for (let i = 0; i < direction.length; i++) {
      step += (plus[i] - minus[i]) * direction[i];
      norm += direction[i] * direction[i];
    }
    const fd = ((klAt(plus) - klAt(minus)) / step) * norm;
    expect(Math.abs(analytic)).toBeGreaterThan(0);
    expect(Math.abs(fd - analytic)).toBeLessThan(1e-3 * Math.abs(analytic));
    // The default (float32 forward) gradient is the same up to float32 rounding of the activations.
    const fast = klGradient(m, embedding, sequences, logProbs);
    let diff = 0;
    let size = 0;
    for (let i = 0; i < fast.gradient.length; i++) {
      diff += (fast.gradient[i] - exact.gradient[i]) ** 2;
      size += exact.gradient[i] ** 2;
    }
    expect(Math.sqrt(diff / size)).toBeLessThan(1e-3);
  });

  it("rows of tokens never used as an input get 0, and the original embedding gives kl 0 and a zero gradient", () => {
    const m = getModel();
    const { sequences, logProbs } = originalEvaluation(m, SHORT);
    const { dim, vocabSize } = m.config;
    const used = new Set(inputTokens(sequences));
    expect(used.size).toBeLessThan(vocabSize);
    const moved = klGradient(m, perturbed(m, 0.05, 4), sequences, logProbs);
    for (let token = 0; token < vocabSize; token++) {
      const row = moved.gradient.subarray(token * dim, (token + 1) * dim);
      if (used.has(token)) expect(row.some((v) => v !== 0)).toBe(true);
      else expect(row.every((v) => v === 0)).toBe(true);
    }
    // The float32 forward repeats the original model's arithmetic exactly, so at the original table
    // p_mod == p_orig bit for bit: the KL minimum, where the gradient is exactly 0.
    const original = { rows: vocabSize, cols: dim, data: Float32Array.from(m.tokenEmbedding) };
    const atMinimum = klGradient(m, original, sequences, logProbs);
    expect(atMinimum.kl).toBe(0);
    expect(atMinimum.gradient.every((v) => v === 0)).toBe(true);
  });
});
