// The llama2.c forward pass against an independent, deliberately naive reimplementation (its own
// byte parsing, nested number arrays, no KV cache, attention recomputed from scratch over the whole
// prefix), on a synthetic checkpoint and on the real stories260K; and sampling from the real model
// checked for English.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { createForwardState, forward, sequenceLogits } from "../tools/llama2c/forward.ts";
import { loadLlama2cModel, withInputEmbedding, type Llama2cModel } from "../tools/llama2c/model.ts";
import { generate, sampleFromLogits, sampleSequences } from "../tools/llama2c/sample.ts";
import { BOS, decode, encode, loadTokenizer } from "../tools/llama2c/tokenizer.ts";
import { createRandom } from "../tools/random.ts";

const MODEL = join(import.meta.dirname, "..", "..", "shared", "models", "stories260K.bin");
const TOKENIZER = join(import.meta.dirname, "..", "..", "shared", "models", "tok512.bin");
const haveModel = existsSync(MODEL) && existsSync(TOKENIZER);
if (!haveModel) console.warn(`skipping stories260K tests: ${MODEL} or ${TOKENIZER} is absent (see ../shared/models/README.md)`);

// ------------------------------------------------------------------------------ naive reference

type Vec = number[];
type Mat = number[][];

interface NaiveModel {
  dim: number;
  heads: number;
  kvHeads: number;
  emb: Mat;
  layers: { rmsAtt: Vec; wq: Mat; wk: Mat; wv: Mat; wo: Mat; rmsFfn: Vec; w1: Mat; w2: Mat; w3: Mat }[];
  rmsFinal: Vec;
  wcls: Mat;
}

/** Parses a checkpoint straight from its bytes, in the README's order, into nested arrays. */
function naiveParse(bytes: Uint8Array): NaiveModel {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [dim, hidden, nLayers, heads, kvHeads, signedVocab, seqLen] = [0, 1, 2, 3, 4, 5, 6].map((i) => view.getInt32(4 * i, true));
  const vocab = Math.abs(signedVocab);
  const kvDim = (dim / heads) * kvHeads;
  let offset = 28;
  const vec = (n: number): Vec => Array.from({ length: n }, () => ((offset += 4), view.getFloat32(offset - 4, true)));
  const mat = (rows: number, cols: number): Mat => Array.from({ length: rows }, () => vec(cols));
  const perLayer = <T>(read: () => T): T[] => Array.from({ length: nLayers }, read);
  const emb = mat(vocab, dim);
  const rmsAtt = perLayer(() => vec(dim));
  const wq = perLayer(() => mat(dim, dim));
  const wk = perLayer(() => mat(kvDim, dim));
  const wv = perLayer(() => mat(kvDim, dim));
  const wo = perLayer(() => mat(dim, dim));
  const rmsFfn = perLayer(() => vec(dim));
  const w1 = perLayer(() => mat(hidden, dim));
  const w2 = perLayer(() => mat(dim, hidden));
  const w3 = perLayer(() => mat(hidden, dim));
  const rmsFinal = vec(dim);
  offset += seqLen * (dim / heads) * 4; // legacy RoPE tables
  const wcls = signedVocab > 0 ? emb : mat(vocab, dim);
  if (offset !== bytes.length) throw new Error(`naiveParse: ended at ${offset}, file has ${bytes.length}`);
  const layers = rmsAtt.map((_, l) => ({
    rmsAtt: rmsAtt[l],
    wq: wq[l],
    wk: wk[l],
    wv: wv[l],
    wo: wo[l],
    rmsFfn: rmsFfn[l],
    w1: w1[l],
    w2: w2[l],
    w3: w3[l],
  }));
  return { dim, heads, kvHeads, emb, layers, rmsFinal, wcls };
}

const dot = (a: Vec, b: Vec) => a.reduce((s, v, i) => s + v * b[i], 0);
const apply = (m: Mat, x: Vec) => m.map((row) => dot(row, x));
const rms = (x: Vec, w: Vec) => {
  const r = Math.sqrt(dot(x, x) / x.length + 1e-5);
  return x.map((v, i) => (w[i] * v) / r);
};
/** RoPE as complex multiplication of each head's pairs (2i, 2i+1) by e^{i p theta_i}. */
const rotate = (v: Vec, p: number, headSize: number) =>
  v.map((_, j) => {
    const pair = j - (j % 2);
    const theta = p / 10000 ** ((pair % headSize) / headSize);
    const [re, im] = [v[pair], v[pair + 1]];
    return j % 2 === 0 ? re * Math.cos(theta) - im * Math.sin(theta) : re * Math.sin(theta) + im * Math.cos(theta);
  });

/** Logits at every position of `tokens`, the whole prefix recomputed at once, causal attention by hand. */
function naiveLogits(m: NaiveModel, tokens: number[]): Mat {
  const headSize = m.dim / m.heads;
  let xs = tokens.map((t) => [...m.emb[t]]);
  for (const L of m.layers) {
    const normed = xs.map((x) => rms(x, L.rmsAtt));
    const qs = normed.map((x, p) => rotate(apply(L.wq, x), p, headSize));
    const ks = normed.map((x, p) => rotate(apply(L.wk, x), p, headSize));
    const vs = normed.map((x) => apply(L.wv, x));
    xs = xs.map((x, p) => {
      const mixed: Vec = [];
      for (let h = 0; h < m.heads; h++) {
        const g = Math.floor((h * m.kvHeads) / m.heads); // the kv head this query head reads
        const slice = (v: Vec, head: number) => v.slice(head * headSize, (head + 1) * headSize);
        const scores = ks.slice(0, p + 1).map((k) => dot(slice(qs[p], h), slice(k, g)) / Math.sqrt(headSize));
        const top = Math.max(...scores);
        const weights = scores.map((s) => Math.exp(s - top));
        const total = weights.reduce((a, b) => a + b, 0);
        for (let i = 0; i < headSize; i++) mixed.push(weights.reduce((s, w, t) => s + (w / total) * vs[t][g * headSize + i], 0));
      }
      const attended = apply(L.wo, mixed);
      return x.map((v, i) => v + attended[i]);
    });
    xs = xs.map((x) => {
      const n = rms(x, L.rmsFfn);
      const gate = apply(L.w1, n);
      const up = apply(L.w3, n);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const down = apply(L.w2, act);
      return x.map((v, i) => v + down[i]);
    });
  }
  return xs.map((x) => apply(m.wcls, rms(x, m.rmsFinal)));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

// ------------------------------------------------------------------------------ synthetic checkpoint

const tmp = mkdtempSync(join(tmpdir(), "carvq-llama2c-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A random llama2.c checkpoint; its legacy RoPE tables are NaN, so reading them as weights poisons every output. */
function syntheticCheckpoint(untied: boolean): Uint8Array {
  const [dim, hidden, layers, heads, kvHeads, vocab, seqLen] = [16, 24, 2, 4, 2, 20, 12];
  const kvDim = (dim / heads) * kvHeads;
  const random = createRandom(untied ? 11 : 12);
  const values: number[] = [];
  const push = (n: number, scale: number, base = 0) => {
    for (let i = 0; i < n; i++) values.push(base + scale * (random() * 2 - 1));
  };
  push(vocab * dim, 1); // embedding
  push(layers * dim, 0.2, 1); // rms_att
  push(layers * dim * dim, 0.4);
  push(layers * kvDim * dim * 2, 0.4); // wk, wv
  push(layers * dim * dim, 0.4);
  push(layers * dim, 0.2, 1); // rms_ffn
  push(layers * hidden * dim * 3, 0.4); // w1, w2, w3
  push(dim, 0.2, 1); // rms_final
  for (let i = 0; i < seqLen * (dim / heads); i++) values.push(NaN);
  if (untied) push(vocab * dim, 1);
  const bytes = new Uint8Array(28 + values.length * 4);
  const view = new DataView(bytes.buffer);
  [dim, hidden, layers, heads, kvHeads, untied ? -vocab : vocab, seqLen].forEach((v, i) => view.setInt32(4 * i, v, true));
  values.forEach((v, i) => view.setFloat32(28 + 4 * i, v, true));
  return bytes;
}

describe("llama2c model and forward pass (synthetic checkpoint)", () => {
  for (const untied of [false, true]) {
    it(`matches the naive reference at every position (${untied ? "untied classifier, negative vocab_size" : "tied classifier"})`, () => {
      const bytes = syntheticCheckpoint(untied);
      const path = join(tmp, `synthetic-${untied}.bin`);
      writeFileSync(path, bytes);
      const model = loadLlama2cModel(path);
      const naive = naiveParse(bytes);
      expect(model.config.sharedClassifier).toBe(!untied);
      expect(Array.from(model.wcls.subarray(0, 16))).toEqual(naive.wcls[0].map(Math.fround));
      if (untied) expect(model.wcls).not.toBe(model.tokenEmbedding);
      const tokens = [1, 5, 19, 0, 7, 7, 3, 12, 2, 9, 4, 11];
      const fast = sequenceLogits(model, tokens);
      const slow = naiveLogits(naive, tokens);
      for (let p = 0; p < tokens.length; p++) {
        const row = fast.subarray(p * 20, (p + 1) * 20);
        expect(row.every(Number.isFinite)).toBe(true);
        expect(maxAbsDiff(row, slow[p])).toBeLessThan(1e-4);
      }
      // The test can fail: a single changed token changes later logits.
      const other = sequenceLogits(model, [...tokens.slice(0, 4), 8, ...tokens.slice(5)]);
      expect(maxAbsDiff(other.subarray(11 * 20), slow[11])).toBeGreaterThan(1e-3);
    });
  }

  it("refuses a truncated checkpoint and an out-of-range token or position with a CarvqError", () => {
    const bytes = syntheticCheckpoint(true);
    const path = join(tmp, "truncated.bin");
    writeFileSync(path, bytes.subarray(0, bytes.length - 4));
    expect(() => loadLlama2cModel(path)).toThrow(CarvqError);
    writeFileSync(path, bytes);
    const model = loadLlama2cModel(path);
    const state = createForwardState(model, 4);
    expect(() => forward(state, 20, 0)).toThrow(/token 20 is out of range/);
    expect(() => forward(state, 1, 4)).toThrow(/position 4 is out of range/);
    expect(() => createForwardState(model, 13)).toThrow(CarvqError);
    expect(() => withInputEmbedding(model, { rows: 20, cols: 8, data: new Float32Array(160) })).toThrow(/is 20 x 8 but .* 20 x 16/);
  });

  it("samples deterministically per seed, and temperature 0 is argmax", () => {
    const bytes = syntheticCheckpoint(false);
    const path = join(tmp, "sampling.bin");
    writeFileSync(path, bytes);
    const model = loadLlama2cModel(path);
    expect(generate(model, [BOS], 11, { seed: 5 })).toEqual(generate(model, [BOS], 11, { seed: 5 }));
    expect(generate(model, [BOS], 11, { seed: 5 })).not.toEqual(generate(model, [BOS], 11, { seed: 6 }));
    expect(sampleFromLogits([0.1, 3, -2, 2.9], 0, 0.99)).toBe(1);
    expect(sampleFromLogits([0, Math.log(3)], 1, 0.24)).toBe(0); // p = [0.25, 0.75]
    expect(sampleFromLogits([0, Math.log(3)], 1, 0.26)).toBe(1);
  });
});

// ------------------------------------------------------------------------------ the real model

describe.skipIf(!haveModel)("stories260K (../shared/models)", () => {
  let model: Llama2cModel;
  const getModel = () => (model ??= loadLlama2cModel(MODEL));

  it("loads the header and every weight", () => {
    const m = getModel();
    expect(m.config).toEqual({
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 512,
      sharedClassifier: true,
    });
    expect(m.layers).toHaveLength(5);
    expect(m.wcls).toBe(m.tokenEmbedding);
  });

  it("forward pass matches the naive reference within 1e-4 at several positions", async () => {
    const { readFileSync } = await import("node:fs");
    const naive = naiveParse(new Uint8Array(readFileSync(MODEL)));
    const tokens = [BOS, 403, 407, 261, 378, 292, 327, 261, 423, 300, 370, 371, 418, 301];
    const fast = sequenceLogits(getModel(), tokens);
    const slow = naiveLogits(naive, tokens);
    for (const p of [0, 1, 4, 8, tokens.length - 1]) {
      expect(maxAbsDiff(fast.subarray(p * 512, (p + 1) * 512), slow[p])).toBeLessThan(1e-4);
    }
  });

  it("tokenizer: encode/decode round trip of a prompt", () => {
    const tok = loadTokenizer(TOKENIZER, 512);
    const ids = encode(tok, "Once upon a time, there was a little girl.");
    expect(ids[0]).toBe(BOS);
    expect(decode(tok, ids)).toBe("Once upon a time, there was a little girl.");
    expect(() => loadTokenizer(TOKENIZER, 600)).toThrow(CarvqError);
  });

  it("sampling from 'Once upon a time' writes English, and the model finds its own samples predictable", () => {
    const tok = loadTokenizer(TOKENIZER, 512);
    const m = getModel();
    const prompt = encode(tok, "Once upon a time");
    const common = new Set(
      "the a and was to he she it they her his of in with said day one big little had play saw very happy wanted".split(" "),
    );
    let words = 0;
    let alphabetic = 0;
    let frequent = 0;
    let nll = 0;
    let predicted = 0;
    for (const seed of [1, 2, 3]) {
      const ids = generate(m, prompt, 120, { seed });
      const text = decode(tok, ids);
      for (const raw of text.split(/\s+/).filter((w) => w.length > 0)) {
        const word = raw.replace(/^["'(]+|[.,!?;:"')]+$/g, "");
        words++;
        if (/^[A-Za-z]+('[a-z]+)?$/.test(word)) alphabetic++;
        if (common.has(word.toLowerCase())) frequent++;
      }
      const logits = sequenceLogits(m, ids.slice(0, -1));
      for (let p = prompt.length - 1; p < ids.length - 1; p++) {
        const row = logits.subarray(p * 512, (p + 1) * 512);
        const max = Math.max(...row);
        const logTotal = Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max;
        nll += logTotal - row[ids[p + 1]];
        predicted++;
      }
    }
    expect(words).toBeGreaterThan(150);
    expect(alphabetic / words).toBeGreaterThan(0.95);
    expect(frequent / words).toBeGreaterThan(0.3); // random subword soup would be near 0
    expect(Math.exp(nll / predicted)).toBeLessThan(10);
  });

  it("the evaluation text is fixed: at least 2,000 tokens from BOS, the same every time", () => {
    const a = sampleSequences(getModel());
    const b = sampleSequences(loadLlama2cModel(MODEL)); // a fresh model object: regenerated, not memoised
    expect(a.reduce((n, s) => n + s.length - 1, 0)).toBeGreaterThanOrEqual(2000);
    expect(a.every((s) => s[0] === BOS)).toBe(true);
    expect(b).toEqual(a);
    expect(new Set(a.map((s) => s.join(","))).size).toBe(a.length); // distinct seeds, distinct stories
  });
});
