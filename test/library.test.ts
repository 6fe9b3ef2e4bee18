// The C ABI of the library modules (build/lib/*.wasm, docs/RUNTIME.md "Embedding the runtime"):
// rows bit-identical to tools/decoder.ts in both builds, both modes and from memory, every format
// version; calls in any order answered with a status, never a trap.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bitDifferences, RUNTIME_EXIT } from "../host/common.ts";
import { randomBlob, type RandomBlobOptions } from "../host/random-blob.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { createRandom } from "../tools/random.ts";
import { instantiateReactor, libraryPath, type Reactor } from "./reactor.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-library-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const GUEST = "/blob";

function writeBlob(bytes: Uint8Array, name: string): string {
  writeFileSync(join(dir, name), bytes);
  return `${GUEST}/${name}`;
}

function reactor(name: string): Reactor {
  return instantiateReactor(libraryPath(name), { [GUEST]: dir });
}

function tokens(rows: number, count: number, seed: number): number[] {
  const random = createRandom(seed);
  return [0, rows - 1, ...Array.from({ length: count }, () => Math.floor(random() * rows))];
}

/** Looks `ids` up in chunks the I/O area holds, concatenated. */
function lookupAll(rt: Reactor, ids: number[]): Float32Array {
  const cols = rt.exports.carvq_cols();
  const most = Math.floor(rt.exports.carvq_io_bytes() / (cols * 4));
  const out = new Float32Array(ids.length * cols);
  for (let at = 0; at < ids.length; at += most) {
    const chunk = ids.slice(at, at + most);
    const { status, rows } = rt.lookup(chunk);
    expect(status, rt.message()).toBe(0);
    out.set(rows, at * cols);
  }
  return out;
}

const VERSIONS: [string, RandomBlobOptions][] = [
  ["1.0 rvq row layout, L 3, h 6", { rows: 300, cols: 50, subvec: 6, levels: 3, group: 7 }],
  ["1.0 rvq column-block layout, L 2, h 8", { rows: 200, cols: 64, subvec: 8, levels: 2, group: 16, layout: "col" }],
  ["1.0 int3, block 7", { method: "int3", rows: 100, cols: 45, group: 7 }],
  ["1.1 row scales R 9", { rows: 150, cols: 37, subvec: 4, levels: 2, group: 9, rowScales: 9 }],
  ["1.2 adaptor int8 16-24-40", { rows: 120, cols: 40, subvec: 8, levels: 2, group: 5, adaptor: { widths: [16, 24, 40] } }],
  ["1.2 adaptor fp16 with row scales 8-12-12-30", { rows: 90, cols: 30, subvec: 5, levels: 2, group: 6, rowScales: 4, adaptor: { widths: [8, 12, 12, 30], precision: "fp16" } }],
];

describe("library rows are the reference decoder's, bit for bit", () => {
  for (const [what, options] of VERSIONS) {
    it(`${what}: simd and scalar, resident, streaming and from memory`, () => {
      const bytes = randomBlob({ seed: options.rows, ...options });
      const path = writeBlob(bytes, `v-${options.rows}.carvq`);
      const ids = tokens(options.rows, 200, options.cols);
      const want = decodeTokens(parseBlob(bytes, what), ids);
      for (const build of ["carvq", "carvq-scalar"]) {
        for (const mode of [1, 2]) {
          const rt = reactor(build);
          expect(rt.open(path, mode), rt.message()).toBe(0);
          expect(rt.exports.carvq_mode()).toBe(mode);
          expect([rt.exports.carvq_rows(), rt.exports.carvq_cols()]).toEqual([options.rows, options.cols]);
          expect(rt.exports.carvq_bits_per_parameter()).toBeCloseTo((bytes.length * 8) / (options.rows * options.cols), 12);
          expect(bitDifferences(lookupAll(rt, ids), want), `${build}, mode ${mode}`).toBe(0);
          // One token at a time, as an engine asks at each step.
          for (const t of ids.slice(0, 20)) expect(bitDifferences(rt.lookup([t]).rows, decodeTokens(parseBlob(bytes, what), [t]))).toBe(0);
          rt.dispose();
        }
        const rt = reactor(build);
        expect(rt.openMemory(bytes), rt.message()).toBe(0);
        expect(rt.exports.carvq_mode()).toBe(1);
        expect(bitDifferences(lookupAll(rt, ids), want), `${build}, from memory`).toBe(0);
        rt.dispose();
      }
    });
  }
});

describe("calls in any order: a status and a message, never a trap", () => {
  const bytes = randomBlob({ rows: 50, cols: 24, seed: 3 });
  const path = writeBlob(bytes, "order.carvq");

  it("lookup before open, double close, open twice, open again after close", () => {
    const rt = reactor("carvq");
    const ex = rt.exports;
    expect(ex.carvq_lookup(1)).toBe(RUNTIME_EXIT.usage);
    expect(rt.message()).toMatch(/no blob is open/);
    expect([ex.carvq_rows(), ex.carvq_cols(), ex.carvq_mode(), ex.carvq_bits_per_parameter()]).toEqual([0, 0, 0, 0]);
    expect(ex.carvq_close()).toBe(0);
    expect(ex.carvq_close()).toBe(0);
    expect(rt.open(path)).toBe(0);
    expect(ex.carvq_message_len()).toBe(0);
    expect(rt.open(path)).toBe(RUNTIME_EXIT.usage);
    expect(rt.message()).toMatch(/already open/);
    // The first blob is still open and answers.
    const want = decodeTokens(parseBlob(bytes, "order"), [7, 3]);
    expect(bitDifferences(rt.lookup([7, 3]).rows, want)).toBe(0);
    expect(ex.carvq_close()).toBe(0);
    expect(ex.carvq_close()).toBe(0);
    expect(ex.carvq_lookup(1)).toBe(RUNTIME_EXIT.usage);
    expect(rt.open(path)).toBe(0);
    expect(bitDifferences(rt.lookup([7, 3]).rows, want)).toBe(0);
    expect(ex.carvq_open_memory(bytes.length)).toBe(RUNTIME_EXIT.usage);
    rt.dispose();
  });

  it("a token out of range writes nothing; too many rows for the area, a bad mode or path length are usage errors", () => {
    const rt = reactor("carvq");
    const ex = rt.exports;
    expect(rt.open(path, 3)).toBe(RUNTIME_EXIT.usage);
    expect(ex.carvq_open(0, 0)).toBe(RUNTIME_EXIT.usage);
    expect(ex.carvq_open(ex.carvq_io_bytes() + 1, 0)).toBe(RUNTIME_EXIT.usage);
    expect(rt.open(path)).toBe(0);
    const io = ex.carvq_io();
    const view = new Uint32Array(ex.memory.buffer, io, 3);
    view.set([1, 50, 2]);
    const before = new Uint8Array(ex.memory.buffer.slice(io + 512, io + 4096));
    expect(ex.carvq_lookup(3)).toBe(RUNTIME_EXIT.tokenRange);
    expect(rt.message()).toBe("/blob/order.carvq: token 50 is out of range: the blob has 50 tokens (0 to 49)");
    expect(Buffer.from(new Uint8Array(ex.memory.buffer, io + 512, 4096 - 512)).equals(Buffer.from(before)), "no row written").toBe(true);
    const most = Math.floor(ex.carvq_io_bytes() / (24 * 4));
    expect(ex.carvq_lookup(most + 1)).toBe(RUNTIME_EXIT.usage);
    expect(rt.message()).toMatch(new RegExp(`at most ${most} rows`));
    expect(ex.carvq_lookup(0)).toBe(0);
    rt.dispose();
  });

  it("missing files, directories and paths outside the preopens are i/o errors (3) with the command's message", () => {
    const rt = reactor("carvq-scalar");
    expect(rt.open(`${GUEST}/missing.carvq`)).toBe(RUNTIME_EXIT.io);
    expect(rt.message()).toBe("/blob/missing.carvq: cannot open: no such file");
    expect(rt.open(GUEST)).toBe(RUNTIME_EXIT.io);
    expect(rt.open("/elsewhere/x.carvq")).toBe(RUNTIME_EXIT.io);
    expect(rt.message()).toMatch(/no preopened directory holds this path/);
    expect(rt.open(path)).toBe(0);
    rt.dispose();
  });
});
