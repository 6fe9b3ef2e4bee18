// Perplexity and KL of stories260K with a replacement input embedding, and the `carvq ppl` command.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { pplCommand } from "../tools/cli/ppl.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { CarvqError } from "../tools/errors.ts";
import { evaluatePerplexity } from "../tools/eval/perplexity.ts";
import { inputEmbedding, loadLlama2cModel, withInputEmbedding, type Llama2cModel } from "../tools/llama2c/model.ts";

const MODEL = join(import.meta.dirname, "..", "..", "shared", "models", "stories260K.bin");
const haveModel = existsSync(MODEL);
if (!haveModel) console.warn(`skipping perplexity tests: ${MODEL} is absent (see ../shared/models/README.md)`);

describe.skipIf(!haveModel)("perplexity on stories260K", () => {
  let model: Llama2cModel;
  const getModel = () => (model ??= loadLlama2cModel(MODEL));
  const tmp = mkdtempSync(join(tmpdir(), "carvq-ppl-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  it("identity replacement: ppl equals ppl_orig exactly and kl is exactly 0, on >= 2,000 tokens", () => {
    const m = getModel();
    const copy = { rows: 512, cols: 64, data: Float32Array.from(m.tokenEmbedding) };
    const r = evaluatePerplexity(m, copy);
    expect(r.tokens).toBeGreaterThanOrEqual(2000);
    expect(r.ppl).toBe(r.ppl_orig);
    expect(r.kl).toBe(0);
    // The model writes text it finds predictable (a reference measured 3.59 on its own samples).
    expect(r.ppl_orig).toBeGreaterThan(2.5);
    expect(r.ppl_orig).toBeLessThan(5);
  });

  it("only the input embedding is replaced; the tied classifier keeps its original values", async () => {
    const m = getModel();
    const zeros = { rows: 512, cols: 64, data: new Float32Array(512 * 64) };
    const modified = withInputEmbedding(m, zeros);
    expect(modified.tokenEmbedding).toBe(zeros.data);
    expect(modified.wcls).toBe(m.wcls);
    expect(m.wcls.some((v) => v !== 0)).toBe(true);
    expect(() => evaluatePerplexity(m, { rows: 512, cols: 32, data: new Float32Array(512 * 32) })).toThrow(CarvqError);
  });

  it("int4 keeps the model close, int2 damages it more (kl and ppl ordered)", async () => {
    const m = getModel();
    const table = inputEmbedding(m);
    const int4 = evaluatePerplexity(m, decodeAll((await compressMatrix(table, { method: "int4", block: 32 })).blob));
    const int2 = evaluatePerplexity(m, decodeAll((await compressMatrix(table, { method: "int2", block: 32 })).blob));
    expect(int4.kl).toBeGreaterThan(0);
    expect(int4.kl).toBeLessThan(0.05);
    expect(int4.ppl / int4.ppl_orig).toBeLessThan(1.05);
    expect(int2.kl).toBeGreaterThan(4 * int4.kl);
    expect(int2.ppl).toBeGreaterThan(int4.ppl);
    expect(int2.ppl_orig).toBe(int4.ppl_orig);
  });

  it("carvq ppl prints ppl_orig, ppl, kl and tokens, and refuses a blob of another shape in one line", async () => {
    const m = getModel();
    const good = join(tmp, "int4.carvq");
    writeFileSync(good, (await compressMatrix(inputEmbedding(m), { method: "int4" })).bytes);
    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (output.push(String(chunk)), true));
    await pplCommand.run([good, "--model", MODEL, "--json", "--sequences", "2", "--length", "100"]);
    const result = JSON.parse(output.join(""));
    expect(result.tokens).toBe(200);
    for (const key of ["ppl_orig", "ppl", "kl", "bpp"]) expect(typeof result[key]).toBe("number");
    expect(result.kl).toBeGreaterThan(0);

    const narrow = join(tmp, "narrow.carvq");
    const wrongShape = { rows: 512, cols: 32, data: m.tokenEmbedding.slice(0, 512 * 32) };
    writeFileSync(narrow, (await compressMatrix(wrongShape, { method: "int4" })).bytes);
    const error = await pplCommand.run([narrow, "--model", MODEL]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CarvqError);
    expect((error as Error).message).toMatch(/is 512 x 32 but .*token embedding is 512 x 64/);
    expect((error as Error).message).not.toContain("\n");

    await expect(pplCommand.run([good])).rejects.toThrow(/--model is required/);
    await expect(pplCommand.run([good, "--model", MODEL, "--length", "512"])).rejects.toThrow(
      /--length must be a whole number from 1 to 511/,
    );
  });

  it("--help names every option", async () => {
    const output: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (output.push(String(chunk)), true));
    await pplCommand.run(["--help"]);
    const text = output.join("");
    for (const flag of ["--model", "--sequences", "--length", "--seed", "--json", "--help", "ppl_orig", "kl", "tokens"])
      expect(text).toContain(flag);
  });
});
