// `carvq generate`: a llama2.c model telling a story with its input embedding served by the WASM
// runtime from a blob (openTable). Its tokens must be exactly what the TypeScript model samples with
// the reference decoder's table (bit-identical rows give identical logits), the original-table run
// exactly what the model samples with its own table, and the printed text the tokenizer's reading
// of those tokens. Needs ../shared/models (skipped with a message when absent).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseBlob } from "../tools/blob/reader.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { inputEmbedding, loadLlama2cModel, withInputEmbedding, type Llama2cModel } from "../tools/llama2c/model.ts";
import { generate } from "../tools/llama2c/sample.ts";
import { BOS, decode, encode, loadTokenizer } from "../tools/llama2c/tokenizer.ts";

const MODELS = join(import.meta.dirname, "..", "..", "shared", "models");
const MODEL = join(MODELS, "stories260K.bin");
const TOKENIZER = join(MODELS, "tok512.bin");
const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));
const haveModel = existsSync(MODEL) && existsSync(TOKENIZER);
if (!haveModel) console.warn(`skipping carvq generate tests: ${MODEL} or ${TOKENIZER} is absent (see ../shared/models/README.md)`);

const dir = mkdtempSync(join(tmpdir(), "carvq-generate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  text: string;
  prompt: number[];
  tokens: number[];
  originalTokens: number[];
  agreeing: number;
  tokensPerSecond: number;
  originalTokensPerSecond: number;
}

function carvq(...args: string[]) {
  const run = spawnSync(process.execPath, ["--no-warnings", cli, ...args], { encoding: "utf8" });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** What the TypeScript model samples with `model`'s input table, as generate does (stopping at BOS). */
function sampled(model: Llama2cModel, prompt: number[], steps: number, seed: number, temperature: number): number[] {
  return generate(model, prompt, steps, { seed, temperature, stopAt: (t) => t === BOS });
}

describe.skipIf(!haveModel || !existsSync(cli))("carvq generate on stories260K", () => {
  const model = haveModel ? loadLlama2cModel(MODEL) : (null as unknown as Llama2cModel);
  const tokenizer = haveModel ? loadTokenizer(TOKENIZER, 512) : null;
  // int4 in blocks of 16 (5.1 bpp) is close to the original table; RVQ with two levels (2.5 bpp) far from it.
  const blobs: Record<"int4" | "rvq", Uint8Array> = { int4: new Uint8Array(0), rvq: new Uint8Array(0) };
  const paths = { int4: join(dir, "int4.carvq"), rvq: join(dir, "rvq.carvq") };
  beforeAll(async () => {
    blobs.int4 = (await compressMatrix(inputEmbedding(model), { method: "int4", block: 16 })).bytes;
    blobs.rvq = (await compressMatrix(inputEmbedding(model), { h: 8, levels: 2, group: 64, iters: 4 })).bytes;
    for (const name of ["int4", "rvq"] as const) writeFileSync(paths[name], blobs[name]);
  });

  for (const [name, temperature, steps, seed] of [
    ["rvq", 1, 40, 5],
    ["int4", 0, 30, 1],
  ] as const) {
    it(`${name} blob, temperature ${temperature}: the story is the reference decoder's, the original run the model's own`, () => {
      const run = carvq(
        "generate",
        paths[name],
        "--model",
        MODEL,
        "--prompt",
        "Once upon a time",
        "--steps",
        String(steps),
        "--seed",
        String(seed),
        "--temperature",
        String(temperature),
        "--json",
      );
      expect(run.code, run.stderr).toBe(0);
      const r = JSON.parse(run.stdout) as Result;
      expect(r.prompt).toEqual(encode(tokenizer!, "Once upon a time"));
      const reference = withInputEmbedding(model, decodeAll(parseBlob(blobs[name], name)));
      expect(r.tokens).toEqual(sampled(reference, r.prompt, steps, seed, temperature));
      expect(r.originalTokens).toEqual(sampled(model, r.prompt, steps, seed, temperature));
      expect(r.tokens.length).toBeGreaterThan(r.prompt.length + 5);
      expect(r.text).toBe(decode(tokenizer!, r.tokens));
      expect(r.text.startsWith("Once upon a time")).toBe(true);
      expect(r.tokensPerSecond).toBeGreaterThan(0);
      expect(r.originalTokensPerSecond).toBeGreaterThan(0);
      expect(run.stderr).toMatch(/tokens\/s with the blob .* tokens\/s with the original table/);
      if (name === "int4") {
        // Greedy decoding with a table this close: the first sampled tokens are the original's.
        expect(r.agreeing).toBeGreaterThanOrEqual(8);
      }
    });
  }

  it("prints the story as it goes, the same text as --json reports", () => {
    const args = ["generate", paths.rvq, "--model", MODEL, "--steps", "20", "--seed", "9"];
    const plain = carvq(...args);
    expect(plain.code, plain.stderr).toBe(0);
    const json = JSON.parse(carvq(...args, "--json").stdout) as Result;
    expect(plain.stdout).toBe(`${json.text}\n`);
    expect(json.tokens[0]).toBe(BOS);
  });

  it("refuses a blob of another shape, a missing model and bad options, one line each", async () => {
    const other = join(dir, "other.carvq");
    writeFileSync(
      other,
      (
        await compressMatrix(
          { rows: 512, cols: 32, data: new Float32Array(512 * 32).map((_, i) => Math.sin(i)) },
          { h: 8, levels: 1, group: 16, iters: 2 },
        )
      ).bytes,
    );
    for (const [args, pattern] of [
      [[other, "--model", MODEL], /is 512 x 32 but .* is 512 x 64/],
      [[paths.rvq], /--model is required/],
      [[paths.rvq, "--model", MODEL, "--temperature", "hot"], /--temperature must be a number/],
      [[paths.rvq, "--model", MODEL, "--steps", "0"], /--steps must be .*1 .*511/],
    ] as const) {
      const run = carvq("generate", ...args);
      expect(run.code, run.stderr).not.toBe(0);
      expect(run.stderr.trim().split("\n"), run.stderr).toHaveLength(1);
      expect(run.stderr).toMatch(pattern);
    }
  });
});
