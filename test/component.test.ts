// The WIT component (build/lib/carvq.component.wasm, world carvq:embedding/runtime of
// wit/carvq.wit): WASI 0.2 imports only and the interface exactly as written; run under jco in
// process (host/jco.ts, openComponentTable), its rows are the reference decoder's bit for bit for
// every format version, failures carry the runtime's codes, and one instance closes and opens again.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { componentWit } from "@bytecodealliance/jco-transpile/wasm-tools";
import { afterAll, describe, expect, it } from "vitest";
import { bitDifferences, buildDir, projectRoot, RUNTIME_EXIT } from "../host/common.ts";
import { openComponentTable } from "../host/jco.ts";
import { randomBlob, type RandomBlobOptions } from "../tools/blob/random.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { CarvqError } from "../tools/errors.ts";
import { bitsPerParameter } from "../tools/eval/bpp.ts";

const component = join(buildDir(), "lib", "carvq.component.wasm");
const dir = mkdtempSync(join(tmpdir(), "carvq-component-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BLOBS: Record<string, RandomBlobOptions> = {
  "v1.0 row": { rows: 40, cols: 21, subvec: 8, levels: 2, group: 9, layout: "row", seed: 1 },
  "v1.0 int4": { method: "int4", rows: 40, cols: 21, group: 8, seed: 3 },
  "v1.1 row scales": { rows: 40, cols: 24, subvec: 8, levels: 2, group: 16, layout: "col", rowScales: 5, seed: 4 },
  "v1.2 adaptor": { rows: 40, cols: 24, subvec: 8, levels: 2, group: 16, adaptor: { widths: [6, 40, 24] }, seed: 5 },
};
const IDS = [39, 0, 7, 7, 12, 1];

function blobFile(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

function failure(call: () => unknown): CarvqError {
  try {
    call();
  } catch (e) {
    expect(e).toBeInstanceOf(CarvqError);
    return e as CarvqError;
  }
  throw new Error("expected a CarvqError, got success");
}

describe.skipIf(!existsSync(component))("the WIT component", () => {
  it("exports carvq:embedding/table@0.1.0 and imports WASI 0.2 interfaces only", async () => {
    const wit = await componentWit(new Uint8Array(readFileSync(component)));
    expect(wit).toMatch(/export carvq:embedding\/table@0\.1\.0;/);
    const imports = [...wit.matchAll(/^\s*import ([^;]+);/gm)].map((m) => m[1]);
    expect(imports.length).toBeGreaterThan(0);
    for (const name of imports) expect(name, name).toMatch(/^wasi:[a-z-]+\/[a-z-]+@0\.2\.\d+$/);
    // The interface as written in wit/carvq.wit, field for field.
    const source = readFileSync(join(projectRoot(), "wit", "carvq.wit"), "utf8");
    expect(source).toMatch(/record failure \{ code: u8, message: string \}/);
    expect(source).toMatch(/record info \{ rows: u32, cols: u32, bits-per-parameter: f64 \}/);
    expect(source).toMatch(/open: func\(path: string\) -> result<info, failure>;/);
    expect(source).toMatch(/lookup: func\(tokens: list<u32>\) -> result<list<f32>, failure>;/);
  });

  it("under jco: rows bit-identical to the reference decoder for v1.0 (row, int4), v1.1 and v1.2 blobs", async () => {
    for (const [name, options] of Object.entries(BLOBS)) {
      const bytes = randomBlob(options);
      const parsed = parseBlob(bytes, name);
      const table = await openComponentTable(blobFile(`${name.replace(/\W+/g, "-")}.carvq`, bytes));
      expect([table.rows, table.cols], name).toEqual([parsed.header.rows, parsed.header.cols]);
      expect(table.bitsPerParameter, name).toBeCloseTo(bitsPerParameter(parsed).bpp, 9);
      expect(bitDifferences(table.lookup(IDS), decodeTokens(parsed, IDS)), name).toBe(0);
      expect(bitDifferences(table.lookup([5]), decodeTokens(parsed, [5])), name).toBe(0);
      table.close();
    }
  });

  it("under jco: failures carry the codes (3 no file, 4 bad blob, 5 token out of range), and an instance opens again after close", async () => {
    const bytes = randomBlob(BLOBS["v1.0 row"]);
    const path = blobFile("m.carvq", bytes);
    const broken = new Uint8Array(bytes);
    broken[broken.length - 1] ^= 1;
    const brokenPath = blobFile("broken.carvq", broken);
    let e = await openComponentTable(brokenPath).then(
      () => null,
      (x: unknown) => x as CarvqError,
    );
    expect(e).toBeInstanceOf(CarvqError);
    expect(e!.exitCode).toBe(RUNTIME_EXIT.badBlob);
    expect(e!.message).toMatch(/^.*broken\.carvq: bad blob: .*CRC mismatch/);
    e = await openComponentTable(join(dir, "none.carvq")).then(
      () => null,
      (x: unknown) => x as CarvqError,
    );
    expect(e!.exitCode).toBe(RUNTIME_EXIT.io);

    const table = await openComponentTable(path);
    const first = table.lookup(IDS);
    const range = failure(() => table.lookup([1, 40]));
    expect(range.exitCode).toBe(RUNTIME_EXIT.tokenRange);
    expect(range.message).toMatch(/token 40 is out of range: the blob has 40 tokens/);
    expect(bitDifferences(table.lookup(IDS), first)).toBe(0);
    // The same instance: close, then open again.
    table.close();
    expect(failure(() => table.lookup([1])).exitCode).toBe(RUNTIME_EXIT.usage);
    const again = table.reopen();
    expect(again.rows).toBe(40);
    expect(bitDifferences(table.lookup(IDS), first)).toBe(0);
    table.close();
  });
});
