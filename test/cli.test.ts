import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { writeNpy } from "../tools/readers/npy.ts";
import { safetensorsBytes, safetensorsTensor } from "./fixtures/writers.ts";
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
    expectCleanFailure(
      carvq("compress", "m.npy", "-o", "w2.carvq", "--weights", "w-bad.npy"),
      /w-bad\.npy: weights have shape 499 x 1; expected 500 x 1/,
    );
  });

  it("gives one clear line for bad input", () => {
    writeFileSync(join(dir, "junk.bin"), "this is not a model file at all, just words");
    writeFileSync(join(dir, "junk.carvq"), new Uint8Array(100));
    expectCleanFailure(carvq("compress", "missing.npy", "-o", "x.carvq"), /missing\.npy/);
    expectCleanFailure(carvq("compress", "junk.bin", "-o", "x.carvq"), /junk\.bin/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--h", "20"), /--h 20 is larger than the table's 12 columns/);
    expectCleanFailure(
      carvq("compress", "m.npy", "-o", "x.carvq", "--tune-kl", "5"),
      /--tune-kl needs a llama2\.c checkpoint as input .*m\.npy is npy/,
    );
    expectCleanFailure(
      carvq("compress", "m.npy", "-o", "x.carvq", "--kl-encode", "2"),
      /--kl-encode needs a llama2\.c checkpoint as input .*m\.npy is npy/,
    );
    expectCleanFailure(
      carvq("compress", "m.npy", "-o", "x.carvq", "--kl-encode", "101"),
      /--kl-encode must be a whole number from 0 to 100, got '101'/,
    );
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--restarts", "0"), /--restarts/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--levels=-1"), /--levels must be a whole number from 1 to 8, got '-1'/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--levels", "-1"), /--levels/);
    expectCleanFailure(
      carvq("compress", "m.npy", "-o", "x.carvq", "--levels", "9"),
      /--levels must be a whole number from 1 to 8, got '9'/,
    );
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--group", "abc"), /--group must be a whole number >= 1, got 'abc'/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--method", "int7"), /--method must be one of/);
    expectCleanFailure(carvq("compress", "m.npy", "-o", "x.carvq", "--tensor", "nope"), /nope/);
    expectCleanFailure(
      carvq("compress", "m.npy", "-o", "x.carvq", "--bogus"),
      /^carvq compress: unknown option '--bogus' \(see carvq compress --help\)$/,
    );
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

describe.runIf(existsSync(cli))("carvq CLI: usage errors, output paths, model kinds, wording", () => {
  const work = mkdtempSync(join(tmpdir(), "carvq-cli-edges-"));
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, ["--no-warnings", cli, ...args], { cwd: work, encoding: "utf8" });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  writeNpy(join(work, "m.npy"), randomMatrix(300, 12, 5), true);
  writeFileSync(
    join(work, "model.safetensors"),
    safetensorsBytes([safetensorsTensor("model.embed_tokens.weight", randomMatrix(300, 12, 5))]),
  );
  writeFileSync(join(work, "a-file"), "not a folder");
  mkdirSync(join(work, "a-folder"));
  let blobMade = false;
  const blob = () => {
    if (!blobMade) expect(run("compress", "m.npy", "-o", "m.carvq", "--method", "int4").code).toBe(0);
    blobMade = true;
    return "m.carvq";
  };

  /** Exit `code` and exactly one line on stderr, equal to or matching `line`: nothing before it (no tensor read, no progress). */
  function expectOneLine(result: ReturnType<typeof run>, code: number, line: string | RegExp): void {
    expect(result.code, result.stderr).toBe(code);
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines, result.stderr).toHaveLength(1);
    if (typeof line === "string") expect(lines[0]).toBe(line);
    else expect(lines[0]).toMatch(line);
  }

  it("the issue's three: --h -3, --tokens -1 and --bogus, each one line naming the option and the value, exit 2", () => {
    expectOneLine(
      run("compress", "m.npy", "-o", "x.carvq", "--h", "-3"),
      2,
      "carvq compress: --h must be a whole number from 1 to 256, got '-3'",
    );
    expectOneLine(
      run("lookup", blob(), "--tokens", "-1", "-o", "rows.f32"),
      2,
      "carvq lookup: --tokens must be whole numbers or ranges A-B separated by commas, got '-1'",
    );
    expectOneLine(
      run("compress", "m.npy", "-o", "x.carvq", "--bogus"),
      2,
      "carvq compress: unknown option '--bogus' (see carvq compress --help)",
    );
  });

  it("every command exits 2 on a usage error", () => {
    const cases: string[][] = [
      ["compress", "m.npy"],
      ["compress", "m.npy", "-o", "x.carvq", "--target-bpp", "-1"],
      ["compress", "m.npy", "-o", "x.carvq", "--target-bpp", "2", "--h", "4"],
      ["compress", "m.npy", "-o", "x.carvq", "--adaptor", "paper", "--method", "int4"],
      ["compress", "m.npy", "-o", "x.carvq", "--adaptor-epochs", "-3"],
      ["compress", "m.npy", "-o", "x.carvq", "--tune-kl", "5"],
      ["eval", "m.carvq"],
      ["eval", "m.carvq", "--ref"],
      ["inspect"],
      ["inspect", "a", "b"],
      ["ppl", "m.carvq"],
      ["ppl", "m.carvq", "--model", "x.bin", "--sequences", "-1"],
      ["report", "m.npy"],
      ["report", "m.npy", "-o", "r", "--budgets", "2,x"],
      ["lookup", "m.carvq"],
      ["lookup"],
      ["synth", "--shape", "10x"],
      ["synth", "--shape", "10x4", "-o", "s.npy", "--seed", "-1"],
      ["data"],
      ["data", "nope"],
      ["demo", "--rows", "-5"],
      ["demo", "extra"],
      ["tensors"],
      ["extract", "m.npy"],
      ["conformance"],
      ["conformance", "--run", "kit", "--quick"],
      ["frobnicate"],
    ];
    for (const args of cases) {
      const result = run(...args);
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      const last = result.stderr.trimEnd().split("\n").pop()!;
      expect(last, args.join(" ")).toMatch(/^carvq( \w+)?: /);
      expect(result.stderr).not.toMatch(/\s+at .*:\d+:\d+/);
    }
    expect(run().code).toBe(2);
    expect(readdirSync(work).filter((f) => /^(x\.carvq|s\.npy|r)$/.test(f))).toEqual([]);
  });

  it("checks output paths before any work: a missing folder exits 3, an existing file without --force exits 2", () => {
    expectOneLine(
      run("compress", "m.npy", "-o", "missing/dir/x.carvq", "--target-bpp", "2"),
      3,
      "carvq: missing/dir/x.carvq: cannot write: folder 'missing/dir' does not exist",
    );
    expectOneLine(run("compress", "m.npy", "-o", "a-file/x.carvq"), 3, "carvq: a-file/x.carvq: cannot write: 'a-file' is not a folder");
    expectOneLine(run("compress", "m.npy", "-o", "a-folder"), 3, "carvq: a-folder: is a folder; expected a file to write");
    expectOneLine(
      run("compress", "m.npy", "-o", "a-file", "--target-bpp", "2"),
      2,
      "carvq: a-file: already exists (pass --force to overwrite)",
    );
    expectOneLine(
      run("synth", "--shape", "10x4", "-o", "missing/s.npy"),
      3,
      "carvq: missing/s.npy: cannot write: folder 'missing' does not exist",
    );
    expectOneLine(run("synth", "--shape", "10x4", "-o", "a-file"), 2, "carvq: a-file: already exists (pass --force to overwrite)");
    expectOneLine(
      run("lookup", blob(), "--tokens", "0", "-o", "missing/rows.f32"),
      3,
      "carvq: missing/rows.f32: cannot write: folder 'missing' does not exist",
    );
    expectOneLine(run("report", "m.npy", "-o", "a-file/report"), 3, "carvq: a-file/report: cannot write: 'a-file' is not a folder");
    expectOneLine(run("report", "m.npy", "-o", "a-file"), 3, "carvq: a-file: exists and is not a folder");
    writeFileSync(join(work, "a-folder", "report.svg"), "<svg/>");
    expectOneLine(
      run("report", "m.npy", "-o", "a-folder"),
      2,
      `carvq: ${join("a-folder", "report.svg")}: already exists (pass --force to overwrite)`,
    );
    expectOneLine(run("extract", "m.npy", "-o", "missing/t.npy"), 3, "carvq: missing/t.npy: cannot write: folder 'missing' does not exist");
    expectOneLine(run("conformance", "-o", "missing/kit"), 3, "carvq: missing/kit: its parent folder does not exist");
    expectOneLine(run("conformance", "-o", "a-folder"), 2, "carvq: a-folder: already exists (pass --force to replace it)");
    expectOneLine(run("data", "glove", "--out-dir", "a-file/data"), 3, "carvq: a-file/data: cannot write: 'a-file' is not a folder");
    expect(existsSync(join(work, "missing"))).toBe(false);
    expect(readFileSync(join(work, "a-file"), "utf8")).toBe("not a folder");
  });

  it("ppl says which kind of model it runs when given another", () => {
    const expected = "ppl runs a Hugging Face model folder (config.json + safetensors) or a llama2.c checkpoint (e.g. stories260K.bin)";
    expectOneLine(
      run("ppl", blob(), "--model", "model.safetensors"),
      2,
      `carvq ppl: --model model.safetensors is a safetensors file; ${expected}`,
    );
    expectOneLine(run("ppl", blob(), "--model", "m.npy"), 2, `carvq ppl: --model m.npy is an .npy array; ${expected}`);
    expectOneLine(run("ppl", blob(), "--model", "a-folder"), 2, `carvq ppl: --model a-folder is a folder without config.json; ${expected}`);
  });

  it("counts in the right number: 1 row, 2 rows", () => {
    const one = run("lookup", blob(), "--tokens", "7", "-o", "one.f32");
    expect(one.code, one.stderr).toBe(0);
    expect(one.stderr).toMatch(/^carvq lookup: 1 row of 12 values from m\.carvq /);
    const two = run("lookup", blob(), "--tokens", "7,8", "-o", "two.f32");
    expect(two.stderr).toMatch(/^carvq lookup: 2 rows of 12 values /);
  });

  it("--help lists the exit codes, --version is package.json's (put in at build time, package.json not bundled)", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    expect(run("--help").stdout).toMatch(
      /^exit codes: 0 ok, 1 bad input file, 2 bad command line, 3 cannot read or write a file, 4 bad blob, 5 token out of range, 6 over the memory budget, 70 internal error$/m,
    );
    expect(run("--version").stdout).toBe(`${pkg.version}\n`);
    const bundle = readFileSync(cli, "utf8");
    expect(bundle).not.toMatch(/devDependencies|"scripts"|typecheck/);
  });

  it("demo: progress for every stage, seconds that include the nn10 search, a total; the README's sample has its columns", () => {
    const json = run("demo", "--rows", "300", "--json");
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as { results: { method: string; seconds: number }[]; totalSeconds: number };
    expect(out.results.map((r) => r.method)).toEqual(["carvq", "int4", "int2"]);
    const sum = out.results.reduce((s, r) => s + r.seconds, 0);
    expect(out.totalSeconds).toBeGreaterThanOrEqual(sum);
    for (const label of [
      "table  nearest neighbours (for nn10)",
      "carvq  compressing",
      "carvq  nearest neighbours (nn10)",
      "int4   compressing",
      "int4   nearest neighbours (nn10)",
      "int2   nearest neighbours (nn10)",
    ]) {
      expect(json.stderr, label).toContain(label);
    }
    const text = run("demo", "--rows", "300").stdout.trimEnd().split("\n");
    expect(text).toHaveLength(6);
    expect(text[5]).toMatch(/^seconds: compressing, decoding and the nn10 search of each method; \d+\.\d s in all/);
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const sample = /npm start`[\s\S]*?```\n([\s\S]*?)```/.exec(readme)?.[1].trimEnd().split("\n") ?? [];
    expect(sample, "the README's npm start sample").toHaveLength(6);
    expect(sample[0]).toBe(text[0]);
    expect(sample[1]).toBe(text[1]);
    expect(sample.slice(2, 5).map((l) => l.split(/\s+/)[0])).toEqual(["carvq", "int4", "int2"]);
    expect(sample[5]).toMatch(/^seconds: compressing, decoding and the nn10 search of each method; \d+\.\d s in all/);
  });
});

describe.skipIf(existsSync(cli))("carvq CLI (not built)", () => {
  it("needs dist/carvq.mjs: run npm run build", () => {
    expect.fail("dist/carvq.mjs is missing; npm ci builds it (prepare), or run npm run build");
  });
});
