// End-to-end codebook tuning (tools/quant/tune.ts, `--tune-kl`): on an objective the squared
// error does not capture it lowers that objective, leaves the codes alone, is deterministic and
// never returns codebooks worse than the fitted ones; compress wires it in and refuses it where it
// cannot apply. On the real stories260K model it lowers the KL on the calibration text.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseBlob } from "../tools/blob/reader.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { calibrationKlObjective } from "../tools/eval/kl-objective.ts";
import { evaluatePerplexity } from "../tools/eval/perplexity.ts";
import { inputEmbedding, loadLlama2cModel } from "../tools/llama2c/model.ts";
import { CALIBRATION_SAMPLE_OPTIONS } from "../tools/llama2c/sample.ts";
import type { Matrix } from "../tools/matrix.ts";
import { encodeRvq } from "../tools/quant/rvq.ts";
import type { TableObjective } from "../tools/quant/objective.ts";
import { tuneCodebooks } from "../tools/quant/tune.ts";
import { randomMatrix } from "./helpers.ts";

/**
 * Squared error weighted per column and per row: what plain RVQ fitting ignores. Two batches: the
 * even rows and the odd rows.
 */
function weightedError(target: Matrix): TableObjective & { calls: number } {
  const columnWeight = (j: number) => (j % 4 === 0 ? 20 : 1);
  const rowWeight = (t: number) => (t < 10 ? 30 : 1);
  const o = {
    name: "weighted",
    calls: 0,
    batches: 2,
    loss: (table: Matrix) => o.evaluate(table, 0).loss + o.evaluate(table, 1).loss,
    evaluate(table: Matrix, batch: number) {
      o.calls++;
      let loss = 0;
      const gradient = new Float32Array(table.data.length);
      for (let t = batch; t < table.rows; t += 2) {
        for (let j = 0; j < table.cols; j++) {
          const i = t * table.cols + j;
          const w = columnWeight(j) * rowWeight(t);
          const d = table.data[i] - target.data[i];
          loss += w * d * d;
          gradient[i] = 2 * w * d;
        }
      }
      return { loss, gradient };
    },
  };
  return o;
}

const params = { h: 4, levels: 2, group: 64, layout: "row" as const, iters: 10, seed: 3, beam: 1, refine: 0, weights: null };

describe("tuneCodebooks", () => {
  const m = randomMatrix(120, 12, 7);
  const S = 3;
  const groups = Math.ceil((120 * S) / 64);
  const shape = { rows: 120, cols: 12, h: 4, levels: 2, group: 64, layout: "row" as const };

  it("lowers an objective the squared error does not see, codes unchanged, deterministic", async () => {
    const encoding = encodeRvq(m, params, groups);
    const objective = weightedError(m);
    const tuned = tuneCodebooks(encoding, shape, objective, 30);
    expect(tuned.kept).toBe(true);
    expect(tuned.after).toBeLessThan(tuned.before * 0.97);
    expect(tuned.encoding.codes).toBe(encoding.codes);
    expect(Buffer.from(tuned.encoding.codebooks.buffer).equals(Buffer.from(encoding.codebooks.buffer))).toBe(false);
    expect(objective.calls).toBe(34); // the start (both batches), 30 steps, the FP16-rounded result (both batches)
    const again = tuneCodebooks(encodeRvq(m, params, groups), shape, weightedError(m), 30);
    expect(Buffer.from(again.encoding.codebooks.buffer).equals(Buffer.from(tuned.encoding.codebooks.buffer))).toBe(true);
  });

  it("keeps the fitted codebooks when no step beats them", async () => {
    const encoding = encodeRvq(m, params, groups);
    // An objective at its minimum for the fitted codebooks: every step moves away from it.
    const fitted = decodeAll(parseBlob((await compressMatrix(m, params)).bytes, "m"));
    const result = tuneCodebooks(encoding, shape, weightedError(fitted), 5);
    expect(result.kept).toBe(false);
    expect(result.encoding).toBe(encoding);
    expect(result.after).toBe(result.before);
  });

  it("compress refuses --tune-kl without a model, with --row-scale and with a scalar method", async () => {
    await expect(compressMatrix(m, { ...params, tuneKl: 3 }, { source: "t.npy" })).rejects.toThrow(/t\.npy: --tune-kl needs a model/);
    await expect(
      compressMatrix(m, { ...params, tuneKl: 3, rowScaleCount: 4 }, { source: "t.npy", objective: weightedError(m) }),
    ).rejects.toThrow(/--tune-kl does not combine with --row-scale/);
    await expect(compressMatrix(m, { method: "int4", tuneKl: 3 }, { source: "t.npy", objective: weightedError(m) })).rejects.toThrow(
      /--tune-kl tunes RVQ codebooks/,
    );
  });

  it("compress with an objective records tune in the metadata and lowers the objective", async () => {
    const objective = weightedError(m);
    const plain = await compressMatrix(m, params);
    const tuned = await compressMatrix(m, { ...params, tuneKl: 20 }, { objective });
    expect(tuned.blob.metadata?.options).toMatchObject({ tune: 20 });
    expect(objective.loss(decodeAll(tuned.blob))).toBeLessThan(objective.loss(decodeAll(plain.blob)));
  });
});

describe("--restarts", () => {
  const m = randomMatrix(120, 12, 7);

  it("keeps the fit whose objective is lowest (the first on ties), the same bytes on any thread count", async () => {
    const objective = weightedError(m);
    const base = 1;
    const plainBySeed = await Promise.all([base, base + 1, base + 2, base + 3].map((seed) => compressMatrix(m, { ...params, seed })));
    const losses = plainBySeed.map((r) => objective.loss(decodeAll(r.blob)));
    const best = losses.indexOf(Math.min(...losses));
    expect(best, "the seeds are chosen so that a later one wins").toBeGreaterThan(0);
    const notes: string[] = [];
    const chosen = await compressMatrix(
      m,
      { ...params, seed: base, restarts: 4 },
      { objective },
      { events: { note: (n) => notes.push(n) } },
    );
    expect(chosen.blob.codes).toEqual(plainBySeed[best].blob.codes);
    expect(chosen.blob.codebooks).toEqual(plainBySeed[best].blob.codebooks);
    expect(chosen.blob.metadata?.options).toMatchObject({ seed: base, restarts: 4 });
    expect(notes.join("\n")).toMatch(
      new RegExp(`restarts: weighted of the 4 fits \\(seeds ${base} to ${base + 3}\\): .*; kept seed ${base + best}`),
    );
    const parallel = await compressMatrix(m, { ...params, seed: base, restarts: 4 }, { objective }, { threads: 2 });
    expect(Buffer.from(parallel.bytes).equals(Buffer.from(chosen.bytes))).toBe(true);
  });

  it("without an objective ranks by relMSE; one restart is the plain fit; bad counts are refused", async () => {
    const plain = await Promise.all([0, 1, 2].map((seed) => compressMatrix(m, { ...params, seed })));
    const best = plain.reduce((b, r, i) => (r.metrics.relMSE < plain[b].metrics.relMSE ? i : b), 0);
    expect((await compressMatrix(m, { ...params, seed: 0, restarts: 3 })).metrics.relMSE).toBe(plain[best].metrics.relMSE);
    expect((await compressMatrix(m, { ...params, seed: 0, restarts: 1 })).blob.codes).toEqual(plain[0].blob.codes);
    await expect(compressMatrix(m, { ...params, restarts: 0 }, { source: "t.npy" })).rejects.toThrow(
      /t\.npy: --restarts 0 is out of range/,
    );
    await expect(compressMatrix(m, { method: "int2", restarts: 2 }, { source: "t.npy" })).rejects.toThrow(/--restarts repeats RVQ fits/);
  });
});

const MODEL = join(import.meta.dirname, "..", "..", "shared", "models", "stories260K.bin");
const haveModel = existsSync(MODEL);
if (!haveModel) console.warn(`skipping the stories260K tuning test: ${MODEL} is absent (see ../shared/models/README.md)`);

describe.skipIf(!haveModel)("--tune-kl on stories260K", () => {
  it("lowers the KL on the calibration text (a small configuration, a few steps)", async () => {
    const model = loadLlama2cModel(MODEL);
    const table = inputEmbedding(model);
    const o = { h: 8, levels: 2, group: 2048, layout: "row" as const, iters: 10, seed: 0 };
    const plain = await compressMatrix(table, o);
    const text = { sequences: 2, length: 100 }; // one batch, a short text: the test stays quick
    const tuned = await compressMatrix(table, { ...o, tuneKl: 4 }, { objective: calibrationKlObjective(model, text) });
    const kl = (blob: typeof plain.blob) => evaluatePerplexity(model, decodeAll(blob), { ...CALIBRATION_SAMPLE_OPTIONS, ...text }).kl;
    expect(kl(tuned.blob)).toBeLessThan(kl(plain.blob));
    expect(tuned.blob.codes).toEqual(plain.blob.codes);
  }, 120_000);
});
