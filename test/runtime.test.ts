// Conformance of the WASM runtime (assembly/) with the TypeScript reference decoder: bit-identical
// rows in both builds and both modes, under Node's WASI and (one test) under jco, for v1.0 blobs and
// v1.1 blobs with gain-shape row scales; corrupted blobs, bad requests and budget overruns refused
// with the documented exit code and one stderr line.
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as F from "../assembly/format.ts";
import { RUNTIME_EXIT, guestPath, type BuildName, type ModeName } from "../host/common.ts";
import { openJcoRuntime } from "../host/jco.ts";
import { openRuntime, runWasiCommand, wasmPath } from "../host/node.ts";
import { randomBlob, type RandomBlobOptions } from "../tools/blob/random.ts";
import { deriveHeader } from "../tools/blob/header.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { assembleBlob, headerCrc } from "../tools/blob/writer.ts";
import { crc32 } from "../tools/crc32.ts";
import { compressMatrix, type CompressOptions } from "../tools/compress.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { inputEmbedding, loadLlama2cModel } from "../tools/llama2c/model.ts";
import { CarvqError } from "../tools/errors.ts";
import { createRandom } from "../tools/random.ts";
import { randomMatrix } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-runtime-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function writeBlob(bytes: Uint8Array, name = `b${fileCount++}.carvq`): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Compares two float32 arrays bit for bit and names the first difference. */
function expectSameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      first = i;
      break;
    }
  }
  expect(
    first,
    first < 0
      ? what
      : `${what}: value ${first} is ${got[first]} (0x${a[first].toString(16)}), the reference decoder gives ${want[first]} (0x${b[first].toString(16)})`,
  ).toBe(-1);
}

/** Every token of the blob, then a few repeated and out of order. */
function allTokens(rows: number): number[] {
  const ids = Array.from({ length: rows }, (_, t) => t);
  return [...ids, rows - 1, 0, Math.floor(rows / 2), rows - 1];
}

function sampleTokens(rows: number, count: number, seed: number): number[] {
  const random = createRandom(seed);
  return [0, rows - 1, ...Array.from({ length: count }, () => Math.floor(random() * rows))];
}

const BUILDS: BuildName[] = ["simd", "scalar"];
const MODES: ModeName[] = ["resident", "streaming"];

/** Runs the generic builds in both modes and checks each against decodeTokens. */
async function checkParity(bytes: Uint8Array, ids: number[], what: string): Promise<void> {
  const path = writeBlob(bytes);
  const want = decodeTokens(parseBlob(bytes, what), ids);
  for (const build of BUILDS) {
    for (const mode of MODES) {
      const rt = await openRuntime({ blob: path, build, mode });
      expectSameBits(rt.lookup(ids), want, `${what}, ${build}, ${mode}`);
      rt.close();
    }
  }
}

describe("parity with the TypeScript decoder (compressed blobs)", () => {
  const cases: [string, number, number, Partial<CompressOptions>][] = [
    ["rvq row layout, n = 37 not a multiple of h = 8, last partial group", 45, 37, { h: 8, levels: 2, group: 16, iters: 4 }],
    ["rvq V = 1", 1, 20, { h: 4, levels: 3, group: 1024, iters: 2 }],
    ["rvq column-block layout, h = 6 (SIMD tail), partial token block", 30, 23, { h: 6, levels: 2, group: 7, layout: "col", iters: 4 }],
    ["rvq h = 1, L = 1", 12, 5, { h: 1, levels: 1, group: 5, iters: 3 }],
    ["rvq L = 4, h = 16", 40, 48, { h: 16, levels: 4, group: 9, iters: 3 }],
    ["int4, block 16 not dividing n = 45", 20, 45, { method: "int4", block: 16 }],
    ["int3, block 7 (codes straddle bytes)", 20, 45, { method: "int3", block: 7 }],
    ["int2, block 32, n = 1", 9, 1, { method: "int2", block: 32 }],
    [
      "gain-shape (v1.1), R = 16, row layout, n = 37 not a multiple of h = 8",
      45,
      37,
      { h: 8, levels: 2, group: 16, iters: 4, rowScaleCount: 16 },
    ],
    [
      "gain-shape, R = 256 (more scales than rows), column-block, h = 6 (SIMD tail)",
      30,
      23,
      { h: 6, levels: 2, group: 7, layout: "col", iters: 4, rowScaleCount: 256 },
    ],
    ["gain-shape, R = 1", 24, 16, { h: 4, levels: 2, group: 8, iters: 3, rowScaleCount: 1 }],
    ["gain-shape, V = 1, R = 1", 1, 20, { h: 4, levels: 3, group: 1024, iters: 2, rowScaleCount: 1 }],
    ["gain-shape, L = 4, h = 16, R = 8 (general SIMD level loop)", 40, 48, { h: 16, levels: 4, group: 9, iters: 3, rowScaleCount: 8 }],
    [
      "gain-shape, h = 1, L = 1, R = 3 (odd code count: one unused nibble after the index byte)",
      12,
      5,
      { h: 1, levels: 1, group: 5, iters: 3, rowScaleCount: 3 },
    ],
  ];
  for (const [what, rows, cols, options] of cases) {
    it(`${what}: both builds, both modes, every token`, async () => {
      const { bytes } = await compressMatrix(randomMatrix(rows, cols, rows * 31 + cols), { seed: 1, ...options });
      expect(parseBlob(bytes, what).rowScales?.length ?? 0, "the blob has the row scales asked for").toBe(options.rowScaleCount ?? 0);
      await checkParity(bytes, allTokens(rows), what);
    });
  }
});

const MODEL = join(import.meta.dirname, "..", "..", "shared", "models", "stories260K.bin");
describe.skipIf(!existsSync(MODEL))("parity on a real model's table (stories260K, ../shared/models)", () => {
  it("every token of its 512 x 64 embedding, rvq (row, column-block, gain-shape) and int3: both builds, both modes", async () => {
    const table = inputEmbedding(loadLlama2cModel(MODEL));
    for (const options of [
      { h: 8, levels: 3, group: 2048, iters: 8 },
      { h: 8, levels: 2, group: 64, layout: "col" as const, iters: 8 },
      { h: 8, levels: 2, group: 2048, iters: 8, rowScaleCount: 64 },
      { method: "int3" as const, block: 32 },
    ]) {
      const { bytes } = await compressMatrix(table, { seed: 1, ...options });
      await checkParity(bytes, allTokens(table.rows), `stories260K ${JSON.stringify(options)}`);
    }
  });
});

describe("parity with the TypeScript decoder (random codebooks: subnormals, odd shapes)", () => {
  const cases: [string, RandomBlobOptions][] = [
    ["L = 8, h = 3, row layout, g = 5", { rows: 60, cols: 31, subvec: 3, levels: 8, group: 5 }],
    ["L = 5, h = 12, column-block, g = 4", { rows: 33, cols: 50, subvec: 12, levels: 5, group: 4, layout: "col" }],
    ["h = 256 (one sub-vector per row), L = 2", { rows: 7, cols: 200, subvec: 256, levels: 2, group: 3 }],
    ["int4, block 1", { method: "int4", rows: 10, cols: 19, group: 1 }],
    ["int3, block 65536", { method: "int3", rows: 10, cols: 77, group: 65536 }],
    [
      "gain-shape R = 256 (random FP16 scales: subnormals, zeros, negatives), L = 8, h = 3",
      { rows: 60, cols: 31, subvec: 3, levels: 8, group: 5, rowScales: 256 },
    ],
    ["gain-shape R = 1, column-block, L = 5, h = 12", { rows: 33, cols: 50, subvec: 12, levels: 5, group: 4, layout: "col", rowScales: 1 }],
    ["gain-shape R = 7, h = 256, L = 2", { rows: 7, cols: 200, subvec: 256, levels: 2, group: 3, rowScales: 7 }],
    ["gain-shape V = 1, R = 256, h = 5", { rows: 1, cols: 13, subvec: 5, levels: 3, group: 2, rowScales: 256 }],
  ];
  for (const [what, options] of cases) {
    it(`${what}: both builds, both modes, every token`, async () => {
      await checkParity(randomBlob({ seed: options.rows, ...options }), allTokens(options.rows), what);
    });
  }

  it("a seeded sample of a larger blob (20000 x 300, g 1024): both builds, both modes", async () => {
    await checkParity(randomBlob({ rows: 20000, cols: 300, seed: 5 }), sampleTokens(20000, 300, 9), "20000 x 300");
  });

  it("a seeded sample of a larger gain-shape blob (20000 x 300, R = 256; CODES over several 64 KiB CRC chunks): both builds, both modes", async () => {
    await checkParity(randomBlob({ rows: 20000, cols: 300, rowScales: 256, seed: 6 }), sampleTokens(20000, 300, 10), "20000 x 300, R 256");
  });

  it("a 1.1 header without ROW_SCALES is read as a 1.0 blob (as the TypeScript reader does)", async () => {
    const bytes = randomBlob({ rows: 12, cols: 20, seed: 8 });
    const v = new DataView(bytes.buffer);
    v.setUint16(F.H_VERSION_MINOR, 1, true);
    v.setUint32(F.H_HEADER_CRC, headerCrc(bytes, v.getUint32(F.H_SECTION_COUNT, true)), true);
    await checkParity(bytes, allTokens(12), "1.1 without ROW_SCALES");
  });
});

describe("streaming through small arenas (device targets)", () => {
  it("a codebook window smaller than a token's groups (column-block, S = 256 groups per token) on mcu-128k", async () => {
    const bytes = randomBlob({ rows: 9, cols: 2048, subvec: 8, levels: 2, group: 4, layout: "col", seed: 3 });
    const path = writeBlob(bytes);
    const ids = allTokens(9);
    const rt = await openRuntime({ blob: path, target: "mcu-128k" });
    expectSameBits(rt.lookup(ids), decodeTokens(parseBlob(bytes, "w"), ids), "mcu-128k window");
    expect(rt.peakMemoryBytes).toBeLessThanOrEqual(131072);
  });

  it("gain-shape with R = 256 on mcu-128k: the 512 bytes of scales stay in the arena beside a small window", async () => {
    const bytes = randomBlob({ rows: 9, cols: 2048, subvec: 8, levels: 2, group: 4, layout: "col", rowScales: 256, seed: 13 });
    const path = writeBlob(bytes);
    const ids = allTokens(9);
    const rt = await openRuntime({ blob: path, target: "mcu-128k" });
    expectSameBits(rt.lookup(ids), decodeTokens(parseBlob(bytes, "w"), ids), "mcu-128k gain-shape");
    expect(rt.peakMemoryBytes).toBeLessThanOrEqual(131072);
    const plain = writeBlob(randomBlob({ rows: 9, cols: 2048, subvec: 8, levels: 2, group: 4, layout: "col", seed: 13 }));
    const withScales = rt.info().runtime.streamingBytes;
    const without = (await openRuntime({ blob: plain, target: "mcu-128k" })).info().runtime.streamingBytes;
    expect(withScales - without, "one more record byte (16-aligned) and 512 bytes of scales").toBeGreaterThanOrEqual(512);
    expect(withScales - without).toBeLessThanOrEqual(512 + 16);
  });

  it("one group bigger than the arena (h 256, L 8: 64 KiB per group): entries read one by one on mcu-128k", async () => {
    const bytes = randomBlob({ rows: 3, cols: 16384, subvec: 256, levels: 8, group: 1, seed: 4 });
    const path = writeBlob(bytes);
    const ids = [2, 0, 1];
    for (const target of ["mcu-128k", "esp32s3-wamr", "rpi-zero2w"]) {
      const rt = await openRuntime({ blob: path, target });
      expectSameBits(rt.lookup(ids), decodeTokens(parseBlob(bytes, "e"), ids), `${target} per-entry`);
      expect(rt.peakMemoryBytes).toBeLessThanOrEqual(rt.target!.memoryBudgetBytes);
    }
  });
});

describe("info", () => {
  it("prints a JSON summary that agrees with the TypeScript reader", async () => {
    const { bytes } = await compressMatrix(randomMatrix(50, 20, 3), { h: 8, levels: 2, group: 10, iters: 2 });
    const path = writeBlob(bytes);
    const blob = parseBlob(bytes, "x");
    for (const build of BUILDS) {
      const info = (await openRuntime({ blob: path, build })).info();
      expect(info).toMatchObject({
        format: "carvq",
        fileBytes: bytes.length,
        method: "rvq",
        rows: 50,
        cols: 20,
        subvec: 8,
        levels: 2,
        codebookSize: 16,
        group: 10,
        layout: "row",
        codeBits: 4,
        rowBytes: blob.header.rowBytes,
        groupCount: blob.header.groupCount,
        runtime: { build, budgetBytes: 2 ** 32, defaultMode: "auto", residentFits: true, streamingFits: true },
      });
      expect(info.bitsPerParameter).toBeCloseTo((8 * bytes.length) / (50 * 20), 3);
      expect(info.sections.map((s) => s.name)).toEqual(blob.sections.map((s) => ["", "CODES", "CODEBOOKS", "METADATA"][s.id]));
      expect(info).toMatchObject({ formatVersion: "1.0", rowScales: 0 });
    }
  });

  it("reports a gain-shape blob's version, its row scales and the record's index byte", async () => {
    const { bytes } = await compressMatrix(randomMatrix(50, 20, 3), { h: 8, levels: 2, group: 10, iters: 2, rowScaleCount: 12 });
    const path = writeBlob(bytes);
    const blob = parseBlob(bytes, "x");
    expect(blob.header.rowBytes).toBe(1 + Math.ceil((3 * 2) / 2));
    for (const build of BUILDS) {
      const info = (await openRuntime({ blob: path, build })).info();
      expect(info).toMatchObject({
        formatVersion: "1.1",
        rowScales: 12,
        rowBytes: blob.header.rowBytes,
        groupCount: blob.header.groupCount,
      });
      expect(info.sections.map((s) => s.name)).toEqual(["CODES", "CODEBOOKS", "ROW_SCALES", "METADATA"]);
      expect(info.sections[2]).toMatchObject({ id: F.SECTION_ROW_SCALES, length: 24 });
    }
  });
});

// ---- Refusals ----

interface Refusal {
  exitCode: number;
  line: string;
}

function runGeneric(build: BuildName, args: string[], blobDir = dir): Refusal & { stdout: Uint8Array } {
  const run = runWasiCommand(wasmPath({ build }), args, { "/blob": blobDir });
  const lines = run.stderr.split("\n").filter((l) => l.length > 0);
  if (run.exitCode !== 0) {
    expect(lines, `exactly one stderr line for exit ${run.exitCode}`).toHaveLength(1);
    expect(lines[0]).toMatch(/^carvq-rt: .+ \[exit \d+\]$/);
    expect(lines[0]).toContain(`[exit ${run.exitCode}]`);
    expect(run.stdout.byteLength, "nothing on stdout when refusing").toBe(0);
  }
  return { exitCode: run.exitCode, line: lines[0] ?? "", stdout: run.stdout };
}

function refuse(build: BuildName, path: string, mode: ModeName = "streaming"): Refusal {
  return runGeneric(build, ["lookup", "--mode", mode, guestPath(path), "0"]);
}

/** The TypeScript reader's verdict on the same bytes. */
function tsRefuses(bytes: Uint8Array): boolean {
  try {
    parseBlob(bytes, "x");
    return false;
  } catch (e) {
    if (e instanceof CarvqError) return true;
    throw e;
  }
}

const corruptionBase = await compressMatrix(randomMatrix(40, 24, 11), { h: 8, levels: 2, group: 8, iters: 2 });

describe("corrupted blobs are refused with exit 4 (bad blob) in both builds and modes", () => {
  const good = corruptionBase.bytes;
  const blob = parseBlob(good, "good");
  const section = (id: number) => blob.sections.find((s) => s.id === id)!;
  const table = (i: number) => F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
  const count = blob.sections.length;

  /** A copy with `edit` applied; `resealHeader` recomputes the header CRC so deeper checks are reached. */
  function corrupt(edit: (b: Uint8Array, v: DataView) => void, resealHeader = false): Uint8Array {
    const b = new Uint8Array(good);
    const v = new DataView(b.buffer);
    edit(b, v);
    if (resealHeader) v.setUint32(F.H_HEADER_CRC, headerCrc(b, v.getUint32(F.H_SECTION_COUNT, true)), true);
    return b;
  }

  const cases: [string, () => Uint8Array, RegExp][] = [
    ["a flipped byte in CODES", () => corrupt((b) => (b[section(F.SECTION_CODES).offset + 5] ^= 0x10)), /CODES.*CRC mismatch/],
    [
      "a flipped byte in CODEBOOKS",
      () => corrupt((b) => (b[section(F.SECTION_CODEBOOKS).offset + section(F.SECTION_CODEBOOKS).length - 1] ^= 1)),
      /CODEBOOKS.*CRC mismatch/,
    ],
    ["a flipped byte in METADATA", () => corrupt((b) => (b[section(F.SECTION_METADATA).offset] ^= 0x20)), /METADATA.*CRC mismatch/],
    ["a flipped byte in the header (rows)", () => corrupt((b) => (b[F.H_ROWS] ^= 1)), /header CRC mismatch/],
    ["a flipped byte in the section table", () => corrupt((b) => (b[table(0) + F.S_LENGTH] ^= 4)), /header CRC mismatch/],
    ["truncated by one byte", () => good.slice(0, good.length - 1), /run past the end|ends at byte|CRC/],
    ["truncated inside the header", () => good.slice(0, 40), /truncated/],
    ["truncated inside the section table", () => good.slice(0, F.SECTION_TABLE_OFFSET + 10), /truncated/],
    ["an empty file", () => new Uint8Array(0), /truncated/],
    ["trailing bytes", () => new Uint8Array([...good, 0, 0, 0]), /last section ends/],
    ["wrong magic", () => corrupt((_, v) => v.setUint32(F.H_MAGIC, 0x46445025, true)), /not a carvq blob/],
    ["version 2.0", () => corrupt((_, v) => v.setUint16(F.H_VERSION_MAJOR, 2, true), true), /unsupported version 2\.0/],
    ["version 1.3", () => corrupt((_, v) => v.setUint16(F.H_VERSION_MINOR, 3, true), true), /unsupported version 1\.3/],
    ["section_count 0", () => corrupt((_, v) => v.setUint32(F.H_SECTION_COUNT, 0, true), true), /section_count/],
    ["section_count 17", () => corrupt((_, v) => v.setUint32(F.H_SECTION_COUNT, 17, true), true), /section_count/],
    ["method 9", () => corrupt((_, v) => v.setUint32(F.H_METHOD, 9, true), true), /field method/],
    ["rows 0", () => corrupt((_, v) => v.setUint32(F.H_ROWS, 0, true), true), /field rows/],
    ["codebook_size 15", () => corrupt((_, v) => v.setUint32(F.H_CODEBOOK_SIZE, 15, true), true), /codebook_size/],
    ["a lying row_bytes", () => corrupt((_, v) => v.setUint32(F.H_ROW_BYTES, blob.header.rowBytes + 1, true), true), /row_bytes/],
    ["a lying group_count", () => corrupt((_, v) => v.setUint32(F.H_GROUP_COUNT, blob.header.groupCount - 1, true), true), /group_count/],
    ["rows that disagree with the CODES length", () => corrupt((_, v) => v.setUint32(F.H_ROWS, 41, true), true), /length|group_count/],
    [
      "a lying offset past the end of the file",
      () => corrupt((_, v) => v.setBigUint64(table(count - 1) + F.S_OFFSET, 1n << 40n, true), true),
      /past the end/,
    ],
    [
      "a lying offset + length that wraps around 2^64",
      () =>
        corrupt((_, v) => {
          v.setBigUint64(table(count - 1) + F.S_OFFSET, (1n << 64n) - 64n, true);
          v.setBigUint64(table(count - 1) + F.S_LENGTH, 128n, true);
        }, true),
      /past the end/,
    ],
    [
      "a lying length",
      () => corrupt((_, v) => v.setBigUint64(table(0) + F.S_LENGTH, BigInt(section(F.SECTION_CODES).length + 64), true), true),
      /length|overlaps|past the end/,
    ],
    [
      "overlapping sections",
      () => corrupt((_, v) => v.setBigUint64(table(1) + F.S_OFFSET, BigInt(section(F.SECTION_CODES).offset), true), true),
      /overlaps/,
    ],
    [
      "an unaligned offset",
      () => corrupt((_, v) => v.setBigUint64(table(1) + F.S_OFFSET, BigInt(section(F.SECTION_CODEBOOKS).offset + 8), true), true),
      /multiple of 64/,
    ],
    ["a section over the header", () => corrupt((_, v) => v.setBigUint64(table(0) + F.S_OFFSET, 0n, true), true), /overlaps the header/],
    ["an unknown section id", () => corrupt((_, v) => v.setUint32(table(count - 1) + F.S_ID, 9, true), true), /unknown section id/],
    [
      "a duplicated section id",
      () => corrupt((_, v) => v.setUint32(table(count - 1) + F.S_ID, F.SECTION_CODES, true), true),
      /appears twice/,
    ],
    [
      "no CODEBOOKS in an RVQ blob",
      () => corrupt((_, v) => v.setUint32(table(1) + F.S_ID, F.SECTION_METADATA, true), true),
      /METADATA|CODEBOOKS/,
    ],
  ];
  for (const [what, make, message] of cases) {
    it(`${what}`, () => {
      const bytes = make();
      const path = writeBlob(bytes);
      expect(tsRefuses(bytes), "the TypeScript reader refuses it too").toBe(true);
      for (const build of BUILDS) {
        for (const mode of MODES) {
          const r = refuse(build, path, mode);
          expect(r.exitCode, `${build} ${mode}: ${r.line}`).toBe(RUNTIME_EXIT.badBlob);
          expect(r.line).toMatch(message);
          expect(r.line).toContain("bad blob");
        }
      }
    });
  }

  /** The blob with its last section moved 1 MiB further: a long zero gap, valid by the reader rules. */
  function withLongGap(): Uint8Array {
    const last = blob.sections[count - 1];
    const shift = 1 << 20;
    const b = new Uint8Array(good.length + shift);
    b.set(good.subarray(0, last.offset), 0);
    b.set(good.subarray(last.offset), last.offset + shift);
    const v = new DataView(b.buffer);
    v.setBigUint64(table(count - 1) + F.S_OFFSET, BigInt(last.offset + shift), true);
    v.setUint32(F.H_HEADER_CRC, headerCrc(b, count), true);
    return b;
  }

  it("a 1 MiB zero gap before a section is accepted (and read through the 64 KiB chunk), a non-zero byte deep in it is refused", async () => {
    const long = withLongGap();
    expect(tsRefuses(long)).toBe(false);
    await checkParity(long, [0, 39, 7], "long gap");
    const dirty = new Uint8Array(long);
    dirty[blob.sections[count - 1].offset + 700_000] = 1;
    const path = writeBlob(dirty);
    for (const build of BUILDS) {
      for (const mode of MODES) expect(refuse(build, path, mode).line).toMatch(/padding before it is not zero/);
    }
  });

  it("a non-zero byte in the padding before a section (which no CRC covers)", () => {
    const bytes = corrupt((b) => (b[section(F.SECTION_CODES).offset - 1] = 0x55));
    const path = writeBlob(bytes);
    for (const build of BUILDS) expect(refuse(build, path).line).toMatch(/padding before it is not zero/);
  });
});

describe("corrupted v1.1 (gain-shape) blobs are refused with exit 4 in both builds and modes, and by info", () => {
  const R = 5;
  const good = randomBlob({ rows: 40, cols: 24, subvec: 8, levels: 2, group: 8, rowScales: R, seed: 31 });
  const blob = parseBlob(good, "good");
  const section = (id: number) => blob.sections.find((s) => s.id === id)!;
  const tableAt = (id: number) => F.SECTION_TABLE_OFFSET + blob.sections.indexOf(section(id)) * F.SECTION_ENTRY_BYTES;
  const rowBytes = blob.header.rowBytes;

  /** A copy with `edit` applied, then the CODES CRC and the header CRC recomputed: only the edit is wrong. */
  function edited(edit: (b: Uint8Array, v: DataView) => void): Uint8Array {
    const b = new Uint8Array(good);
    const v = new DataView(b.buffer);
    edit(b, v);
    const codes = section(F.SECTION_CODES);
    v.setUint32(tableAt(F.SECTION_CODES) + F.S_CRC, crc32(b.subarray(codes.offset, codes.offset + codes.length)), true);
    v.setUint32(F.H_HEADER_CRC, headerCrc(b, blob.sections.length), true);
    return b;
  }

  /** The good blob's CODES and CODEBOOKS with a ROW_SCALES section of `scaleBytes` (any length). */
  function withScaleSection(scaleBytes: Uint8Array): Uint8Array {
    const codes = good.subarray(section(F.SECTION_CODES).offset, section(F.SECTION_CODES).offset + section(F.SECTION_CODES).length);
    const codebooks = good.subarray(
      section(F.SECTION_CODEBOOKS).offset,
      section(F.SECTION_CODEBOOKS).offset + section(F.SECTION_CODEBOOKS).length,
    );
    return assembleBlob(blob.header, [
      { id: F.SECTION_CODES, bytes: codes },
      { id: F.SECTION_CODEBOOKS, bytes: codebooks },
      { id: F.SECTION_ROW_SCALES, bytes: scaleBytes },
    ]);
  }

  function scalarWithRowScales(): Uint8Array {
    const scalar = randomBlob({ method: "int4", rows: 10, cols: 16, group: 8, seed: 3 });
    const s = parseBlob(scalar, "int4");
    const codes = s.sections.find((x) => x.id === F.SECTION_CODES)!;
    return assembleBlob({ ...s.header, versionMinor: 1 }, [
      { id: F.SECTION_CODES, bytes: scalar.subarray(codes.offset, codes.offset + codes.length) },
      { id: F.SECTION_ROW_SCALES, bytes: new Uint8Array([0, 0x3c]) },
    ]);
  }

  function rowScalesWithoutIndexByte(): Uint8Array {
    const header = deriveHeader({ ...blob.header, rowScaled: false });
    const codes = new Uint8Array(header.rows * header.rowBytes);
    for (let t = 0; t < header.rows; t++)
      codes.set(
        good.subarray(section(F.SECTION_CODES).offset + t * rowBytes + 1, section(F.SECTION_CODES).offset + (t + 1) * rowBytes),
        t * header.rowBytes,
      );
    const codebooks = good.subarray(
      section(F.SECTION_CODEBOOKS).offset,
      section(F.SECTION_CODEBOOKS).offset + section(F.SECTION_CODEBOOKS).length,
    );
    return assembleBlob({ ...header, versionMinor: 1 }, [
      { id: F.SECTION_CODES, bytes: codes },
      { id: F.SECTION_CODEBOOKS, bytes: codebooks },
      { id: F.SECTION_ROW_SCALES, bytes: new Uint8Array(2 * R) },
    ]);
  }

  const codesAt = section(F.SECTION_CODES).offset;
  const cases: [string, () => Uint8Array, RegExp][] = [
    [
      "a row-scale index = R in the last record (one no lookup asks for)",
      () => edited((b) => (b[codesAt + 39 * rowBytes] = R)),
      /token 39 has row-scale index 5 but the ROW_SCALES section holds 5 scales/,
    ],
    ["a row-scale index of 255 in the looked-up record", () => edited((b) => (b[codesAt] = 255)), /token 0 has row-scale index 255/],
    [
      "an index past R = 1",
      () => withScaleSection(new Uint8Array([0x00, 0x3c])),
      /row-scale index [1-4] but the ROW_SCALES section holds 1 scale \[exit 4\]/,
    ],
    [
      "a flipped byte in ROW_SCALES",
      () => edited((b) => (b[section(F.SECTION_ROW_SCALES).offset + 3] ^= 0x40)),
      /ROW_SCALES.*CRC mismatch/,
    ],
    ["ROW_SCALES in a scalar (int4) blob", scalarWithRowScales, /ROW_SCALES\): a scalar-method blob has no row scales/],
    [
      "an odd ROW_SCALES length (3 bytes)",
      () => withScaleSection(new Uint8Array([0, 0x3c, 0])),
      /ROW_SCALES\): length 3, expected an even number/,
    ],
    ["an empty ROW_SCALES section", () => withScaleSection(new Uint8Array(0)), /ROW_SCALES\): length 0, expected/],
    ["257 row scales (514 bytes)", () => withScaleSection(new Uint8Array(514)), /ROW_SCALES\): length 514, expected/],
    [
      "version_minor 0 with a ROW_SCALES section",
      () => edited((_, v) => v.setUint16(F.H_VERSION_MINOR, 0, true)),
      /version_minor is 0, expected at least 1/,
    ],
    [
      "a ROW_SCALES section but records without the index byte (row_bytes of 1.0)",
      rowScalesWithoutIndexByte,
      /row_bytes is 3 but the other fields give 4/,
    ],
    [
      "a second ROW_SCALES section",
      () => edited((_, v) => v.setUint32(tableAt(F.SECTION_METADATA) + F.S_ID, F.SECTION_ROW_SCALES, true)),
      /appears twice/,
    ],
  ];
  for (const [what, make, message] of cases) {
    it(what, () => {
      const bytes = make();
      const path = writeBlob(bytes);
      expect(tsRefuses(bytes), "the TypeScript reader refuses it too").toBe(true);
      for (const build of BUILDS) {
        for (const mode of MODES) {
          const r = refuse(build, path, mode);
          expect(r.exitCode, `${build} ${mode}: ${r.line}`).toBe(RUNTIME_EXIT.badBlob);
          expect(r.line).toMatch(message);
          expect(r.line).toContain("bad blob");
        }
        const info = runGeneric(build, ["info", guestPath(path)]);
        expect(info.exitCode, `${build} info: ${info.line}`).toBe(RUNTIME_EXIT.badBlob);
        expect(info.line).toMatch(message);
      }
    });
  }

  it("the good blob itself is served", async () => {
    expect(tsRefuses(good)).toBe(false);
    await checkParity(good, allTokens(40), "good v1.1");
  });

  it("an index checked across the streaming CRC chunks: bad indices just after and just before a 64 KiB boundary, and in the last record", async () => {
    // 13-byte records (S = 3, L = 8: 12 bytes of nibbles + the index): 65536 is not a multiple of 13.
    const big = randomBlob({ rows: 20000, cols: 24, subvec: 8, levels: 8, group: 64, rowScales: 9, seed: 41 });
    const b = parseBlob(big, "big");
    expect(b.header.rowBytes).toBe(13);
    await checkParity(big, sampleTokens(20000, 50, 3), "big v1.1");
    const codes = b.sections.find((s) => s.id === F.SECTION_CODES)!;
    const entry = F.SECTION_TABLE_OFFSET + b.sections.indexOf(codes) * F.SECTION_ENTRY_BYTES;
    for (const t of [Math.ceil(65536 / 13), Math.floor(65536 / 13), 2 * Math.ceil(65536 / 13), 19999]) {
      const bad = new Uint8Array(big);
      const v = new DataView(bad.buffer);
      bad[codes.offset + t * 13] = 9 + (t % 200);
      v.setUint32(entry + F.S_CRC, crc32(bad.subarray(codes.offset, codes.offset + codes.length)), true);
      v.setUint32(F.H_HEADER_CRC, headerCrc(bad, b.sections.length), true);
      expect(tsRefuses(bad)).toBe(true);
      const path = writeBlob(bad);
      for (const build of BUILDS) {
        for (const mode of MODES) {
          const r = refuse(build, path, mode);
          expect(r.exitCode, `${build} ${mode} token ${t}: ${r.line}`).toBe(RUNTIME_EXIT.badBlob);
          expect(r.line).toContain(`token ${t} has row-scale index ${9 + (t % 200)} but the ROW_SCALES section holds 9 scales`);
        }
      }
    }
  });

  it("a bad index is reported only once the CRCs pass: a flipped CODES byte elsewhere is a CRC mismatch", () => {
    const bytes = edited((b) => (b[codesAt + 7 * rowBytes] = R));
    bytes[codesAt + 2] ^= 1; // after resealing: CODES no longer matches its CRC
    const path = writeBlob(bytes);
    for (const build of BUILDS) expect(refuse(build, path).line).toMatch(/CODES.*CRC mismatch/);
  });
});

describe("bad requests", () => {
  const bytes = randomBlob({ rows: 10, cols: 16, seed: 2 });
  const path = writeBlob(bytes, "req.carvq");
  const g = guestPath(path);
  const cases: [string, string[], number, RegExp][] = [
    ["no command", [], RUNTIME_EXIT.usage, /missing command/],
    ["an unknown command", ["decode", g], RUNTIME_EXIT.usage, /unknown command/],
    ["lookup without a token", ["lookup", g], RUNTIME_EXIT.usage, /at least one token/],
    ["lookup without a blob", ["lookup"], RUNTIME_EXIT.usage, /missing <blob>/],
    ["a token that is not a number", ["lookup", g, "1", "x7"], RUNTIME_EXIT.usage, /not a whole number/],
    ["a negative token", ["lookup", g, "-1"], RUNTIME_EXIT.usage, /unknown option|not a whole number/],
    ["a bad --mode", ["lookup", "--mode", "fast", g, "1"], RUNTIME_EXIT.usage, /--mode must be/],
    ["an unknown option", ["lookup", "--fast", g, "1"], RUNTIME_EXIT.usage, /unknown option/],
    [
      "a token out of range",
      ["lookup", g, "3", "10"],
      RUNTIME_EXIT.tokenRange,
      /token 10 is out of range: the blob has 10 tokens \(0 to 9\)/,
    ],
    ["a token of 2^32 - 1", ["lookup", g, "4294967295"], RUNTIME_EXIT.tokenRange, /out of range/],
    ["a token past 2^32", ["lookup", g, "4294967296"], RUNTIME_EXIT.usage, /not a whole number/],
    ["a missing file", ["lookup", "/blob/none.carvq", "1"], RUNTIME_EXIT.io, /no such file/],
    ["a path outside every preopened folder", ["lookup", "/etc/passwd", "1"], RUNTIME_EXIT.io, /no preopened directory/],
    ["a directory", ["lookup", "/blob/sub", "1"], RUNTIME_EXIT.io, /not a regular file|is a directory/],
  ];
  mkdirSync(join(dir, "sub"), { recursive: true });
  for (const [what, args, code, message] of cases) {
    it(`${what} exits ${code}`, () => {
      for (const build of BUILDS) {
        const r = runGeneric(build, args);
        expect(r.exitCode, r.line).toBe(code);
        expect(r.line).toMatch(message);
      }
    });
  }

  it("--help and --version exit 0", () => {
    for (const build of BUILDS) {
      const help = runGeneric(build, ["--help"]);
      expect(help.exitCode).toBe(0);
      expect(new TextDecoder().decode(help.stdout)).toMatch(/^usage: carvq-rt lookup/);
      const version = runGeneric(build, ["--version"]);
      expect(new TextDecoder().decode(version.stdout)).toContain(`${build} build`);
    }
  });

  it("the Node host turns a refusal into a CarvqError with the runtime's message and exit code", async () => {
    const rt = await openRuntime({ blob: path });
    let error: unknown;
    try {
      rt.lookup([1, 99]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CarvqError);
    expect((error as CarvqError).exitCode).toBe(RUNTIME_EXIT.tokenRange);
    expect((error as CarvqError).message).toBe(`${path}: token 99 is out of range: the blob has 10 tokens (0 to 9)`);
  });
});

describe("under jco (the WASI component, ~1 s per run)", () => {
  it("returns the same bits as the reference decoder and reports the exit code of a refusal", async () => {
    const { bytes } = await compressMatrix(randomMatrix(21, 19, 4), { h: 8, levels: 2, group: 6, iters: 2 });
    const path = writeBlob(bytes);
    const ids = [...allTokens(21)];
    const rt = await openJcoRuntime({ blob: path, mode: "streaming" });
    expectSameBits(await rt.lookup(ids), decodeTokens(parseBlob(bytes, "jco"), ids), "jco streaming");
    await expect(rt.lookup([0, 21])).rejects.toMatchObject({ exitCode: RUNTIME_EXIT.tokenRange });
    // Resident with a blob of several pages: the preview1 adapter keeps its state in a page it
    // grows from the module's memory, which the arena must step over.
    const big = randomBlob({ rows: 3000, cols: 64, group: 16, seed: 22 });
    const bigPath = writeBlob(big);
    const resident = await openJcoRuntime({ blob: bigPath, mode: "resident" });
    expectSameBits(await resident.lookup([2999, 0, 1234]), decodeTokens(parseBlob(big, "big"), [2999, 0, 1234]), "jco resident");
  });

  it("serves a gain-shape (v1.1) blob bit-identically", async () => {
    const { bytes } = await compressMatrix(randomMatrix(21, 19, 5), { h: 8, levels: 2, group: 6, iters: 2, rowScaleCount: 4 });
    const path = writeBlob(bytes);
    const ids = [...allTokens(21)];
    const rt = await openJcoRuntime({ blob: path, mode: "streaming" });
    expectSameBits(await rt.lookup(ids), decodeTokens(parseBlob(bytes, "jco v1.1"), ids), "jco gain-shape streaming");
  });
});
