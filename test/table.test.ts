// The JS API (host/table.ts, the package's export): openTable over the core library modules
// (build/lib/), checked against the TypeScript reference decoder bit for bit in both builds, both
// modes, a few device targets and every format version, from a path (node:wasi) and from bytes
// (the in-memory host); errors carry the runtime's exit code; a table can be closed and another
// opened; the bundled dist/table.mjs is what `import "carvq"` loads.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { bitDifferences, buildDir, loadTarget, projectRoot } from "../host/common.ts";
import { randomBlob, type RandomBlobOptions } from "../tools/blob/random.ts";
import { openTable, RUNTIME_EXIT, type Table, type TableBuild, type TableMode } from "../host/table.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { bitsPerParameter } from "../tools/eval/bpp.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { CarvqError } from "../tools/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-table-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const built = existsSync(join(buildDir(), "lib", "carvq.wasm"));

/** One blob per format version and method (small: the point is the bits, not the size). */
const BLOBS: Record<string, RandomBlobOptions> = {
  "v1.0 row": { rows: 40, cols: 21, subvec: 8, levels: 2, group: 9, layout: "row", seed: 1 },
  "v1.0 col": { rows: 40, cols: 24, subvec: 8, levels: 3, group: 7, layout: "col", seed: 2 },
  "v1.0 int4": { method: "int4", rows: 40, cols: 21, group: 8, seed: 3 },
  "v1.1 row scales": { rows: 40, cols: 24, subvec: 8, levels: 2, group: 16, rowScales: 5, seed: 4 },
  "v1.2 adaptor": { rows: 40, cols: 24, subvec: 8, levels: 2, group: 16, adaptor: { widths: [6, 40, 24] }, seed: 5 },
};
const IDS = [39, 0, 7, 7, 12, 1];

function blobFile(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** The rejection of `promise` (or of a call), as the CarvqError it must be. */
async function failure(promise: Promise<unknown> | (() => unknown)): Promise<CarvqError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (e) {
    expect(e).toBeInstanceOf(CarvqError);
    return e as CarvqError;
  }
  throw new Error("expected a CarvqError, got success");
}

describe.skipIf(!built)("openTable: rows bit-identical to the reference decoder", () => {
  const cases: { build?: TableBuild; target?: string; mode: TableMode }[] = [
    { build: "simd", mode: "resident" },
    { build: "simd", mode: "streaming" },
    { build: "scalar", mode: "resident" },
    { build: "scalar", mode: "streaming" },
    { target: "mcu-128k", mode: "auto" },
    { target: "rpi-zero2w", mode: "auto" },
  ];
  for (const [name, options] of Object.entries(BLOBS)) {
    it(`${name}: both builds, both modes, two targets, from a path and from bytes`, async () => {
      const bytes = randomBlob(options);
      const path = blobFile(`${name.replace(/\W+/g, "-")}.carvq`, bytes);
      const parsed = parseBlob(bytes, name);
      const want = decodeTokens(parsed, IDS);
      for (const c of cases) {
        for (const source of [path, bytes]) {
          const what = `${name}, ${c.target ?? c.build} ${c.mode}, ${typeof source === "string" ? "path" : "bytes"}`;
          const table = await openTable(source, c);
          expect([table.rows, table.cols], what).toEqual([parsed.header.rows, parsed.header.cols]);
          expect(table.bitsPerParameter, what).toBeCloseTo(bitsPerParameter(parsed).bpp, 9);
          // auto on a target is the target's own mode; the generic builds serve the mode asked.
          expect(table.mode, what).toBe(c.target !== undefined ? loadTarget(c.target).mode : c.mode);
          expect(bitDifferences(table.lookup(IDS), want), what).toBe(0);
          // One token at a time through lookupInto, into one reused row.
          const row = new Float32Array(table.cols);
          for (let i = 0; i < IDS.length; i++) {
            expect(table.lookupInto([IDS[i]], row), what).toBe(row);
            expect(bitDifferences(row, want.subarray(i * table.cols, (i + 1) * table.cols)), `${what}, token ${IDS[i]}`).toBe(0);
          }
          table.close();
        }
      }
    });
  }

  it("the in-memory path needs nothing from Node: the module and the blob handed over as bytes (as in a browser)", async () => {
    const bytes = randomBlob(BLOBS["v1.2 adaptor"]);
    const module = new Uint8Array(readFileSync(join(buildDir(), "lib", "mcu-128k.wasm")));
    for (const mode of ["resident", "streaming"] as const) {
      const table = await openTable(bytes, { module, mode });
      expect(bitDifferences(table.lookup(IDS), decodeTokens(parseBlob(bytes, "a"), IDS)), mode).toBe(0);
      table.close();
    }
    // The module by path (relative to the working folder) and by file URL.
    const path = relative(process.cwd(), join(buildDir(), "lib", "carvq-scalar.wasm"));
    for (const given of [path, pathToFileURL(path)]) {
      const table = await openTable(bytes, { module: given });
      expect(bitDifferences(table.lookup(IDS), decodeTokens(parseBlob(bytes, "a"), IDS)), String(given)).toBe(0);
      table.close();
    }
    expect((await failure(openTable(bytes, { module: "no/such.wasm" }))).exitCode).toBe(RUNTIME_EXIT.io);
  });

  it("two tables open at once, each its own instance, serve their own rows", async () => {
    const a = randomBlob(BLOBS["v1.0 row"]);
    const b = randomBlob(BLOBS["v1.1 row scales"]);
    const [ta, tb] = await Promise.all([openTable(a), openTable(blobFile("two-b.carvq", b), { mode: "streaming" })]);
    expect(bitDifferences(ta.lookup(IDS), decodeTokens(parseBlob(a, "a"), IDS))).toBe(0);
    expect(bitDifferences(tb.lookup(IDS), decodeTokens(parseBlob(b, "b"), IDS))).toBe(0);
    ta.close();
    expect(bitDifferences(tb.lookup([3]), decodeTokens(parseBlob(b, "b"), [3]))).toBe(0);
    tb.close();
  });

  it("a request larger than the I/O area is served in pieces, in order", async () => {
    const bytes = randomBlob({ rows: 3000, cols: 64, subvec: 8, levels: 2, group: 64, seed: 9 });
    const ids = Array.from({ length: 5000 }, (_, i) => (i * 7919) % 3000);
    const table = await openTable(bytes, { build: "scalar", mode: "streaming" });
    expect(bitDifferences(table.lookup(ids), decodeTokens(parseBlob(bytes, "big"), ids))).toBe(0);
    table.close();
  });
});

describe.skipIf(!built)("openTable: errors carry the runtime's exit code", () => {
  const bytes = randomBlob(BLOBS["v1.0 row"]);
  const path = blobFile("errors.carvq", bytes);

  it("a bad blob is refused at open with 4 and one line naming the file", async () => {
    const broken = new Uint8Array(bytes);
    broken[broken.length - 1] ^= 1;
    const brokenPath = blobFile("broken.carvq", broken);
    for (const source of [brokenPath, broken]) {
      const e = await failure(openTable(source));
      expect(e.exitCode).toBe(RUNTIME_EXIT.badBlob);
      expect(e.message.split("\n")).toHaveLength(1);
      expect(e.message).toMatch(/CRC mismatch/);
      if (typeof source === "string") expect(e.message.startsWith(brokenPath), e.message).toBe(true);
    }
    expect((await failure(openTable(join(dir, "none.carvq")))).exitCode).toBe(RUNTIME_EXIT.io);
  });

  it("a token out of range fails the call with 5 and leaves the table working", async () => {
    const table = await openTable(path);
    const e = await failure(() => table.lookup([1, 40]));
    expect(e.exitCode).toBe(RUNTIME_EXIT.tokenRange);
    expect(e.message).toMatch(/token 40 is out of range/);
    expect((await failure(() => table.lookup([-1]))).exitCode).toBe(RUNTIME_EXIT.usage);
    expect((await failure(() => table.lookupInto([1, 2], new Float32Array(21)))).exitCode).toBe(RUNTIME_EXIT.usage);
    expect(bitDifferences(table.lookup([3]), decodeTokens(parseBlob(bytes, "m"), [3]))).toBe(0);
    table.close();
  });

  it("a blob the budget cannot hold is refused at open with 6", async () => {
    const wide = randomBlob({ rows: 2, cols: 65536, subvec: 8, levels: 2, group: 1024, seed: 3 });
    const e = await failure(openTable(wide, { target: "mcu-128k" }));
    expect(e.exitCode).toBe(RUNTIME_EXIT.budget);
    expect(e.message).toMatch(/budget/);
    const table = await openTable(wide, { target: "rpi-zero2w" });
    expect(table.lookup([1]).length).toBe(65536);
    table.close();
  });

  it("bad options are refused with 2", async () => {
    expect((await failure(openTable(path, { target: "nope" }))).exitCode).toBe(RUNTIME_EXIT.usage);
    expect((await failure(openTable(path, { target: "mcu-128k", build: "simd" }))).exitCode).toBe(RUNTIME_EXIT.usage);
    expect((await failure(openTable(path, { mode: "fast" as TableMode }))).exitCode).toBe(RUNTIME_EXIT.usage);
  });

  it("close, then lookups throw 2; another table opens on the same file and serves the same rows", async () => {
    let table: Table = await openTable(path, { mode: "streaming" });
    const first = table.lookup(IDS);
    table.close();
    table.close();
    expect((await failure(() => table.lookup([1]))).exitCode).toBe(RUNTIME_EXIT.usage);
    for (let i = 0; i < 3; i++) {
      table = await openTable(path, { mode: "streaming" });
      expect(bitDifferences(table.lookup(IDS), first)).toBe(0);
      table.close();
    }
  });
});

/** The README's "Embed the runtime" code blocks in `language`, in order. */
function readmeBlocks(language: string): string[] {
  const readme = readFileSync(join(projectRoot(), "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Embed the runtime"), readme.indexOf("\n## ", readme.indexOf("## Embed the runtime") + 3));
  return [...section.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, "g"))].map((m) => m[1]);
}

describe.skipIf(!built || !existsSync(join(projectRoot(), "dist", "table.mjs")))("the README's JavaScript examples, run as written", () => {
  // Scripts inside the package resolve `import "carvq"` through its `exports`, as a user's would;
  // they run in a folder holding model.carvq, which they open by that name.
  const bytes = randomBlob({ rows: 64, cols: 40, subvec: 8, levels: 2, group: 32, adaptor: { widths: [6, 24, 40] }, seed: 11 });
  const work = mkdtempSync(join(dir, "readme-"));
  writeFileSync(join(work, "model.carvq"), bytes);
  const want = decodeTokens(parseBlob(bytes, "model.carvq"), [42, 7]);
  const run = (code: string): string[] => {
    const script = join(buildDir(), `readme-example-${process.pid}.mjs`);
    writeFileSync(script, code);
    try {
      const r = spawnSync(process.execPath, ["--no-warnings", script], { cwd: work, encoding: "utf8" });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim().split("\n");
    } finally {
      rmSync(script, { force: true });
    }
  };
  const blocks = readmeBlocks("js");

  it("carvq/table (dist/table.mjs, for browsers) imports no Node module, only the loader", () => {
    const bundle = readFileSync(join(projectRoot(), "dist", "table.mjs"), "utf8");
    const imports = [...bundle.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    expect(imports).toEqual(["@assemblyscript/loader"]);
    const pkg = JSON.parse(readFileSync(join(projectRoot(), "package.json"), "utf8")) as {
      exports: Record<string, { import: string }>;
      dependencies: Record<string, string>;
    };
    expect(pkg.exports["./table"].import).toBe("./dist/table.mjs");
    expect(Object.keys(pkg.dependencies)).toContain("@assemblyscript/loader");
  });

  it("has the C ABI example and the JS API example", () => {
    expect(blocks).toHaveLength(2);
  });

  it("the C ABI from Node prints the blob's rows, the row's width and token 42's first value", () => {
    expect(run(blocks[0])).toEqual([`64 40 ${want[0]}`]);
  });

  it("the JS API example prints the shape, the bits per parameter and token 42's first value", () => {
    const bpp = bitsPerParameter(parseBlob(bytes, "model.carvq")).bpp;
    expect(run(blocks[1])).toEqual([`64 x 40, ${bpp.toFixed(3)} bpp`, `80 ${want[0]}`]);
  });
});
