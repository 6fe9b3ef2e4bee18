// Bad values, each handled as docs/SECURITY.md says: NaN or Inf in a matrix, values beyond FP16, an
// all-zero row, V = 1, n < h, duplicate rows, a token id >= V, negative or non-numeric arguments.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMinimalWasi } from "../host/minimal-wasi.ts";
import { randomBlob } from "../tools/blob/random.ts";
import { parseBlob, type Blob } from "../tools/blob/reader.ts";
import { parseCommandArgs, intOption } from "../tools/cli/args.ts";
import { parseTokenList } from "../tools/cli/lookup.ts";
import { compressMatrix, type CompressOptions } from "../tools/compress.ts";
import { decodeAll, decodeTokens } from "../tools/decoder.ts";
import { CarvqError } from "../tools/errors.ts";
import { loadRuntimeConfigs } from "../tools/dev/fuzz/campaign.ts";
import { seedMatrix } from "../tools/dev/fuzz/seeds.ts";
import type { Matrix } from "../tools/matrix.ts";
import { loadMatrix } from "../tools/readers/index.ts";
import { writeNpy } from "../tools/readers/npy.ts";

const CLI = resolve("dist/carvq.mjs");
const configs = loadRuntimeConfigs();

/** Every runtime module, resident and streaming, must give the reference decoder's bits for `tokens`. */
function expectRuntimeParity(bytes: Uint8Array, tokens: number[]): void {
  const want = decodeTokens(parseBlob(bytes, "m"), tokens);
  for (const c of configs) {
    for (const mode of ["resident", "streaming"]) {
      const run = runMinimalWasi(c.module, {
        args: ["lookup", "--mode", mode, "/f/m.carvq", ...tokens.map(String)],
        preopens: [{ name: "/f", files: { "m.carvq": bytes } }],
      });
      if (run.exitCode === 6 && c.maxBytes < bytes.length + 65536) continue; // resident on a small target
      expect(run.exitCode, `${c.name} ${mode}: ${run.stderr}`).toBe(0);
      expect(Buffer.from(run.stdout).equals(Buffer.from(want.buffer)), `${c.name} ${mode}`).toBe(true);
    }
  }
}

function matrix(rows: number, cols: number, f: (r: number, c: number) => number): Matrix {
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[r * cols + c] = f(r, c);
  return { rows, cols, data };
}

const FAST: Partial<CompressOptions> = { h: 8, levels: 2, group: 16, iters: 3 };
const KINDS: [string, Partial<CompressOptions>][] = [
  ["carvq row", { ...FAST }],
  ["carvq col", { ...FAST, layout: "col" }],
  ["carvq row-scale 16 (v1.1)", { ...FAST, rowScaleCount: 16 }],
  ["int4", { method: "int4", block: 8 }],
  ["int2", { method: "int2", block: 16 }],
];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "carvq-values-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ["--no-warnings", CLI, ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("NaN, Inf and values beyond FP16", () => {
  for (const [what, value] of [
    ["NaN", NaN],
    ["+Inf", Infinity],
    ["-Inf", -Infinity],
    ["70000 (beyond FP16's 65504)", 70000],
    ["-1e30", -1e30],
  ] as const) {
    it(`${what} in the table: compress refuses it, naming the row and column`, async () => {
      const m = matrix(6, 8, (r, c) => (r === 4 && c === 5 ? value : (r - c) / 8));
      await expect(compressMatrix(m, FAST)).rejects.toThrow(CarvqError);
      await expect(compressMatrix(m, FAST)).rejects.toThrow(/value at row 4, column 5 is (NaN|-?Infinity|70000|-1\.0*\d*e\+30); /);
    });
  }

  it("65504 and -65504, FP16's extremes, are accepted", async () => {
    const m = matrix(20, 8, (r, c) => (r === 3 && c === 1 ? 65504 : r === 7 && c === 2 ? -65504 : (r - c) / 8));
    for (const [, o] of KINDS) await expect(compressMatrix(m, o)).resolves.toBeDefined();
  });

  it("a model file holding NaN is refused by the reader (before compression), and the CLI writes nothing", () => {
    const path = join(dir, "nan.npy");
    writeNpy(
      path,
      matrix(5, 4, (r, c) => (r === 2 && c === 3 ? NaN : 1)),
      true,
    );
    expect(() => loadMatrix(path)).toThrow(/tensor 'array' has NaN at row 2, column 3; expected finite values/);
    const out = join(dir, "nan.carvq");
    const r = cli(["compress", path, "-o", out]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/has NaN at row 2, column 3/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("degenerate tables", () => {
  for (const [kind, options] of KINDS) {
    it(`${kind}: an all-zero row decodes to a finite row (exactly zero for scalar methods), and the runtime agrees`, async () => {
      const m = seedMatrix(40, 24, 1);
      m.data.fill(0, 5 * 24, 6 * 24);
      const { bytes, blob } = await compressMatrix(m, options);
      const row = decodeTokens(blob, [5]);
      expect(row.every(Number.isFinite)).toBe(true);
      if (!kind.startsWith("carvq")) expect(row.every((v) => v === 0)).toBe(true);
      expectRuntimeParity(bytes, [5, 0, 39]);
    });

    it(`${kind}: an all-zero table compresses, decodes to finite values, and the runtime agrees`, async () => {
      const { bytes, blob, metrics } = await compressMatrix(
        matrix(20, 16, () => 0),
        options,
      );
      expect(decodeAll(blob).data.every(Number.isFinite)).toBe(true);
      expect(Number.isFinite(metrics.relMSE) || Number.isNaN(metrics.relMSE)).toBe(true);
      expectRuntimeParity(bytes, [0, 19]);
    });

    it(`${kind}: V = 1 compresses and is read by both; token 1 is out of range (decoder: CarvqError, runtime: exit 5)`, async () => {
      const { bytes, blob } = await compressMatrix(seedMatrix(1, 24, 2), options);
      expect(blob.header.rows).toBe(1);
      expectRuntimeParity(bytes, [0, 0]);
      expect(() => decodeTokens(blob, [1])).toThrow(/token 1 is out of range \(the table has 1 token, 0 to 0\)/);
      for (const c of configs) {
        const run = runMinimalWasi(c.module, {
          args: ["lookup", "/f/m.carvq", "0", "1"],
          preopens: [{ name: "/f", files: { "m.carvq": bytes } }],
        });
        expect(run.exitCode, c.name).toBe(5);
        expect(run.stdout.length).toBe(0);
        expect(run.stderr).toMatch(/token 1 is out of range: the blob has 1 token \(0 to 0\) \[exit 5\]\n$/);
      }
    });

    it(`${kind}: duplicate rows decode to identical rows`, async () => {
      const m = seedMatrix(48, 24, 3);
      for (const [a, b] of [
        [1, 30],
        [2, 31],
        [2, 47],
      ])
        m.data.copyWithin(b * 24, a * 24, (a + 1) * 24);
      const { bytes, blob } = await compressMatrix(m, options);
      const rows = decodeTokens(blob, [1, 30, 2, 31, 47]);
      const row = (i: number) => Array.from(rows.subarray(i * 24, (i + 1) * 24));
      expect(row(0)).toEqual(row(1));
      expect(row(2)).toEqual(row(3));
      expect(row(2)).toEqual(row(4));
      expectRuntimeParity(bytes, [1, 30, 2, 31, 47]);
    });
  }

  it("a table of one distinct row repeated (fewer distinct points than 16 centroids) compresses exactly", async () => {
    const m = matrix(64, 16, (_r, c) => (c - 8) / 4);
    const { blob, metrics } = await compressMatrix(m, FAST);
    expect(metrics.relMSE).toBeLessThan(1e-6);
    expect(decodeAll(blob).data.every(Number.isFinite)).toBe(true);
  });

  it("n < h: compress refuses --h above the column count; a blob with n < h (legal in the format) is read identically by both", async () => {
    await expect(compressMatrix(seedMatrix(10, 3, 1), { h: 8 })).rejects.toThrow(/--h 8 is larger than the table's 3 columns/);
    for (const layout of ["row", "col"] as const) {
      const bytes = randomBlob({ rows: 9, cols: 3, subvec: 8, levels: 3, group: 2, layout, seed: 4 });
      const blob: Blob = parseBlob(bytes, "n-lt-h");
      expect(blob.header.subvec).toBeGreaterThan(blob.header.cols);
      expectRuntimeParity(bytes, [0, 8, 4]);
    }
  });
});

describe("token ids and arguments", () => {
  it("a token id >= V: the decoder throws CarvqError, the runtime exits 5 with nothing on stdout, carvq lookup exits 5", async () => {
    const { bytes, blob } = await compressMatrix(seedMatrix(12, 16, 4), FAST);
    for (const t of [12, 13, 4294967295]) expect(() => decodeTokens(blob, [0, t])).toThrow(CarvqError);
    for (const t of [-1, 1.5, NaN]) expect(() => decodeTokens(blob, [t])).toThrow(CarvqError);
    for (const c of configs) {
      const run = runMinimalWasi(c.module, {
        args: ["lookup", "/f/m.carvq", "3", "12"],
        preopens: [{ name: "/f", files: { "m.carvq": bytes } }],
      });
      expect(run.exitCode).toBe(5);
      expect(run.stdout.length).toBe(0);
    }
    const path = join(dir, "twelve.carvq");
    writeFileSync(path, bytes);
    const r = cli(["lookup", path, "--tokens", "3,12", "-o", join(dir, "rows.f32")]);
    expect(r.status).toBe(5);
    expect(r.stderr).toMatch(/token 12 is out of range/);
    expect(existsSync(join(dir, "rows.f32"))).toBe(false);
  });

  it("negative, fractional, non-numeric and out-of-range numeric flags are refused with one line naming the flag", () => {
    const bad: [string, string][] = [
      ["h", "-1"],
      ["h", "abc"],
      ["h", "1.5"],
      ["h", "1e3"],
      ["h", "0"],
      ["h", "257"],
      ["levels", "9"],
      ["group", "0"],
      ["seed", "-1"],
      ["seed", "4294967296"],
      ["row-scale", "257"],
      ["block", "x"],
      ["iters", "-5"],
      ["threads", "0"],
    ];
    for (const [flag, value] of bad) {
      expect(
        () => intOption("compress", flag, value, 1, flag === "iters" ? 0 : 1, flag === "seed" ? 0xffffffff : flag === "levels" ? 8 : 256),
        `--${flag} ${value}`,
      ).toThrow(new RegExp(`^carvq compress: --${flag} must be a whole number (from|>=) \\d+.*, got '${value}'$`));
    }
    expect(() => parseCommandArgs("compress", ["--h"], { h: { type: "string" } })).toThrow(/carvq compress: .*--h/);
    // Through the CLI: exit 2 (usage), one line naming the option and the value, nothing written.
    const out = join(dir, "never.carvq");
    for (const args of [["--h=-1"], ["--levels", "abc"], ["--seed", "-3"], ["--row-scale", "1.5"]]) {
      const r = cli(["compress", join(dir, "missing.npy"), "-o", out, ...args]);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stderr).toMatch(/^carvq compress: --(h|levels|seed|row-scale) must be a whole number .*, got '(-1|abc|-3|1\.5)'$/m);
    }
    expect(existsSync(out)).toBe(false);
  });

  it("token lists: negative, non-numeric, backwards or past 2^32 - 1 are usage errors (exit 2)", () => {
    for (const raw of ["-1", "abc", "1,,2", "5-3", "4294967296", "1.5", "0x10", "", " "]) {
      let err: unknown;
      try {
        parseTokenList(raw);
      } catch (e) {
        err = e;
      }
      expect(err, raw).toBeInstanceOf(CarvqError);
      expect((err as CarvqError).exitCode, raw).toBe(2);
    }
    expect(parseTokenList("0, 4294967295,7-9")).toEqual([0, 4294967295, 7, 8, 9]);
    const r = cli(["lookup", "x.carvq", "--tokens=-1"]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe("carvq lookup: --tokens must be whole numbers or ranges A-B separated by commas, got '-1'");
  });
});
