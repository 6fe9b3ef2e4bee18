import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Target } from "../host/node.ts";
import { compressMatrix } from "../tools/compress.ts";
import { CarvqError } from "../tools/errors.ts";
import type { Matrix } from "../tools/matrix.ts";
import { writeNpy } from "../tools/readers/npy.ts";
import { autoConfigure, describeOptions, optionFlags, subvectorLengths } from "../tools/plan/autoconfig.ts";
import { maxResidentBlobBytes } from "../tools/plan/memory.ts";
import { evaluateProxy, planProxy } from "../tools/plan/proxy.ts";
import { predictBlobSize } from "../tools/plan/size.ts";
import { createRandom } from "../tools/random.ts";
import { weightedSquaredError } from "./helpers.ts";

/** A small table with the structure real ones have: clustered directions, varying row norms. */
function clusteredMatrix(rows: number, cols: number, seed: number): Matrix {
  const random = createRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const centres = Array.from({ length: 12 }, () => Float32Array.from({ length: cols }, gauss));
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const c = centres[Math.floor(random() * centres.length)];
    const norm = 0.5 + random();
    for (let e = 0; e < cols; e++) data[r * cols + e] = norm * (c[e] + 0.6 * gauss());
  }
  return { rows, cols, data };
}

const from = { source: "table.npy" };

describe("autoConfigure", () => {
  const matrix = clusteredMatrix(700, 16, 7);

  it("picks options whose blob is within the bit budget, and is deterministic", async () => {
    const request = { targetBpp: 2.5, from, seed: 3 };
    const first = await autoConfigure(matrix, { ...request, threads: 1 });
    const again = await autoConfigure(matrix, { ...request, threads: 2 });
    expect(describeOptions(again.chosen.options)).toBe(describeOptions(first.chosen.options));
    expect(again.chosen.proxy.relMSE).toBe(first.chosen.proxy.relMSE);
    expect(again.evaluated.map((c) => describeOptions(c.options))).toEqual(first.evaluated.map((c) => describeOptions(c.options)));
    expect(first.sample.whole).toBe(true);
    expect(first.chosen.bpp).toBeLessThanOrEqual(2.5);
    expect(first.chosen.options.seed).toBe(3);
    for (const c of first.evaluated) expect(c.bpp, describeOptions(c.options)).toBeLessThanOrEqual(2.5);
    // The full fit lands on the predicted size (to the metrics' digits), under the budget and close to it.
    const full = await compressMatrix(matrix, first.chosen.options, from);
    const bpp = (8 * full.bytes.length) / (matrix.rows * matrix.cols);
    expect(bpp).toBeLessThanOrEqual(2.5);
    expect(bpp).toBeGreaterThan(2.3);
    expect(full.bytes.length).toBe(predictBlobSize(matrix, first.chosen.options, from, full.metrics).bytes);
    // Whole-table proxy: the figures are the full fit's.
    expect(first.chosen.proxy.relMSE).toBeCloseTo(full.metrics.relMSE, 12);
    // The best is at least as good as every runner-up and every refined candidate.
    for (const c of [...first.runnersUp, ...first.evaluated.filter((c) => c.stage !== "A")])
      expect(first.chosen.proxy.relMSE).toBeLessThanOrEqual(c.proxy.relMSE);
    expect(optionFlags(first.chosen.options)).toMatch(/--layout (row|col) --h \d+ --levels \d+ --group \d+/);
  });

  it("sizes every candidate with the options applied after the search (they are recorded in the metadata)", async () => {
    const after = { restarts: 2, klEncode: 1, tuneKl: 40 };
    const result = await autoConfigure(matrix, { targetBpp: 2.5, from, seed: 3, stageB: 1, after });
    const budgetBytes = Math.floor((2.5 * matrix.rows * matrix.cols) / 8);
    for (const c of result.evaluated) {
      const withAfter = predictBlobSize(matrix, { ...c.options, ...after }, from).bytes;
      expect(c.bytes, describeOptions(c.options)).toBe(withAfter);
      expect(withAfter).toBeLessThanOrEqual(budgetBytes);
      expect(predictBlobSize(matrix, c.options, from).bytes).toBeLessThan(withAfter); // the metadata is longer with them
    }
    // The search fits without them: the choice carries none.
    expect(result.chosen.options).toMatchObject({ restarts: 1, klEncode: 0, tuneKl: 0 });
    // With them applied (a squared-error objective standing in for a model), the blob is the predicted size.
    const full = await compressMatrix(matrix, { ...result.chosen.options, ...after }, { ...from, objective: weightedSquaredError(matrix) });
    // Metadata records --tune-kl under its on-disk key "tune".
    expect(full.blob.metadata?.options).toMatchObject({ restarts: 2, klEncode: 1, tune: 40 });
    expect(full.bytes.length).toBe(predictBlobSize(matrix, { ...result.chosen.options, ...after }, from, full.metrics).bytes);
    expect((8 * full.bytes.length) / (matrix.rows * matrix.cols)).toBeLessThanOrEqual(2.5);
  });

  it("ranks the finalists by an end-to-end score when one is given for a table searched whole", async () => {
    // A score that disagrees with relMSE: the error on the first 10 rows only.
    const firstRows = (decoded: Matrix) => {
      let err = 0;
      for (let i = 0; i < 10 * matrix.cols; i++) err += (decoded.data[i] - matrix.data[i]) ** 2;
      return err;
    };
    const result = await autoConfigure(matrix, { targetBpp: 2.5, from, stageB: 2, score: { name: "first10", of: firstRows } });
    expect(result.rankedBy).toBe("first10");
    const finalists = result.evaluated.filter((c) => c.stage !== "A");
    for (const c of finalists) expect(c.proxy.score).toBeDefined();
    expect(result.chosen.proxy.score).toBe(Math.min(...finalists.map((c) => c.proxy.score!)));
    for (const c of result.evaluated.filter((c) => c.stage === "A")) expect(c.proxy.score).toBeUndefined();
  });

  it("samples whole groups from fixed spans on a larger table and measures the same rows for every candidate", async () => {
    const big = clusteredMatrix(6000, 12, 11);
    const plan = planProxy(big, 3, 256, 600, 5);
    expect(plan.whole).toBe(false);
    expect(plan.reference.rows).toBe(768);
    const a = await evaluateProxy(
      big,
      plan,
      { ...(await import("../tools/compress.ts")).DEFAULT_COMPRESS_OPTIONS, h: 4, levels: 2, group: 600, layout: "col" },
      from,
      1,
    );
    expect(a.rows).toBe(3 * 600);
    expect(a.measuredRows).toBe(768);
    // Groups so large that three spans would cover the table: the whole table, measured on the same rows.
    const D = (await import("../tools/compress.ts")).DEFAULT_COMPRESS_OPTIONS;
    const wide = await evaluateProxy(big, plan, { ...D, h: 4, levels: 1, group: 5000, layout: "col" }, from, 1);
    expect(wide.rows).toBe(big.rows);
    expect(wide.measuredRows).toBe(768);
    const wideFull = await compressMatrix(big, { ...D, h: 4, levels: 1, group: 5000, layout: "col" }, from);
    expect(wide.relMSE).toBeGreaterThan(0.5 * wideFull.metrics.relMSE);
    expect(wide.relMSE).toBeLessThan(2 * wideFull.metrics.relMSE);
    const result = await autoConfigure(big, { targetBpp: 2, from, spans: 3, sharedRows: 256, stageB: 1 });
    expect(result.sample.whole).toBe(false);
    expect(result.chosen.bpp).toBeLessThanOrEqual(2);
    const full = await compressMatrix(big, result.chosen.options, from);
    expect((8 * full.bytes.length) / (big.rows * big.cols)).toBeLessThanOrEqual(2);
    // The proxy estimates the full fit's error closely.
    expect(Math.abs(result.chosen.proxy.relMSE - full.metrics.relMSE) / full.metrics.relMSE).toBeLessThan(0.15);
  });

  it("fits a resident target's memory and refuses a streaming target without a bit budget", async () => {
    const tiny: Target = {
      name: "tiny-resident",
      engine: "test",
      simd: false,
      memoryBudgetBytes: 128 * 1024,
      mode: "resident",
      description: "test",
    };
    // Borrow a built module's memory plan: the budget check runs the target's runtime, so use a real target name.
    const resident = { ...tiny, name: "rpi4-wasmtime" };
    const maxBlob = maxResidentBlobBytes(resident, matrix.cols, {})!;
    expect(maxBlob).toBeLessThan(128 * 1024);
    const result = await autoConfigure(matrix, { target: resident, from, stageB: 1 });
    expect(result.chosen.bytes).toBeLessThanOrEqual(maxBlob);
    expect(result.chosen.memory?.fits).toBe(true);
    expect(result.budget.target).toBe("rpi4-wasmtime");
    // A roomy resident target alone: no more than an FP16 copy.
    const roomy = await autoConfigure(clusteredMatrix(200, 8, 1), { target: "rpi4-wasmtime", from, stageB: 1 });
    expect(roomy.budget.bpp).toBeLessThanOrEqual(16);
    expect(roomy.chosen.bpp).toBeLessThanOrEqual(16);
    await expect(autoConfigure(matrix, { target: "mcu-128k", from })).rejects.toThrow(/streams the blob.*--target-bpp/);
    await expect(autoConfigure(matrix, { targetBpp: 0.1, from })).rejects.toThrow(CarvqError);
    await expect(autoConfigure(matrix, { from })).rejects.toThrow(/--target-bpp or --target/);
  });

  it("tries one sub-vector length per distinct sub-vector count, with little padding", () => {
    expect(subvectorLengths(100)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 17, 20, 25, 34]);
    for (const h of subvectorLengths(2048)) expect(Math.ceil(2048 / h) * h - 2048).toBeLessThanOrEqual(204);
  });
});

const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));

describe.runIf(existsSync(cli))("carvq compress --target-bpp / --target", () => {
  const dir = mkdtempSync(join(tmpdir(), "carvq-auto-"));
  writeNpy(join(dir, "m.npy"), clusteredMatrix(800, 16, 2), true);
  const carvq = (...args: string[]) => spawnSync(process.execPath, ["--no-warnings", cli, ...args], { cwd: dir, encoding: "utf8" });

  it("chooses, reports the choice and runners-up on stderr and in --json, and writes a blob within budget", () => {
    const run = carvq("compress", "m.npy", "-o", "m.carvq", "--target-bpp", "2.2", "--json");
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/chose +(row|col) h \d+ L \d+/);
    expect(run.stderr).toMatch(/runners-up/);
    const out = JSON.parse(run.stdout);
    expect(out.bpp).toBeLessThanOrEqual(2.2);
    expect(out.search.chosen.flags).toContain("--group");
    expect(out.search.runnersUp.length).toBeGreaterThan(0);
    expect(out.search.budget.bpp).toBeCloseTo(2.2, 3);
    // The printed flags make the same blob.
    const again = carvq("compress", "m.npy", "-o", "m2.carvq", ...out.search.chosen.flags.split(" "), "--json");
    expect(JSON.parse(again.stdout).bytes).toBe(out.bytes);
  });

  it("refuses bad values and flags it would override, in one line", () => {
    for (const [args, pattern] of [
      [["--target-bpp", "abc"], /--target-bpp must be a positive number/],
      [["--target-bpp=-1"], /--target-bpp must be a positive number/],
      [["--target-bpp", "2", "--h", "8"], /--h cannot be combined with --target-bpp/],
      [["--target", "rpi4-wasmtime", "--levels", "2"], /--levels cannot be combined with --target/],
      [["--target", "nope"], /unknown target 'nope'/],
      [["--target", "mcu-128k"], /give --target-bpp too/],
      [["--target-bpp", "0.01"], /nothing fits/],
    ] as const) {
      const run = carvq("compress", "m.npy", "-o", "x.carvq", ...args);
      expect(run.status, `${args.join(" ")}: ${run.stderr}`).not.toBe(0);
      const last = run.stderr.trim().split("\n").pop()!;
      expect(last, args.join(" ")).toMatch(pattern);
      expect(run.stderr).not.toMatch(/\s+at .*:\d+:\d+/);
    }
  });
});
