import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { convertGloveJson, GLOVE_PACKAGE, GLOVE_PACKAGE_VERSION, prepareGlove } from "../tools/data/glove.ts";
import { CarvqError } from "../tools/errors.ts";
import { loadMatrix } from "../tools/readers/index.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-glove-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A package-shaped JSON: each vector is `dimensions` values, then the l2 norm and the word index. */
function fakePackageJson(words: string[], dimensions: number): Record<string, unknown> {
  const vectors: Record<string, number[]> = {};
  words.forEach((word, row) => {
    const values = Array.from({ length: dimensions }, (_, j) => (row * 10 + j) / 4);
    // defineProperty, not assignment, so a word like "__proto__" becomes a key as JSON.parse would make it
    Object.defineProperty(vectors, word, { value: [...values, Math.hypot(...values), row], enumerable: true });
  });
  return {
    precision: 8,
    l2NormIndex: dimensions,
    wordIndex: dimensions + 1,
    size: words.length,
    dimensions,
    words,
    vectors,
    unkVector: [],
  };
}

/** Lays out a cache folder as `npm install --prefix` would, so prepareGlove finds the package offline. */
function fakeCache(json: Record<string, unknown>): string {
  const cache = mkdtempSync(join(dir, "cache-"));
  const packageDir = join(cache, "node_modules", GLOVE_PACKAGE);
  mkdirSync(packageDir, { recursive: true });
  writeFileSync(join(packageDir, "package.json"), JSON.stringify({ name: GLOVE_PACKAGE, version: GLOVE_PACKAGE_VERSION }));
  writeFileSync(join(packageDir, `${GLOVE_PACKAGE}.json`), JSON.stringify(json));
  return cache;
}

describe("GloVe conversion", () => {
  it("keeps the package's word order and the first `dimensions` values of each vector", () => {
    const words = ["the", "constructor", ",", "__proto__"];
    const json: unknown = JSON.parse(JSON.stringify(fakePackageJson(words, 3)));
    const { words: out, matrix } = convertGloveJson(json, "pkg.json");
    expect(out).toEqual(words);
    expect([matrix.rows, matrix.cols]).toEqual([4, 3]);
    expect(Array.from(matrix.data.subarray(3, 6))).toEqual([2.5, 2.75, 3]);
    expect(Array.from(matrix.data.subarray(9, 12))).toEqual([7.5, 7.75, 8]);
  });

  it("refuses a changed structure, naming the field", () => {
    const json = fakePackageJson(["a", "b"], 3);
    expect(() => convertGloveJson({ ...json, words: "a b" }, "pkg.json")).toThrow(/pkg\.json: field 'words'/);
    expect(() => convertGloveJson({ ...json, dimensions: 0 }, "pkg.json")).toThrow(/field 'dimensions' is 0/);
    expect(() => convertGloveJson({ ...json, vectors: { a: [1, 2, 3] } }, "pkg.json")).toThrow(/vectors\["b"\] \(row 1\) is not an array/);
    expect(() => convertGloveJson({ ...json, vectors: { a: [1, 2, 3], b: [1, "x", 3] } }, "pkg.json")).toThrow(
      /vectors\["b"\]\[1\] \(row 1\) is "x"/,
    );
    expect(() => convertGloveJson({ ...json, words: ["a", "b\nc"] }, "pkg.json")).toThrow(CarvqError);
  });

  it("writes the .npy and the word list from an installed package, then skips when both exist", () => {
    const words = ["alpha", "beta", "gamma"];
    const cacheDir = fakeCache(fakePackageJson(words, 5));
    const outDir = join(dir, "data");
    const log: string[] = [];
    const first = prepareGlove({ outDir, cacheDir, force: false, log: (m) => log.push(m) });
    expect(first).toMatchObject({ rows: 3, cols: 5, skipped: false });
    expect(readFileSync(first.wordsPath, "utf8")).toBe("alpha\nbeta\ngamma\n");
    const loaded = loadMatrix(first.matrixPath);
    expect(Array.from(loaded.matrix.data.subarray(5, 10))).toEqual([2.5, 2.75, 3, 3.25, 3.5]);
    const second = prepareGlove({ outDir, cacheDir: join(dir, "no-such-cache"), force: false, log: (m) => log.push(m) });
    expect(second).toMatchObject({ rows: 3, cols: 5, skipped: true });
    expect(log[log.length - 1]).toContain("already exist");
  });
});
