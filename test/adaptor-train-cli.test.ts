import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseBlob } from "../tools/blob/reader.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { reconstructionMetrics } from "../tools/quant/metrics.ts";
import type { Matrix } from "../tools/matrix.ts";
import { writeNpy } from "../tools/readers/npy.ts";
import { createRandom } from "../tools/random.ts";
import { randomMatrix } from "./helpers.ts";

/** Rows that are a smooth function of two hidden features per token: RVQ leaves a residual an adaptor can learn. */
function curvedTable(rows: number, cols: number, seed: number): Matrix {
  const random = createRandom(seed);
  const basis = Float32Array.from({ length: 2 * cols }, () => random() * 2 - 1);
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const z = [random() * 2 - 1, random() * 2 - 1];
    for (let e = 0; e < cols; e++) data[r * cols + e] = Math.sin(3 * z[0] * basis[e]) + Math.cos(2 * z[1] * basis[cols + e]) * z[0];
  }
  return { rows, cols, data };
}

const rvq = { h: 4, levels: 1, group: 64, iters: 5 };

describe("compress with an adaptor", () => {
  it("keeps an adaptor that lowers the error, records the decision, and the blob's decode reproduces the metrics", async () => {
    const matrix = curvedTable(400, 32, 1);
    const notes: string[] = [];
    const plain = await compressMatrix(matrix, rvq);
    const adapted = await compressMatrix(
      matrix,
      { ...rvq, adaptor: [4, 32, 32], adaptorEpochs: 120 },
      {},
      { events: { note: (m) => notes.push(m) } },
    );
    expect(adapted.metrics.relMSE).toBeLessThan(0.7 * plain.metrics.relMSE);
    expect(adapted.blob.header.versionMinor).toBe(2);
    expect(adapted.blob.adaptor?.layers.map((l) => l.outputs)).toEqual([32, 32, 32]);
    expect(reconstructionMetrics(matrix, decodeAll(parseBlob(adapted.bytes, "a")))).toEqual(adapted.metrics);
    expect(adapted.blob.metadata?.options).toMatchObject({ adaptor: "4,32,32", adaptorPrecision: "int8", adaptorEpochs: 120 });
    expect(adapted.blob.metadata?.adaptor).toMatchObject({ kept: true, widths: [4, 32, 32, 32], precision: "int8" });
    expect(notes.some((n) => /^adaptor: kept \(4-32-32-32, int8/.test(n))).toBe(true);
    // The same bytes with training on two threads, and fp16 storage costs more bytes.
    const parallel = await compressMatrix(matrix, { ...rvq, adaptor: [4, 32, 32], adaptorEpochs: 120 }, {}, { threads: 2 });
    expect(Buffer.from(parallel.bytes).equals(Buffer.from(adapted.bytes))).toBe(true);
    const fp16 = await compressMatrix(matrix, { ...rvq, adaptor: [4, 32, 32], adaptorEpochs: 120, adaptorPrecision: "fp16" });
    expect(fp16.blob.metadata?.adaptor).toMatchObject({ kept: true, precision: "fp16" });
    expect(fp16.bytes.length).toBeGreaterThan(adapted.bytes.length);
  });

  it("drops an adaptor that cannot lower the error and writes the plain RVQ blob", async () => {
    // 16 distinct sub-vectors per group: RVQ is exact, so the residual is zero and so is the adaptor's gain.
    const random = createRandom(3);
    const atoms = Float32Array.from({ length: 16 * 4 }, () => Math.round(random() * 256 - 128) / 256); // exact in FP16
    const data = new Float32Array(64 * 4);
    for (let r = 0; r < 64; r++) data.set(atoms.subarray((r % 16) * 4, (r % 16) * 4 + 4), r * 4);
    const matrix = { rows: 64, cols: 4, data };
    const notes: string[] = [];
    const result = await compressMatrix(
      matrix,
      { h: 4, levels: 1, group: 64, adaptor: [2, 8], adaptorEpochs: 5 },
      {},
      { events: { note: (m) => notes.push(m) } },
    );
    expect(result.metrics.relMSE).toBe(0);
    expect(result.blob.adaptor).toBeNull();
    expect(result.blob.header.versionMinor).toBe(0);
    expect(result.blob.metadata?.adaptor).toMatchObject({ kept: false, relMSE: [0, 0] });
    expect(notes.at(-1)).toMatch(/^adaptor: dropped, it does not lower the error/);
  });

  it("auto declines when the budget cannot hold an adaptor, and says so", async () => {
    const matrix = randomMatrix(300, 8, 2);
    const notes: string[] = [];
    const result = await compressMatrix(
      matrix,
      { h: 4, group: 64, adaptor: "auto", adaptorBpp: 0.5 },
      {},
      { events: { note: (m) => notes.push(m) } },
    );
    expect(result.blob.adaptor).toBeNull();
    expect(result.blob.metadata?.adaptor).toMatchObject({ spec: "auto", kept: false, reason: "0.5 bpp holds no adaptor" });
    expect(notes).toEqual([expect.stringMatching(/^adaptor: auto: no adaptor; the 0.5 bpp budget/)]);
  });

  it("refuses an adaptor on a scalar method and bad adaptor options", async () => {
    const matrix = randomMatrix(20, 8, 1);
    await expect(compressMatrix(matrix, { method: "int4", adaptor: "paper" })).rejects.toThrow(/--adaptor needs --method carvq/);
    await expect(compressMatrix(matrix, { adaptor: "auto", adaptorBpp: 0 })).rejects.toThrow(/--adaptor-bpp 0 is out of range/);
    await expect(compressMatrix(matrix, { adaptor: [0, 4] })).rejects.toThrow(/--adaptor widths must be 1 to 4096/);
    await expect(compressMatrix(matrix, { adaptor: "paper", adaptorEpochs: -1 })).rejects.toThrow(/--adaptor-epochs -1 is out of range/);
  });
});

const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));

describe.runIf(existsSync(cli))("carvq compress adaptor flags", () => {
  const dir = mkdtempSync(join(tmpdir(), "carvq-adaptor-"));
  writeNpy(join(dir, "m.npy"), curvedTable(300, 16, 4), true);
  const carvq = (...args: string[]) => {
    const run = spawnSync(process.execPath, ["--no-warnings", cli, ...args], { cwd: dir, encoding: "utf8" });
    return { code: run.status, stdout: run.stdout, stderr: run.stderr };
  };

  it("trains, says what it decided, reports it in --json and the blob evaluates to the same error", () => {
    const run = carvq(
      "compress",
      "m.npy",
      "-o",
      "a.carvq",
      "--h",
      "4",
      "--levels",
      "1",
      "--group",
      "64",
      "--adaptor",
      "4,16,16",
      "--adaptor-epochs",
      "60",
      "--json",
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/adaptor: widths 4-16-16-16; int8/);
    expect(run.stderr).toMatch(/training adaptor \[.*L1/);
    expect(run.stderr).toMatch(/adaptor: (kept|dropped)/);
    const summary = JSON.parse(run.stdout);
    expect(summary.adaptor).toMatchObject({ spec: "4,16,16", widths: [4, 16, 16, 16] });
    const evaluated = JSON.parse(carvq("eval", "a.carvq", "--ref", "m.npy", "--json").stdout);
    expect(evaluated.relMSE).toBe(summary.relMSE);
    const again = carvq(
      "compress",
      "m.npy",
      "-o",
      "b.carvq",
      "--h",
      "4",
      "--levels",
      "1",
      "--group",
      "64",
      "--adaptor",
      "4,16,16",
      "--adaptor-epochs",
      "60",
      "--threads",
      "1",
    );
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(join(dir, "a.carvq")).equals(readFileSync(join(dir, "b.carvq")))).toBe(true);
  });

  for (const [args, message] of [
    [["--adaptor", "huge"], /--adaptor must be none, paper, auto or 1 to 4 comma-separated widths/],
    [["--adaptor", "8,0"], /--adaptor widths must be 1 to 4096, got 0/],
    [["--adaptor", "auto", "--adaptor-bpp", "0"], /--adaptor-bpp must be a number above 0/],
    [["--adaptor", "auto", "--adaptor-bpp", "lots"], /--adaptor-bpp must be a number above 0/],
    [["--adaptor-bpp", "0.1"], /--adaptor-bpp sizes --adaptor auto/],
    [["--adaptor", "paper", "--adaptor-precision", "int4"], /--adaptor-precision must be one of int8, fp16, got 'int4'/],
    [["--adaptor", "paper", "--adaptor-epochs=-3"], /--adaptor-epochs must be a whole number from 0 to 100000, got '-3'/],
    [["--adaptor", "paper", "--method", "int4"], /--adaptor needs --method carvq/],
    [["--adaptor", "paper", "--target-bpp", "2"], /--adaptor cannot be combined with --target-bpp or --target/],
  ] as const) {
    it(`refuses ${args.join(" ")} in one line`, () => {
      const run = carvq("compress", "m.npy", "-o", "x.carvq", ...args);
      expect(run.code).not.toBe(0);
      const lines = run.stderr.trim().split("\n");
      expect(lines.length, run.stderr).toBe(1);
      expect(lines[0]).toMatch(/^carvq compress: /);
      expect(lines[0]).toMatch(message);
    });
  }
});
