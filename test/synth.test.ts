import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { synthCommand } from "../tools/cli/synth.ts";
import { loadMatrix } from "../tools/readers/index.ts";
import { CarvqError } from "../tools/errors.ts";
import type { Matrix } from "../tools/matrix.ts";
import { defaultOutlierCount, synthMatrix, type SynthTraits } from "../tools/synth.ts";

function digest(m: Matrix): string {
  return createHash("sha256")
    .update(new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength))
    .digest("hex");
}

function columnMeans(m: Matrix): Float64Array {
  const means = new Float64Array(m.cols);
  for (let r = 0; r < m.rows; r++) for (let j = 0; j < m.cols; j++) means[j] += m.data[r * m.cols + j];
  return means.map((v) => v / m.rows);
}

function median(values: ArrayLike<number>): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.floor(sorted.length / 2)];
}

/** Columns whose mean |value| is at least `factor` times the median column's. */
function outlierColumns(m: Matrix, factor: number): number[] {
  const meanAbs = new Float64Array(m.cols);
  for (let i = 0; i < m.data.length; i++) meanAbs[i % m.cols] += Math.abs(m.data[i]);
  const typical = median(meanAbs);
  return Array.from(meanAbs.keys()).filter((j) => meanAbs[j] >= factor * typical);
}

/** Each row's distance from the column means, over the non-outlier columns. */
function deviationNorms(m: Matrix, skip: readonly number[]): Float64Array {
  const means = columnMeans(m);
  const skipped = new Set(skip);
  return Float64Array.from({ length: m.rows }, (_, r) => {
    let squares = 0;
    for (let j = 0; j < m.cols; j++) if (!skipped.has(j)) squares += (m.data[r * m.cols + j] - means[j]) ** 2;
    return Math.sqrt(squares);
  });
}

/** Share of the total variance held by the top `k` principal components (power iteration with deflation). */
function topVarianceShare(m: Matrix, k: number): number {
  const n = m.cols;
  const means = columnMeans(m);
  const cov = new Float64Array(n * n);
  const centred = new Float64Array(n);
  for (let r = 0; r < m.rows; r++) {
    for (let j = 0; j < n; j++) centred[j] = m.data[r * n + j] - means[j];
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) cov[a * n + b] += centred[a] * centred[b];
  }
  let trace = 0;
  for (let a = 0; a < n; a++) trace += cov[a * n + a];
  let top = 0;
  for (let e = 0; e < k; e++) {
    let v = new Float64Array(n).map((_, i) => Math.sin(i * 1.7 + e));
    let lambda = 0;
    for (let iter = 0; iter < 200; iter++) {
      const w = new Float64Array(n);
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) w[a] += cov[a * n + b] * v[b];
      lambda = Math.hypot(...w);
      v = w.map((x) => x / lambda);
    }
    top += lambda;
    for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) cov[a * n + b] -= lambda * v[a] * v[b];
  }
  return top / trace;
}

/** Mean over the first `queries` rows of the largest cosine to any other row, after removing the column means. */
function meanNearestCosine(m: Matrix, queries: number): number {
  const means = columnMeans(m);
  const unit = new Float64Array(m.data.length);
  for (let r = 0; r < m.rows; r++) {
    let squares = 0;
    for (let j = 0; j < m.cols; j++) squares += (unit[r * m.cols + j] = m.data[r * m.cols + j] - means[j]) ** 2;
    for (let j = 0; j < m.cols; j++) unit[r * m.cols + j] /= Math.sqrt(squares);
  }
  let total = 0;
  for (let q = 0; q < queries; q++) {
    let best = -1;
    for (let r = 0; r < m.rows; r++) {
      if (r === q) continue;
      let dot = 0;
      for (let j = 0; j < m.cols; j++) dot += unit[q * m.cols + j] * unit[r * m.cols + j];
      best = Math.max(best, dot);
    }
    total += best;
  }
  return total / queries;
}

describe("synthMatrix", () => {
  it("has the requested shape and only finite values", () => {
    const m = synthMatrix({ rows: 300, cols: 48, seed: 1 });
    expect([m.rows, m.cols, m.data.length]).toEqual([300, 48, 300 * 48]);
    expect(m.data.every(Number.isFinite)).toBe(true);
  });

  it("gives the same bytes for the same seed and different bytes for another", () => {
    const first = digest(synthMatrix({ rows: 500, cols: 64, seed: 7 }));
    expect(digest(synthMatrix({ rows: 500, cols: 64, seed: 7 }))).toBe(first);
    expect(digest(synthMatrix({ rows: 500, cols: 64, seed: 8 }))).not.toBe(first);
  });

  it("matches a recorded digest, so a change to the stream is a deliberate one", () => {
    expect(digest(synthMatrix({ rows: 64, cols: 32, seed: 1 }))).toBe("0724a281fbe5e78b53873dbca40e2a76f12550e1d8e60ff55e82980c7081e3d1");
  });

  it("refuses impossible shapes and seeds", () => {
    expect(() => synthMatrix({ rows: 0, cols: 4, seed: 1 })).toThrow(CarvqError);
    expect(() => synthMatrix({ rows: 4, cols: 4, seed: -1 })).toThrow(CarvqError);
    expect(() => synthMatrix({ rows: 2 ** 20, cols: 2 ** 12, seed: 1 })).toThrow(/at most/);
  });
});

describe("synthetic traits", () => {
  const anisotropyShape = { rows: 3000, cols: 128, seed: 3 };
  const off: Partial<SynthTraits> = { principalShare: 0, clusterShare: 0, noiseShare: 1, outliers: 0 };

  it("is anisotropic: the top 8 of 128 directions hold far more variance than with the low-rank parts switched off", () => {
    const share = topVarianceShare(synthMatrix(anisotropyShape), 8);
    const isotropicShare = topVarianceShare(synthMatrix({ ...anisotropyShape, traits: off }), 8);
    expect(share).toBeGreaterThan(0.25);
    expect(isotropicShare).toBeLessThan(0.12); // what sampling noise alone gives 3000 rows
    expect(share).toBeGreaterThan(2.5 * isotropicShare);
  });

  it("has a few outlier dimensions with large magnitude", () => {
    const cols = 1200;
    const m = synthMatrix({ rows: 1000, cols, seed: 4 });
    const outliers = outlierColumns(m, 4);
    expect(outliers.length).toBe(defaultOutlierCount(cols));
    expect(outlierColumns(synthMatrix({ rows: 1000, cols, seed: 4, traits: { outliers: 0 } }), 4)).toEqual([]);
  });

  it("has a shared mean offset and row norms that vary, smaller for rarer (later) tokens", () => {
    const m = synthMatrix({ rows: 4000, cols: 200, seed: 5 });
    const skip = outlierColumns(m, 4);
    const norms = deviationNorms(m, skip);
    const typical = median(norms);
    const meanNorm = Math.hypot(...Array.from(columnMeans(m)).filter((_, j) => !skip.includes(j)));
    const average = norms.reduce((s, v) => s + v, 0) / norms.length;
    const spread = Math.sqrt(norms.reduce((s, v) => s + (v - average) ** 2, 0) / norms.length) / average;
    const head = norms.subarray(0, 400).reduce((s, v) => s + v, 0) / 400;
    const tail = norms.subarray(3600).reduce((s, v) => s + v, 0) / 400;
    const tiny = norms.filter((v) => v < 0.3 * typical).length / norms.length;
    expect(meanNorm / typical).toBeGreaterThan(0.4);
    expect(spread).toBeGreaterThan(0.25);
    expect(head / tail).toBeGreaterThan(1.4);
    expect(tiny).toBeGreaterThan(0.002);
    expect(tiny).toBeLessThan(0.03);
  });

  it("has clustered directions: nearest neighbours are closer than without cluster centres", () => {
    const shape = { rows: 3000, cols: 256, seed: 6 };
    const clustered = meanNearestCosine(synthMatrix(shape), 300);
    const unclustered = meanNearestCosine(synthMatrix({ ...shape, traits: { clusterShare: 0, noiseShare: 0.65 } }), 300);
    expect(clustered).toBeGreaterThan(unclustered + 0.1);
  });
});

describe("carvq synth", () => {
  const dir = mkdtempSync(join(tmpdir(), "carvq-synth-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the command with stdout and stderr captured. */
  async function run(argv: string[]): Promise<{ stdout: string; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (out.push(String(chunk)), true));
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => (err.push(String(chunk)), true));
    try {
      await synthCommand.run(argv);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
    return { stdout: out.join(""), stderr: err.join("") };
  }

  it("writes the seeded table as .npy, says so on stderr, and refuses to overwrite without --force", async () => {
    const path = join(dir, "t.npy");
    const { stdout, stderr } = await run(["--shape", "200x24", "--seed", "3", "-o", path, "--json"]);
    expect(stderr).toMatch(/wrote .*t\.npy \(200 x 24 float32/);
    expect(JSON.parse(stdout)).toMatchObject({ output: path, rows: 200, cols: 24, seed: 3, dtype: "float32" });
    const loaded = loadMatrix(path);
    expect(digest(loaded.matrix)).toBe(digest(synthMatrix({ rows: 200, cols: 24, seed: 3 })));
    await expect(run(["--shape", "200x24", "-o", path])).rejects.toThrow(/already exists \(pass --force/);
    await run(["--shape", "10x4", "-o", path, "--force"]);
    expect(loadMatrix(path).matrix.rows).toBe(10);
  });

  it("lists every option in --help", async () => {
    const { stdout } = await run(["--help"]);
    for (const option of ["--shape", "--output", "--seed", "--force", "--json", "--help"]) expect(stdout).toContain(option);
  });

  it("refuses a malformed shape or a missing output", async () => {
    await expect(run(["--shape", "12by4", "-o", join(dir, "x.npy")])).rejects.toThrow(/--shape must look like ROWSxCOLS.*'12by4'/);
    await expect(run(["--shape", "0x4", "-o", join(dir, "x.npy")])).rejects.toThrow(CarvqError);
    await expect(run(["--shape", "12x4"])).rejects.toThrow(/-o\/--output is required/);
    await expect(run(["--shape", "12x4", "-o", join(dir, "x.npy"), "--seed", "-3"])).rejects.toThrow(CarvqError);
  });
});
