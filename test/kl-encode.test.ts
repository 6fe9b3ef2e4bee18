// --kl-encode: the logits' vector-Jacobian products it is built from, the Fisher estimate of the
// model's curvature (checked against the KL it approximates), the metric encoder and codebook solve
// (never worse than where they start, better than squared error under an anisotropic metric), and
// the compress option end to end on stories260K.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { calibrationKlObjective } from "../tools/eval/kl-objective.ts";
import { evaluatePerplexity, originalEvaluation } from "../tools/eval/perplexity.ts";
import { klGradient, logitGradients } from "../tools/llama2c/backward.ts";
import { embeddingFisher, embeddingFisherParallel, regularizedCurvature } from "../tools/llama2c/fisher.ts";
import { inputEmbedding, loadLlama2cModel, type Llama2cModel } from "../tools/llama2c/model.ts";
import { CALIBRATION_SAMPLE_OPTIONS } from "../tools/llama2c/sample.ts";
import type { Matrix } from "../tools/matrix.ts";
import { metricCodebooks, metricEncode, metricError, metricRound } from "../tools/quant/metric.ts";
import type { RowMetric, TableObjective } from "../tools/quant/objective.ts";
import { decodeRvq, encodeRvq } from "../tools/quant/rvq.ts";
import { createRandom } from "../tools/random.ts";
import { diagonalMetric, randomMatrix } from "./helpers.ts";

/** A random symmetric positive definite metric per row: B B^T / cols + 0.05 I, with B's columns scaled unevenly so it is far from isotropic. */
function randomMetric(rows: number, cols: number, seed: number): RowMetric {
  const random = createRandom(seed);
  const data = new Float64Array(rows * cols * cols);
  const b = new Float64Array(cols * cols);
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < b.length; i++) b[i] = (2 * random() - 1) * (i % cols < 2 ? 4 : 1);
    for (let a = 0; a < cols; a++) {
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let k = 0; k < cols; k++) s += b[a * cols + k] * b[c * cols + k];
        data[t * cols * cols + a * cols + c] = s / cols + (a === c ? 0.05 : 0);
      }
    }
  }
  return { rows, cols, data };
}

describe("metric encoding (tools/quant/metric.ts)", () => {
  const table = randomMatrix(96, 16, 5);
  for (const levels of [2, 4]) {
    const shape = { rows: 96, cols: 16, h: 4, levels, group: 128, layout: "row" as const };
    const fitted = encodeRvq(table, { ...shape, iters: 10, seed: 1, beam: 1, refine: 0 }, 3);
    it(`L ${levels} (${levels <= 3 ? "every combination" : "level by level"}): codes never worse than the start, codebooks lower the error further, deterministic`, async () => {
      const metric = randomMetric(96, 16, 9);
      const start = metricError(table, decodeRvq(fitted, shape), metric);
      const codes = metricEncode(table, fitted, shape, metric);
      const encoded = metricError(table, decodeRvq({ ...fitted, codes }, shape), metric);
      expect(encoded).toBeLessThan(start * 0.95);
      const codebooks = metricCodebooks(table, fitted, codes, shape, metric);
      expect(codebooks).not.toBeNull();
      const solved = metricError(table, decodeRvq({ ...fitted, codes, codebooks: codebooks! }, shape), metric);
      expect(solved).toBeLessThan(encoded);
      const round = metricRound(table, fitted, shape, metric);
      expect(round.codes).toEqual(codes);
      expect(round.codebooks).toEqual(codebooks);
      expect(metricRound(table, fitted, shape, metric)).toEqual(round);
    });
  }

  it("under an anisotropic metric beats the squared-error fit by that metric, and under the identity it is squared error", async () => {
    const shape = { rows: 96, cols: 16, h: 4, levels: 2, group: 128, layout: "row" as const };
    const fitted = encodeRvq(table, { ...shape, iters: 10, seed: 1, beam: 8, refine: 4 }, 3);
    const metric = randomMetric(96, 16, 4);
    const round = metricRound(table, fitted, shape, metric);
    const mse = (e: typeof fitted) => metricError(table, decodeRvq(e, shape), diagonalMetric(96, 16));
    expect(metricError(table, decodeRvq(round, shape), metric)).toBeLessThan(0.9 * metricError(table, decodeRvq(fitted, shape), metric));
    expect(mse(round)).toBeGreaterThan(mse(fitted)); // it traded squared error for the metric
    // Identity metric: every combination tried, so at least as good as the beam search's codes.
    const codes = metricEncode(table, fitted, shape, diagonalMetric(96, 16));
    expect(mse({ ...fitted, codes })).toBeLessThanOrEqual(mse(fitted));
  });

  it("refuses a metric of another shape", async () => {
    const shape = { rows: 96, cols: 16, h: 4, levels: 2, group: 128, layout: "row" as const };
    const fitted = encodeRvq(table, { ...shape, iters: 2, seed: 1, beam: 1, refine: 0 }, 3);
    expect(() => metricRound(table, fitted, shape, diagonalMetric(95, 16))).toThrow(/metric is for a 95 x 16 table, the table is 96 x 16/);
  });

  it("compress refuses --kl-encode without a curvature, with --row-scale, with a scalar method and out of range", async () => {
    const objective: TableObjective = {
      name: "none",
      batches: 1,
      evaluate: () => ({ loss: 0, gradient: new Float32Array(0) }),
      loss: () => 0,
    };
    await expect(compressMatrix(table, { klEncode: 1 })).rejects.toThrow(/--kl-encode needs a model/);
    await expect(compressMatrix(table, { klEncode: 1 }, { objective })).rejects.toThrow(/--kl-encode needs a model/);
    await expect(compressMatrix(table, { klEncode: 1, rowScaleCount: 16 })).rejects.toThrow(
      /--kl-encode does not combine with --row-scale/,
    );
    await expect(compressMatrix(table, { klEncode: 1, method: "int4" })).rejects.toThrow(
      /--kl-encode chooses RVQ codes; it needs --method carvq/,
    );
    await expect(compressMatrix(table, { klEncode: 101 })).rejects.toThrow(/--kl-encode 101 is out of range/);
  });

  it("compress refuses a table whose metric would be too large before fitting anything", async () => {
    const big: Matrix = { rows: 5000, cols: 128, data: new Float32Array(5000 * 128) };
    const objective: TableObjective = {
      name: "q",
      batches: 1,
      evaluate: () => ({ loss: 0, gradient: new Float32Array(0) }),
      loss: () => 0,
      curvature: () => diagonalMetric(1, 1),
    };
    await expect(compressMatrix(big, { klEncode: 1 }, { source: "big.npy", objective })).rejects.toThrow(
      /big\.npy: a 5000 x 128 table needs .* metric values; --kl-encode handles up to/,
    );
  });
});

const MODEL = join(import.meta.dirname, "..", "..", "shared", "models", "stories260K.bin");
const haveModel = existsSync(MODEL);
if (!haveModel) console.warn(`skipping the --kl-encode tests on stories260K: ${MODEL} is absent (see ../shared/models/README.md)`);

describe.skipIf(!haveModel)("--kl-encode on stories260K", () => {
  let model: Llama2cModel;
  const getModel = () => (model ??= loadLlama2cModel(MODEL));
  const SHORT = { sequences: 2, length: 60, seed: 11 };

  it("logitGradients with cotangent p - r is klGradient against reference r, times the positions", () => {
    const m = getModel();
    const table = inputEmbedding(m);
    const { sequences, logProbs } = originalEvaluation(m, SHORT);
    const V = m.config.vocabSize;
    const tokens = sequences[0];
    const positions = tokens.length - 1;
    // Reference r: the original distribution with every class's log-prob shifted by a per-class amount, renormalized.
    const reference = new Float64Array(positions * V);
    const cotangent = new Float64Array(positions * V);
    for (let p = 0; p < positions; p++) {
      let total = 0;
      for (let i = 0; i < V; i++) total += Math.exp(logProbs[0][p * V + i] + Math.sin(i));
      for (let i = 0; i < V; i++) {
        reference[p * V + i] = logProbs[0][p * V + i] + Math.sin(i) - Math.log(total);
        cotangent[p * V + i] = Math.exp(logProbs[0][p * V + i]) - Math.exp(reference[p * V + i]);
      }
    }
    const expected = klGradient(m, table, [tokens], [reference]).gradient;
    const [got] = logitGradients(m, table, tokens, [cotangent]);
    let norm = 0;
    for (const v of expected) norm = Math.max(norm, Math.abs(v));
    expect(norm).toBeGreaterThan(1e-6);
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] / positions - expected[i])).toBeLessThanOrEqual(1e-5 * norm);
    expect(() => logitGradients(m, table, tokens, [new Float64Array(3)])).toThrow(/cotangent set 0 holds 3 values/);
  });

  it("the Fisher predicts the KL of a small perturbation (both estimators), is symmetric, 0 on unused rows, deterministic", async () => {
    const m = getModel();
    const table = inputEmbedding(m);
    const { sequences } = originalEvaluation(m, SHORT);
    const used = new Set<number>();
    for (const s of sequences) for (let p = 0; p + 1 < s.length; p++) used.add(s[p]);
    const random = createRandom(3);
    const delta = Float64Array.from(table.data, () => 0.02 * (2 * random() - 1));
    const moved: Matrix = { ...table, data: Float32Array.from(table.data, (v, i) => v + delta[i]) };
    const actual = evaluatePerplexity(m, moved, SHORT).kl;
    const D = m.config.dim;
    for (const cotangents of ["label", "rademacher"] as const) {
      const fisher = embeddingFisher(m, SHORT, { samples: 48, seed: 5, cotangents });
      let predicted = 0;
      for (let t = 0; t < m.config.vocabSize; t++) {
        for (let a = 0; a < D; a++) {
          let s = 0;
          for (let b = 0; b < D; b++) s += fisher.data[t * D * D + a * D + b] * delta[t * D + b];
          predicted += 0.5 * delta[t * D + a] * s;
        }
      }
      expect(predicted / actual, cotangents).toBeGreaterThan(0.7);
      expect(predicted / actual, cotangents).toBeLessThan(1.3);
      const t0 = [...used][0];
      expect(fisher.data[t0 * D * D + 1 * D + 2]).toBe(fisher.data[t0 * D * D + 2 * D + 1]);
      const unused = [...Array(m.config.vocabSize).keys()].find((t) => !used.has(t))!;
      expect(fisher.data.subarray(unused * D * D, (unused + 1) * D * D).every((v) => v === 0)).toBe(true);
    }
    expect(embeddingFisher(m, SHORT, { samples: 2, seed: 1 }).data).toEqual(embeddingFisher(m, SHORT, { samples: 2, seed: 1 }).data);
  }, 120_000);

  it("on worker threads the estimate is the same to the bit (the shares are added in sequence order)", async () => {
    const m = getModel();
    const text = { sequences: 5, length: 40, seed: 4 };
    const progress: number[] = [];
    const parallel = await embeddingFisherParallel(m, text, 2, { samples: 3, seed: 9, onSequence: (done) => progress.push(done) });
    expect(progress).toEqual([1, 2, 3, 4, 5]);
    const inline = embeddingFisher(m, text, { samples: 3, seed: 9 });
    expect(Buffer.from(parallel.data.buffer).equals(Buffer.from(inline.data.buffer))).toBe(true);
    expect(inline.data.some((v) => v !== 0)).toBe(true);
  }, 120_000);

  it("regularizedCurvature gives unused rows a floor and shrinks each row toward its trace", async () => {
    const raw = { rows: 2, cols: 2, data: Float64Array.from([4, 2, 2, 2, 0, 0, 0, 0]) };
    const m = regularizedCurvature(raw, 0.5, 1);
    // Row 0: trace 6; floor = 1 * mean trace (3) / cols (2) = 1.5; diagonal add 0.5 * 6 / 2 + 1.5 = 3.
    expect([...m.data.subarray(0, 4)]).toEqual([2 + 3, 1, 1, 1 + 3]);
    expect([...m.data.subarray(4)]).toEqual([1.5, 0, 0, 1.5]);
  });

  it("compress --kl-encode lowers the calibration KL, records klEncode, and gives the same bytes twice", async () => {
    const m = getModel();
    const table = inputEmbedding(m);
    const o = { h: 8, levels: 2, group: 2048, layout: "row" as const, iters: 10, seed: 0 };
    const text = { sequences: 4, length: 100 };
    const plain = await compressMatrix(table, o);
    const notes: string[] = [];
    const encoded = await compressMatrix(
      table,
      { ...o, klEncode: 1 },
      { objective: calibrationKlObjective(m, text) },
      { events: { note: (n) => notes.push(n) } },
    );
    const kl = (blob: typeof plain.blob) => evaluatePerplexity(m, decodeAll(blob), { ...CALIBRATION_SAMPLE_OPTIONS, ...text }).kl;
    expect(kl(encoded.blob)).toBeLessThan(0.9 * kl(plain.blob));
    expect(encoded.blob.metadata?.options).toMatchObject({ klEncode: 1 });
    expect(notes.join("\n")).toMatch(/kl-encode: kl on the calibration text [0-9.]+ -> [0-9.]+; kept round 1/);
    const again = await compressMatrix(table, { ...o, klEncode: 1 }, { objective: calibrationKlObjective(m, text) });
    expect(again.bytes).toEqual(encoded.bytes);
  }, 180_000);
});
