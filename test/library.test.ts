// The C ABI of the library modules (build/lib/*.wasm, docs/RUNTIME.md "Embedding the runtime"):
// rows bit-identical to tools/decoder.ts in both builds, both modes and from memory, every format
// version; calls in any order answered with a status, never a trap.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bitDifferences, buildDir, loadTargets, RUNTIME_EXIT, type Target } from "../host/common.ts";
import { runWasiCommand, wasmPath } from "../host/node.ts";
import { randomBlob, type RandomBlobOptions } from "../tools/blob/random.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { readField, writeField } from "../tools/dev/fuzz/fields.ts";
import { resealBlob } from "../tools/dev/fuzz/mutate.ts";
import { blobFields, compressedBlobSeeds } from "../tools/dev/fuzz/seeds.ts";
import { createRandom } from "../tools/random.ts";
import { instantiateReactor, libraryPath, type Reactor } from "./reactor.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-library-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const GUEST = "/blob";

function writeBlob(bytes: Uint8Array, name: string): string {
  writeFileSync(join(dir, name), bytes);
  return `${GUEST}/${name}`;
}

const FUZZ = join(import.meta.dirname, "fixtures", "fuzz");

const representatives = new Map<string, Uint8Array>();
/** A target's representative blob (targets/*.json), made once per shape. */
function representative(t: Target): Uint8Array {
  const r = t.representative!;
  const key = JSON.stringify(r);
  let bytes = representatives.get(key);
  if (bytes === undefined) {
    bytes = randomBlob({ ...r, seed: r.rows + r.cols });
    representatives.set(key, bytes);
  }
  return bytes;
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
  [
    "1.2 adaptor fp16 with row scales 8-12-12-30",
    { rows: 90, cols: 30, subvec: 5, levels: 2, group: 6, rowScales: 4, adaptor: { widths: [8, 12, 12, 30], precision: "fp16" } },
  ],
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

  it("a file that shrinks or changes under an open streaming blob: 3 or 4 from the lookup, never a trap; close and reopen recover", () => {
    const scaled = randomBlob({ rows: 60, cols: 16, subvec: 4, levels: 2, group: 8, rowScales: 3, seed: 9 });
    const file = join(dir, "changing.carvq");
    writeFileSync(file, scaled);
    const rt = reactor("carvq");
    expect(rt.open(`${GUEST}/changing.carvq`, 2)).toBe(0);
    writeFileSync(file, scaled.subarray(0, 100));
    expect(rt.lookup([59]).status).toBe(RUNTIME_EXIT.io);
    expect(rt.message()).toMatch(/^\/blob\/changing.carvq: cannot read \(the file ended early: was it changed while open\?\)$/);
    // A record whose row-scale index no longer points into ROW_SCALES (checked at open): refused, not misread.
    const changed = scaled.slice();
    const parsed = parseBlob(scaled, "changing");
    changed[parsed.sections.find((x) => x.id === 1)!.offset + 7 * parsed.header.rowBytes] = 200;
    writeFileSync(file, changed);
    expect(rt.lookup([6, 7]).status).toBe(RUNTIME_EXIT.badBlob);
    expect(rt.message()).toMatch(/token 7 has row-scale index 200 but the ROW_SCALES section holds 3 \(the file changed while open\?\)/);
    writeFileSync(file, scaled);
    expect(rt.lookup([7]).status, "the blob stays open").toBe(0);
    expect(rt.exports.carvq_close()).toBe(0);
    expect(rt.open(`${GUEST}/changing.carvq`, 2)).toBe(0);
    expect(bitDifferences(rt.lookup([7, 59]).rows, decodeTokens(parsed, [7, 59]))).toBe(0);
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

describe("budget: each target's library module opens its representative blob once and serves 10^5 lookups inside its budget", () => {
  for (const t of loadTargets()) {
    const r = t.representative!;
    it(`${t.name} (${t.mode}, ${t.memoryBudgetBytes} bytes): ${r.rows} x ${r.cols}, single and batched lookups interleaved, sampled rows bit-identical`, () => {
      const bytes = representative(t);
      const path = writeBlob(bytes, `rep-${r.rows}x${r.cols}.carvq`);
      const reference = parseBlob(bytes, "representative");
      const rt = reactor(t.name);
      const ex = rt.exports;
      expect(
        WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(libraryPath(t.name)))).some((e) => e.name === "_start"),
        "a reactor has no _start",
      ).toBe(false);
      expect(rt.open(path), rt.message()).toBe(0);
      expect(ex.carvq_mode()).toBe(t.mode === "resident" ? 1 : 2);
      const most = Math.floor(ex.carvq_io_bytes() / (r.cols * 4));
      const random = createRandom(r.rows);
      let served = 0;
      let calls = 0;
      let afterFirst = 0;
      while (served < 100_000) {
        // One token (a decoding step), then a batch as large as the area holds, then a few.
        const count = Math.min([1, most, 3][calls % 3], 100_000 - served);
        const ids = Array.from({ length: count }, () => Math.floor(random() * r.rows));
        const io = new Uint32Array(ex.memory.buffer, ex.carvq_io(), count);
        io.set(ids);
        expect(ex.carvq_lookup(count)).toBe(0);
        if (calls % 97 === 0) {
          const rows = new Float32Array(ex.memory.buffer, ex.carvq_io(), count * r.cols);
          expect(bitDifferences(rows, decodeTokens(reference, ids)), `call ${calls}`).toBe(0);
        }
        if (calls === 0) afterFirst = ex.memory.buffer.byteLength;
        served += count;
        calls++;
      }
      const peak = ex.memory.buffer.byteLength;
      expect(peak).toBeLessThanOrEqual(t.memoryBudgetBytes);
      expect(peak, "lookups never grow memory").toBe(afterFirst);
      if (t.mode === "streaming") expect(peak, "the blob stays out of memory").toBeLessThan(bytes.length / 4);
      rt.dispose();
    });
  }

  it("a blob that cannot fit is refused at open with 6, never later: each mode on a module too small for it", () => {
    const mcu = loadTargets().find((t) => t.name === "mcu-128k")!;
    const wide = randomBlob({ rows: 40, cols: 40000, subvec: 8, levels: 2, group: 1024, seed: 4 });
    const rt = reactor("mcu-128k");
    expect(rt.open(writeBlob(wide, "wide.carvq"), 2)).toBe(RUNTIME_EXIT.budget);
    expect(rt.message()).toBe("budget exceeded: one row of 40000 values (160000 bytes) does not fit the I/O area of 8192 bytes");
    const big = representative(mcu);
    expect(rt.open(writeBlob(big, "mcu-rep.carvq"), 1)).toBe(RUNTIME_EXIT.budget);
    expect(rt.message()).toMatch(
      /^\/blob\/mcu-rep.carvq: budget exceeded: resident mode .* needs \d+ more bytes of memory but only \d+ are left under the budget of 131072 bytes/,
    );
    expect(rt.exports.carvq_blob_area(big.length)).toBe(0);
    expect(rt.message()).toMatch(/budget exceeded: a blob of \d+ bytes does not fit in memory/);
    // Still usable: the same module streams the blob it could not hold.
    expect(rt.open(`${GUEST}/mcu-rep.carvq`), rt.message()).toBe(0);
    expect(bitDifferences(rt.lookup([0, 31999]).rows, decodeTokens(parseBlob(big, "mcu"), [0, 31999]))).toBe(0);
    expect(rt.exports.memory.buffer.byteLength).toBeLessThanOrEqual(mcu.memoryBudgetBytes);
    rt.dispose();
  });
});

describe("hostile blobs through carvq_open and carvq_open_memory: a status, never a trap", () => {
  it("every header, section-table and adaptor-header field of every seed kind set to breaking values, with and without resealed CRCs: 0 exactly when the reference reader accepts, else 4 (or 6), one instance throughout", async () => {
    const rt = reactor("carvq-scalar");
    const stream = reactor("mcu-128k");
    const counts: Record<number, number> = {};
    const seeds = await compressedBlobSeeds();
    for (const seed of seeds) {
      for (const field of blobFields(seed.bytes)) {
        const current = readField(seed.bytes, field);
        const values = [0n, 1n, current - 1n, current + 1n, (1n << BigInt(8 * field.size)) - 1n, BigInt(seed.bytes.length)];
        for (const value of values) {
          for (const reseal of [false, true]) {
            const bytes = seed.bytes.slice();
            writeField(bytes, field, value);
            if (reseal) resealBlob(bytes);
            let accepted = true;
            try {
              parseBlob(bytes, "mutant");
            } catch {
              accepted = false;
            }
            const what = `${seed.name} ${field.name} = ${value}${reseal ? " (resealed)" : ""}`;
            const status = rt.openMemory(bytes);
            counts[status] = (counts[status] ?? 0) + 1;
            expect([0, 4, 6], `${what}: ${rt.message()}`).toContain(status);
            if (status !== 6) expect(status === 0, `${what}: ${rt.message()}`).toBe(accepted);
            if (status !== 0) expect(rt.message().length, what).toBeGreaterThan(0);
            rt.exports.carvq_close();
            if (field.name.startsWith("section") || field.name.startsWith("ADAPTOR")) {
              const path = writeBlob(bytes, "mutant.carvq");
              const s = stream.open(path, 2);
              expect([0, 4, 6], `${what}, streaming: ${stream.message()}`).toContain(s);
              if (s !== 6) expect(s === 0, `${what}, streaming: ${stream.message()}`).toBe(accepted);
              stream.exports.carvq_close();
            }
          }
        }
      }
    }
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[4]).toBeGreaterThan(100);
    // After thousands of refusals the same instances still serve a good blob exactly.
    const good = seeds[0].bytes;
    const ids = [0, 5, 47];
    expect(rt.openMemory(good)).toBe(0);
    expect(bitDifferences(rt.lookup(ids).rows, decodeTokens(parseBlob(good, "good"), ids))).toBe(0);
    expect(stream.open(writeBlob(good, "good.carvq"), 2)).toBe(0);
    expect(bitDifferences(stream.lookup(ids).rows, decodeTokens(parseBlob(good, "good"), ids))).toBe(0);
    rt.dispose();
    stream.dispose();
  });

  it("the fuzz corpus: the library's status and message are the command's exit code and error line", () => {
    const corpus = readdirSync(FUZZ)
      .filter((f) => f.endsWith(".json"))
      .map((f) => JSON.parse(readFileSync(join(FUZZ, f), "utf8")) as { file: string; input: string });
    const blobs = corpus.filter((c) => c.input === "blob");
    expect(blobs.length).toBeGreaterThan(0);
    for (const build of ["carvq", "carvq-scalar"]) {
      const rt = reactor(build);
      for (const c of blobs) {
        const bytes = new Uint8Array(readFileSync(join(FUZZ, c.file)));
        const path = writeBlob(bytes, c.file);
        const run = runWasiCommand(wasmPath({ build: build === "carvq" ? "simd" : "scalar" }), ["lookup", path, "0"], { [GUEST]: dir });
        const status = rt.open(path);
        expect(status, c.file).toBe(run.exitCode);
        if (status !== 0) expect(`carvq-rt: ${rt.message()} [exit ${status}]`).toBe(run.stderr.trim());
        else expect(Buffer.from(rt.lookup([0]).rows.buffer).equals(Buffer.from(run.stdout))).toBe(true);
        rt.exports.carvq_close();
      }
      rt.dispose();
    }
  });
});

describe("soak: one instance, 10^6 lookups and 200 open/close cycles", () => {
  it("memory flat after the first lookup, no host file descriptor left open", () => {
    const bytes = randomBlob({ rows: 5000, cols: 64, subvec: 8, levels: 2, group: 64, rowScales: 16, seed: 11 });
    const path = writeBlob(bytes, "soak.carvq");
    const fds = () => readdirSync("/proc/self/fd").length;
    const rt = reactor("rpi-zero2w");
    const ex = rt.exports;
    const before = fds();
    for (let i = 0; i < 200; i++) {
      expect(rt.open(path, 1 + (i % 2))).toBe(0);
      expect(ex.carvq_close()).toBe(0);
    }
    expect(fds(), "open/close cycles leave no descriptor").toBe(before);
    expect(rt.open(path, 2)).toBe(0);
    expect(fds(), "streaming holds one descriptor").toBe(before + 1);
    const io = new Uint32Array(ex.memory.buffer, ex.carvq_io(), 1);
    io[0] = 1;
    expect(ex.carvq_lookup(1)).toBe(0);
    const memoryAfterFirst = ex.memory.buffer.byteLength;
    let t = 1;
    let failures = 0;
    const view = new Uint32Array(ex.memory.buffer, ex.carvq_io(), 1);
    for (let i = 0; i < 1_000_000; i++) {
      t = (t * 1103515245 + 12345) % 5000;
      view[0] = t;
      failures += ex.carvq_lookup(1);
    }
    expect(failures).toBe(0);
    expect(ex.memory.buffer.byteLength).toBe(memoryAfterFirst);
    expect(bitDifferences(rt.lookup([t]).rows, decodeTokens(parseBlob(bytes, "soak"), [t]))).toBe(0);
    expect(ex.carvq_close()).toBe(0);
    expect(fds()).toBe(before);
    rt.dispose();
  });
});

describe("codebooks widened to f32 at open (resident RVQ, where the budget holds them)", () => {
  it("the bench command widens in resident mode, not with --no-widen nor in streaming mode, in both builds", () => {
    const bytes = randomBlob({ rows: 300, cols: 50, subvec: 6, levels: 3, group: 7, seed: 41 });
    const path = writeBlob(bytes, "widen.carvq");
    const codebooks = (module: string, args: string[]) => {
      const run = runWasiCommand(join(buildDir(), "bench", `${module}.wasm`), ["bench", ...args, path, "decode", "10", "1"], {
        [GUEST]: dir,
      });
      expect(run.stderr).toBe("");
      return (JSON.parse(new TextDecoder().decode(run.stdout)) as { codebooks: string }).codebooks;
    };
    for (const module of ["simd", "scalar"]) {
      expect(codebooks(module, ["--mode", "resident"])).toBe("f32");
      expect(codebooks(module, ["--mode", "resident", "--no-widen"])).toBe("f16");
      expect(codebooks(module, ["--mode", "streaming"])).toBe("f16");
    }
  });
});
