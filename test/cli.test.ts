import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { writeNpy } from "../tools/readers/npy.ts";
import { randomMatrix } from "./helpers.ts";

const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "carvq-cli-"));

function carvq(...args: string[]) {
  const run = spawnSync(process.execPath, ["--no-warnings", cli, ...args], { cwd: dir, encoding: "utf8" });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/**
 * A user error: non-zero exit, the error as one line starting "carvq" (at most one informational
 * line, such as which tensor was picked, before it), the expected words, no stack trace.
 */
function expectCleanFailure(result: ReturnType<typeof carvq>, pattern: RegExp): void {
  expect(result.code, result.stderr).not.toBe(0);
  const lines = result.stderr.trim().split("\n");
  expect(lines.length, result.stderr).toBeLessThanOrEqual(2);
  expect(lines[lines.length - 1]).toMatch(/^carvq/);
  expect(lines[lines.length - 1]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\s+at .*:\d+:\d+/);
}

describe.runIf(existsSync(cli))("carvq CLI", () => {
  writeNpy(join(dir, "m.npy"), randomMatrix(500, 12, 3), true);

  it("compresses, inspects and evaluates, with the eval reproducing the compress metrics", () => {
    const compressed = carvq("compress", "m.npy", "-o", "m.carvq", "--h", "4", "--group", "64", "--json");
    expect(compressed.code, compressed.stderr).toBe(0);
    const summary = JSON.parse(compressed.stdout);
    expect(summary.bpp).toBeGreaterThan(1);
    const evaluated = JSON.parse(carvq("eval", "m.carvq", "--ref", "m.npy", "--json").stdout);
    expect(evaluated.relMSE).toBe(summary.relMSE);
    expect(evaluated.bpp).toBeCloseTo(summary.bpp, 12);
    expect(evaluated.nn10).toBeGreaterThan(0);
    expect(Object.keys(evaluated.bppBreakdown)).toEqual(["header", "codes", "codebooks", "rowScales", "adaptor", "metadata", "padding"]);
    const inspected = JSON.parse(carvq("inspect", "m.carvq", "--json").stdout);
    expect(inspected.header).toMatchObject({ rows: 500, cols: 12, subvec: 4, method: "carvq" });
    expect(inspected.metadata.source).toBe("m.npy");
  });

  it("writes the same bytes twice and refuses to overwrite without --force", () => {
    expect(carvq("compress", "m.npy", "-o", "a.carvq", "--method", "int3").code).toBe(0);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "a.carvq", "--method", "int3"), /a\.carvq: already exists \(pass --force/);
    expect(carvq("compress", "m.npy", "-o", "a.carvq", "--method", "int3", "--force").code).toBe(0);
    expect(carvq("compress", "m.npy", "-o", "b.carvq", "--method", "int3").code).toBe(0);
    expect(readFileSync(join(dir, "a.carvq")).equals(readFileSync(join(dir, "b.carvq")))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("takes per-row importance weights and refuses ones of the wrong shape", () => {
    writeNpy(join(dir, "w.npy"), { rows: 500, cols: 1, data: Float32Array.from({ length: 500 }, (_, t) => 1 / (t + 1)) }, true);
    writeNpy(join(dir, "w-bad.npy"), { rows: 499, cols: 1, data: new Float32Array(499).fill(1) }, true);
    const weighted = carvq("compress", "m.npy", "-o", "w.carvq", "--h", "4", "--weights", "w.npy", "--json");
    expect(weighted.code, weighted.stderr).toBe(0);
    expect(JSON.parse(carvq("inspect", "w.carvq", "--json").stdout).metadata.options.weighted).toBe(true);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "w2.carvq", "--weights", "w-bad.npy"), /w-bad\.npy: weights have shape 499 x 1; expected 500 x 1/);
  });

  it("gives one clear line for bad input", () => {
    writeFileSync(join(dir, "junk.bin"), "this is not a model file at all, just words");
    writeFileSync(join(dir, "junk.carvq"), new Uint8Array(100));
    expectCleanFailure(carvq("compress", "missing.npy", "-o", "x.carvq"), /missing\.npy/);
    expectCleanFailure(carvq("compress", "junk.bin", "-o", "x.carvq"), /junk\.bin/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--h", "20"), /--h 20 is larger than the table's 12 columns/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--tune-kl", "5"), /--tune-kl needs a llama2\.c checkpoint as input .*m\.npy is npy/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--kl-encode", "2"), /--kl-encode needs a llama2\.c checkpoint as input .*m\.npy is npy/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--kl-encode", "101"), /--kl-encode must be between 0 and 100, got 101/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--restarts", "0"), /--restarts/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--levels=-1"), /--levels must be between 1 and 8, got -1/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--levels", "-1"), /--levels/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--levels", "9"), /--levels must be between 1 and 8, got 9/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--group", "abc"), /--group must be a whole number, got 'abc'/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--method", "int7"), /--method must be one of/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--tensor", "nope"), /nope/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--bogus"), /Unknown option '--bogus'/);
    expectCleanFailure(carvq("inspect", "junk.carvq"), /junk\.carvq: not a carvq blob \(magic/);
    expectCleanFailure(carvq("eval", "m.carvq", "--ref", "missing.npy"), /missing\.npy/);
    expectCleanFailure(carvq("frobnicate"), /unknown command 'frobnicate'/);
    expect(existsSync(join(dir, "x.carvq"))).toBe(false);
  });

  it("has --help on every command", () => {
    const top = carvq("--help");
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]);
    expect(names).toEqual(expect.arrayContaining(["compress", "eval", "inspect", "demo"]));
    for (const name of names) {
      const help = carvq(name, "--help");
      expect(help.code, name).toBe(0);
      expect(help.stdout, name).toMatch(new RegExp(`^carvq ${name}`));
    }
  });
});

describe.skipIf(existsSync(cli))("carvq CLI (not built)", () => {
  it("needs dist/carvq.mjs: run npm run build", () => {
    expect.fail("dist/carvq.mjs is missing; npm ci builds it (prepare), or run npm run build");
  });
});
