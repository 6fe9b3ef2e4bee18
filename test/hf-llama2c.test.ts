// stories260K exported to a Hugging Face Llama folder (tools/hf/write.ts: q/k rows permuted to the
// rotate-half layout, tok512.bin as tokenizer.json) must give the llama2.c path's numbers.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { pplCommand } from "../tools/cli/ppl.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { evaluatePerplexity, originalEvaluation } from "../tools/eval/perplexity.ts";
import { CarvqError } from "../tools/errors.ts";
import { windowLogits } from "../tools/hf/forward.ts";
import { comparePerplexity, hfLogitsModel } from "../tools/hf/perplexity.ts";
import { renderMarkdown, runReport } from "../tools/plan/report.ts";
import { referenceBackend } from "../tools/hf/matmul.ts";
import { loadHfModel, matrixEmbedding, withHfInputEmbedding } from "../tools/hf/model.ts";
import { loadHfTokenizer } from "../tools/hf/tokenizer.ts";
import { llama2cToHf, writeHfFolder } from "../tools/hf/write.ts";
import { sequenceLogits } from "../tools/llama2c/forward.ts";
import { inputEmbedding, loadLlama2cModel, type Llama2cModel } from "../tools/llama2c/model.ts";
import { encode, loadTokenizer } from "../tools/llama2c/tokenizer.ts";

const MODELS = join(import.meta.dirname, "..", "..", "shared", "models");
const MODEL = join(MODELS, "stories260K.bin");
const TOKENIZER = join(MODELS, "tok512.bin");
const haveModel = existsSync(MODEL) && existsSync(TOKENIZER);
if (!haveModel) console.warn(`skipping Hugging Face exactness tests: ${MODEL} or ${TOKENIZER} is absent (see ../shared/models/README.md)`);

const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** stories260K and its Hugging Face export, written once for every test in this file that needs them. */
let exported: { tmp: string; folder: string; model: Llama2cModel } | undefined;
function storiesAsHf(): { folder: string; model: Llama2cModel } {
  if (exported === undefined) {
    const tmp = mkdtempSync(join(tmpdir(), "carvq-hf-export-"));
    const model = loadLlama2cModel(MODEL);
    const folder = join(tmp, "stories260K-hf");
    writeHfFolder(folder, llama2cToHf(model, loadTokenizer(TOKENIZER, 512)));
    exported = { tmp, folder, model };
  }
  return exported;
}
afterAll(() => {
  if (exported !== undefined) rmSync(exported.tmp, { recursive: true, force: true });
});

describe.skipIf(!haveModel)("stories260K as a Hugging Face Llama folder", () => {
  const tmp = mkdtempSync(join(tmpdir(), "carvq-hf-l2c-"));
  let folder: string;
  let model: Llama2cModel;
  beforeAll(() => {
    ({ folder, model } = storiesAsHf());
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  it("gives llama2.c's logits to f32 rounding (rotate-half RoPE on permuted q/k rows); unpermuted rows do not", async () => {
    const hf = await loadHfModel(folder, referenceBackend);
    expect(hf.config.tiedEmbeddings).toBe(true);
    const tokens = Array.from(originalEvaluation(model, { sequences: 1, length: 40 }).sequences[0]);
    const expected = sequenceLogits(model, tokens);
    const worst = (got: Float32Array) => Math.max(...got.map((v, i) => Math.abs(v - expected[i])));
    const scale = Math.max(...expected.map(Math.abs));
    expect(scale).toBeGreaterThan(5);
    expect(worst(windowLogits(hf, tokens))).toBeLessThan(1e-5 * scale);
    // rotate-half applied to llama2.c's interleaved layout is another model.
    const exported = llama2cToHf(model);
    const unpermuted = {
      ...exported,
      tensors: exported.tensors.map((t) => (/[qk]_proj/.test(t.name) ? { ...t, data: qkOf(model, t.name) } : t)),
    };
    writeHfFolder(join(tmp, "unpermuted"), unpermuted);
    expect(worst(windowLogits(await loadHfModel(join(tmp, "unpermuted"), referenceBackend), tokens))).toBeGreaterThan(0.01 * scale);
  });

  it("tokenizer.json through @huggingface/tokenizers gives run.c's encode ids (BOS first)", () => {
    const tokenizer = loadTokenizer(TOKENIZER, 512);
    const hf = loadHfTokenizer(folder);
    for (const text of [
      "Once upon a time, there was a little girl named Lily.",
      'She said: "Wow!"  Two  spaces, ünïcödé and ☃ 1234.\nNew line.',
    ]) {
      expect(hf.encode(text)).toEqual(encode(tokenizer, text));
    }
  });

  it("carvq ppl --tokens on the folder gives the llama2.c path's ppl_orig, ppl and kl within 1e-5 relative (int2 blob)", async () => {
    const options = { sequences: 2, length: 48 };
    const blob = await compressMatrix(inputEmbedding(model), { method: "int2", block: 32 });
    const blobPath = join(tmp, "int2.carvq");
    writeFileSync(blobPath, blob.bytes);
    const reference = evaluatePerplexity(model, decodeAll(blob.blob), options);
    const tokensPath = join(tmp, "tokens.json");
    writeFileSync(tokensPath, JSON.stringify(originalEvaluation(model, options).sequences.map((s) => Array.from(s))));

    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (output.push(String(chunk)), true));
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await pplCommand.run([blobPath, "--model", folder, "--tokens", tokensPath, "--json"]);
    const hf = JSON.parse(output.join(""));
    expect(hf.tokens).toBe(reference.tokens);
    expect(hf.tokens).toBe(96);
    expect(reference.kl).toBeGreaterThan(0.01);
    expect(relative(hf.ppl_orig, reference.ppl_orig)).toBeLessThan(1e-5);
    expect(relative(hf.ppl, reference.ppl)).toBeLessThan(1e-5);
    expect(relative(hf.kl, reference.kl)).toBeLessThan(1e-5);
    expect(hf.head).toBe("original, tied");

    // The llama2.c checkpoint through the same --tokens path: the same figures again.
    output.length = 0;
    await pplCommand.run([blobPath, "--model", MODEL, "--tokens", tokensPath, "--json"]);
    const l2c = JSON.parse(output.join(""));
    expect(l2c.ppl_orig).toBe(reference.ppl_orig);
    expect(l2c.ppl).toBe(reference.ppl);
    expect(l2c.kl).toBe(reference.kl);
  });

  it("carvq ppl --text tokenizes with tokenizer.json and scores what --tokens scores on the same ids", async () => {
    const blobPath = join(tmp, "int4.carvq");
    writeFileSync(blobPath, (await compressMatrix(inputEmbedding(model), { method: "int4", block: 32 })).bytes);
    const text = "Once upon a time, there was a little girl named Lily. She loved to play outside. One day she saw a big dog in the park.";
    const textPath = join(tmp, "text.txt");
    writeFileSync(textPath, text);
    const ids = encode(loadTokenizer(TOKENIZER, 512), text);
    const ctx = 12;
    const tokensPath = join(tmp, "windows.json");
    const windows: number[][] = [];
    for (let b = 0; b < ids.length; b += ctx) if (ids.length - b >= 2) windows.push(ids.slice(b, b + ctx));
    writeFileSync(tokensPath, JSON.stringify(windows));

    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (output.push(String(chunk)), true));
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await pplCommand.run([blobPath, "--model", folder, "--text", textPath, "--ctx", String(ctx), "--json"]);
    const fromText = JSON.parse(output.join(""));
    output.length = 0;
    await pplCommand.run([blobPath, "--model", folder, "--tokens", tokensPath, "--json"]);
    const fromTokens = JSON.parse(output.join(""));
    expect(fromText.tokens).toBe(ids.length - windows.length);
    expect(fromText.ppl).toBe(fromTokens.ppl);
    expect(fromText.kl).toBe(fromTokens.kl);
    expect(fromText.kl).toBeGreaterThan(0);
  });
});

describe.skipIf(!haveModel)("carvq report and ppl on a Hugging Face folder", () => {
  const tmp = mkdtempSync(join(tmpdir(), "carvq-hf-report-"));
  let folder: string;
  let model: Llama2cModel;
  beforeAll(() => {
    ({ folder, model } = storiesAsHf());
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  it("report's ppl and kl columns through the folder equal the llama2.c model's on the same sequences", async () => {
    const options = { sequences: 2, length: 32 };
    const hf = await loadHfModel(folder, referenceBackend);
    const windows = originalEvaluation(model, options).sequences.map((tokens) => ({ tokens: Int32Array.from(tokens), firstTarget: 1 }));
    const original = hfLogitsModel(hf, { remember: true });
    const result = await runReport(inputEmbedding(model), {
      budgets: [],
      paperLevels: [],
      scalars: ["int4", "int2"],
      seed: 0,
      threads: 1,
      from: { source: folder },
      perplexity: {
        describe: "two sampled sequences",
        measure: (decoded) =>
          comparePerplexity({ original, modified: hfLogitsModel(withHfInputEmbedding(hf, matrixEmbedding(decoded))), windows }),
      },
    });
    expect(result.runs.map((r) => r.method)).toEqual(["int4", "int2"]);
    for (const run of result.runs) {
      const blob = await compressMatrix(inputEmbedding(model), { method: run.method as "int4" | "int2", block: 32 });
      const reference = evaluatePerplexity(model, decodeAll(blob.blob), options);
      expect(relative(run.ppl as number, reference.ppl)).toBeLessThan(1e-5);
      expect(relative(run.kl as number, reference.kl)).toBeLessThan(1e-5);
    }
    expect(result.runs[1].kl).toBeGreaterThan(result.runs[0].kl as number);
    expect(renderMarkdown(result, "carvq report")).toContain("on two sampled sequences; original perplexity");
  });

  it("carvq ppl refuses conflicting or missing evaluation options with exit code 2, and --help names them", async () => {
    const blobPath = join(tmp, "int4.carvq");
    writeFileSync(blobPath, (await compressMatrix(inputEmbedding(model), { method: "int4" })).bytes);
    const usage = async (args: string[], pattern: RegExp) => {
      const error = await pplCommand.run([blobPath, ...args]).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(CarvqError);
      expect((error as CarvqError).exitCode).toBe(2);
      expect((error as Error).message).toMatch(pattern);
    };
    await usage(["--model", folder], /is a Hugging Face folder: give --text FILE or --tokens FILE\.json/);
    await usage(["--model", folder, "--text", "a.txt", "--tokens", "b.json"], /give --text or --tokens, not both/);
    await usage(["--model", MODEL, "--ctx", "8"], /--ctx cuts a --text into windows; it needs --text/);
    await usage(["--model", MODEL, "--text", blobPath], /--text needs a Hugging Face folder/);
    await usage(["--model", folder, "--tokens", "b.json", "--seed", "3"], /--seed sets the sampled text/);
    const badTokens = join(tmp, "bad.json");
    writeFileSync(badTokens, JSON.stringify([[1, 2, 512]]));
    await expect(pplCommand.run([blobPath, "--model", folder, "--tokens", badTokens])).rejects.toThrow(
      /sequence 0, position 2: token 512 is not an id from 0 to 511/,
    );

    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (output.push(String(chunk)), true));
    await pplCommand.run(["--help"]);
    for (const flag of [
      "--text",
      "--tokens",
      "--ctx",
      "--stride",
      "LlamaForCausalLM",
      "Qwen2ForCausalLM",
      "Phi3ForCausalLM",
      "MistralForCausalLM",
      "tied",
    ])
      expect(output.join("")).toContain(flag);
  });
});

/** The llama2.c (unpermuted) q or k weight for an HF tensor name, to build a wrongly exported folder. */
function qkOf(model: Llama2cModel, name: string): Float32Array {
  const layer = Number(/layers\.(\d+)\./.exec(name)?.[1]);
  return name.includes("q_proj") ? model.layers[layer].wq : model.layers[layer].wk;
}
