// Windows over a token stream and the ppl/kl comparison of tools/hf/perplexity.ts, on a tiny random model.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { referenceBackend } from "../tools/hf/matmul.ts";
import { loadHfModel, matrixEmbedding, withHfInputEmbedding } from "../tools/hf/model.ts";
import { comparePerplexity, hfLogitsModel, readTokenWindows, textWindows } from "../tools/hf/perplexity.ts";
import { randomHfFolder, writeHfFolder } from "../tools/hf/write.ts";

const tmp = mkdtempSync(join(tmpdir(), "carvq-hf-ppl-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("evaluation windows", () => {
  const ids = Array.from({ length: 10 }, (_, i) => 100 + i);
  const scored = (windows: ReturnType<typeof textWindows>) => windows.flatMap((w) => Array.from(w.tokens.subarray(w.firstTarget)));

  it("disjoint windows (stride = ctx): each window's first token is context only", () => {
    const windows = textWindows(ids, 4, 4);
    expect(windows.map((w) => Array.from(w.tokens))).toEqual([
      [100, 101, 102, 103],
      [104, 105, 106, 107],
      [108, 109],
    ]);
    expect(scored(windows)).toEqual([101, 102, 103, 105, 106, 107, 109]);
  });

  it("overlapping windows (stride < ctx): every token after the first is scored exactly once, with ctx - stride tokens of context", () => {
    const windows = textWindows(ids, 4, 2);
    expect(windows.map((w) => [w.tokens[0], w.tokens.length, w.firstTarget])).toEqual([
      [100, 4, 1],
      [102, 4, 2],
      [104, 4, 2],
      [106, 4, 2],
    ]);
    expect(scored(windows)).toEqual(ids.slice(1));
  });

  it("refuses a stride past the window and reads --tokens files strictly", () => {
    expect(() => textWindows(ids, 4, 5)).toThrow(/--stride 5 exceeds --ctx 4/);
    const path = join(tmp, "t.json");
    writeFileSync(
      path,
      JSON.stringify([
        [1, 2, 3],
        [4, 5],
      ]),
    );
    expect(readTokenWindows(path, 10, 8).map((w) => [Array.from(w.tokens), w.firstTarget])).toEqual([
      [[1, 2, 3], 1],
      [[4, 5], 1],
    ]);
    expect(() => readTokenWindows(path, 10, 2)).toThrow(/sequence 0 has 3 tokens; the model runs at most 2 positions/);
    writeFileSync(path, JSON.stringify([[1]]));
    expect(() => readTokenWindows(path, 10, 8)).toThrow(/sequence 0 is 1 token\(s\) long/);
    writeFileSync(path, "[[1, 2.5]]");
    expect(() => readTokenWindows(path, 10, 8)).toThrow(/position 1: token 2.5 is not an id from 0 to 9/);
  });
});

describe("comparePerplexity", () => {
  it("the original embedding as the replacement gives ppl = ppl_orig and kl = 0 exactly; a perturbed one raises kl", async () => {
    const dir = join(tmp, "m");
    writeHfFolder(
      dir,
      randomHfFolder({
        architecture: "Qwen2ForCausalLM",
        hiddenSize: 16,
        intermediateSize: 24,
        layers: 1,
        heads: 2,
        kvHeads: 1,
        vocabSize: 30,
        dtype: "BF16",
        tied: true,
        seed: 3,
      }),
    );
    const model = await loadHfModel(dir, referenceBackend);
    const table = new Float32Array(30 * 16);
    for (let t = 0; t < 30; t++) model.embedding.rowInto(t, table, t * 16);
    const windows = textWindows(
      Array.from({ length: 40 }, (_, i) => (i * 7) % 30),
      12,
      8,
    );
    const same = comparePerplexity({
      original: hfLogitsModel(model),
      modified: hfLogitsModel(withHfInputEmbedding(model, matrixEmbedding({ rows: 30, cols: 16, data: table.slice() }))),
      windows,
    });
    expect(same.tokens).toBe(39);
    expect(same.ppl).toBe(same.ppl_orig);
    expect(same.kl).toBe(0);
    const noisy = table.map((v, i) => v + 0.3 * Math.sin(i));
    const perturbed = comparePerplexity({
      original: hfLogitsModel(model, { remember: true }),
      modified: hfLogitsModel(withHfInputEmbedding(model, matrixEmbedding({ rows: 30, cols: 16, data: noisy }))),
      windows,
    });
    expect(perturbed.ppl_orig).toBe(same.ppl_orig);
    expect(perturbed.kl).toBeGreaterThan(1e-4);
  });
});
