// The corrective adaptor (blob v1.2) in the WASM runtime: parity with the TypeScript reference
// decoder (tools/decoder.ts) bit for bit (FORMAT.md fixes the order of every sum), in both builds and both
// modes, with the MLP held whole or streamed in tiles; the memory budget of the device targets in
// streaming mode with an adaptor; refusals (exit 6 when not even one tile fits, exit 4 for a
// corrupted adaptor section).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as F from "../assembly/format.ts";
import { guestPath, RUNTIME_EXIT, type AdaptorTuning, type BuildName, type ModeName } from "../host/common.ts";
import { openJcoRuntime } from "../host/jco.ts";
import { runMinimalWasi } from "../host/minimal-wasi.ts";
import { bitDifferences, openRuntime, runWasiCommand, wasmPath } from "../host/node.ts";
import { attachAdaptor, randomBlob, randomStoredAdaptor, type RandomAdaptorOptions, type RandomBlobOptions } from "../tools/blob/random.ts";
import type { AdaptorPrecision } from "../tools/adaptor/model.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "../tools/blob/adaptor.ts";
import { deriveHeader } from "../tools/blob/header.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { assembleBlob, headerCrc } from "../tools/blob/writer.ts";
import { compressMatrix, type CompressOptions } from "../tools/compress.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { CarvqError } from "../tools/errors.ts";
import { createRandom } from "../tools/random.ts";
import { randomMatrix } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-adaptor-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function writeBlob(bytes: Uint8Array): string {
  const path = join(dir, `a${fileCount++}.carvq`);
  writeFileSync(path, bytes);
  return path;
}

/** Parity: the runtime's rows are the reference decoder's, bit for bit. */
function expectSameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(bitDifferences(got, want), `${what}: values whose bits differ from the reference`).toBe(0);
}

function allTokens(rows: number): number[] {
  return [...Array.from({ length: rows }, (_, t) => t), rows - 1, 0, Math.floor(rows / 2)];
}

function sample(rows: number, count: number, seed: number): number[] {
  const random = createRandom(seed);
  return [0, rows - 1, ...Array.from({ length: count }, () => Math.floor(random() * rows))];
}

const BUILDS: BuildName[] = ["simd", "scalar"];
const MODES: ModeName[] = ["resident", "streaming"];

/** A compressed blob (realistic magnitudes) with a random adaptor of these widths attached. */
async function adaptedBlob(
  rows: number,
  cols: number,
  compress: Partial<CompressOptions>,
  adaptor: RandomAdaptorOptions,
): Promise<Uint8Array> {
  const { bytes } = await compressMatrix(randomMatrix(rows, cols, rows * 7 + cols), { seed: 1, iters: 2, ...compress });
  return attachAdaptor(bytes, randomStoredAdaptor(rows, { seed: rows + cols, ...adaptor }));
}

/**
 * The blob's rows are gamma(t) alone: its codebooks are all zero, so the runtime's rows are
 * compared with the adaptor's output itself (no RVQ part to hide a difference behind).
 */
function adaptorOnlyBlob(rows: number, adaptor: RandomAdaptorOptions, shape: Partial<RandomBlobOptions> = {}): Uint8Array {
  const cols = adaptor.widths[adaptor.widths.length - 1];
  const plain = randomBlob({ rows, cols, subvec: 8, levels: 2, group: 1024, seed: rows, ...shape });
  const parsed = parseBlob(plain, "plain");
  const codes = parsed.sections.find((s) => s.id === F.SECTION_CODES)!;
  const codebooks = parsed.sections.find((s) => s.id === F.SECTION_CODEBOOKS)!;
  const stored = randomStoredAdaptor(rows, { seed: rows * 3 + cols, ...adaptor });
  return assembleBlob(deriveHeader({ ...parsed.header, adapted: true }), [
    { id: F.SECTION_CODES, bytes: plain.subarray(codes.offset, codes.offset + codes.length) },
    { id: F.SECTION_CODEBOOKS, bytes: new Uint8Array(codebooks.length) },
    { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(stored) },
    { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(stored) },
  ]);
}

/** Both generic builds, both modes (streaming also with small tiles and batches), against decodeTokens. */
async function checkParity(bytes: Uint8Array, ids: number[], what: string, tunings: AdaptorTuning[] = []): Promise<void> {
  const path = writeBlob(bytes);
  const blob = parseBlob(bytes, what);
  expect(blob.adaptor, "the blob has an adaptor").not.toBeNull();
  const want = decodeTokens(blob, ids);
  for (const build of BUILDS) {
    for (const mode of MODES) {
      for (const tuning of [{}, ...(mode === "streaming" ? tunings : [])]) {
        const rt = await openRuntime({ blob: path, build, mode, ...tuning });
        expectSameBits(rt.lookup(ids), want, `${what}, ${build}, ${mode} ${JSON.stringify(tuning)}`);
        rt.close();
      }
    }
  }
}

/** Bytes of layer k of a stored adaptor in ADAPTOR_MLP (weights, scales, bias, gamma, beta). */
function layerBytes(bytes: Uint8Array): number[] {
  const a = parseBlob(bytes, "x").adaptor!;
  const int8 = a.layers[0].weights.scales !== null;
  return a.layers.map(
    (l, k) =>
      l.outputs * l.inputs * (int8 ? 1 : 2) + (int8 ? 2 * l.outputs : 0) + 2 * l.outputs + (k + 1 < a.layers.length ? 4 * l.outputs : 0),
  );
}

/**
 * Streaming variants besides the default (the whole MLP held): one output channel per tile
 * (--adaptor-tile 1 is raised to the smallest tile), three channels and a bit (tiles that do not
 * divide a layer, gamma/beta in chunks) with batches of 3, one whole layer at a time, batch 1.
 */
function tilings(bytes: Uint8Array): AdaptorTuning[] {
  const a = parseBlob(bytes, "x").adaptor!;
  const int8 = a.layers[0].weights.scales !== null;
  const channel = Math.max(...a.layers.map((l) => l.inputs * (int8 ? 1 : 2) + (int8 ? 4 : 2)));
  const layers = layerBytes(bytes);
  const variants: AdaptorTuning[] = [{ adaptorTile: 1 }, { adaptorTile: 3 * channel + 5, adaptorBatch: 3 }, { adaptorBatch: 1 }];
  if (layers.length > 1) variants.push({ adaptorTile: Math.max(...layers) });
  return variants;
}

describe("parity with the TypeScript decoder: bit for bit", () => {
  const cases: [string, () => Uint8Array | Promise<Uint8Array>, number][] = [
    [
      "int8, 16 -> 40 -> 24 -> 37 (n not a multiple of 4 or 8), row layout",
      () => adaptedBlob(45, 37, { h: 8, levels: 2, group: 16 }, { widths: [16, 40, 24, 37], precision: "int8" }),
      45,
    ],
    [
      "fp16, 16 -> 40 -> 24 -> 37, column-block layout, row scales",
      () =>
        adaptedBlob(
          45,
          37,
          { h: 8, levels: 2, group: 7, layout: "col", rowScaleCount: 8 },
          { widths: [16, 40, 24, 37], precision: "fp16" },
        ),
      45,
    ],
    [
      "m0 = 1, one layer (1 -> 23), int8",
      () => adaptedBlob(30, 23, { h: 6, levels: 2, group: 8 }, { widths: [1, 23], precision: "int8" }),
      30,
    ],
    [
      "m0 = 1, one layer (1 -> 23), fp16 with an int8 table, row scales",
      () =>
        adaptedBlob(
          30,
          23,
          { h: 6, levels: 2, group: 8, rowScaleCount: 4 },
          { widths: [1, 23], precision: "fp16", tablePrecision: "int8" },
        ),
      30,
    ],
    [
      "four layers 5 -> 13 -> 7 -> 33 -> 21, int8 MLP with an fp16 table, row scales",
      () =>
        adaptedBlob(
          40,
          21,
          { h: 4, levels: 3, group: 9, rowScaleCount: 16 },
          { widths: [5, 13, 7, 33, 21], precision: "int8", tablePrecision: "fp16" },
        ),
      40,
    ],
    [
      "four layers 3 -> 17 -> 50 -> 9 -> 48, fp16, column-block",
      () => adaptedBlob(33, 48, { h: 16, levels: 2, group: 4, layout: "col" }, { widths: [3, 17, 50, 9, 48], precision: "fp16" }),
      33,
    ],
    [
      "V = 1, 16 -> 64 -> 20, int8",
      () => adaptedBlob(1, 20, { h: 4, levels: 2, group: 64 }, { widths: [16, 64, 20], precision: "int8" }),
      1,
    ],
    [
      "adaptor only (zero codebooks), int8, 16 -> 96 -> 80 -> 64 (SIMD steps of 16 and 8)",
      () => adaptorOnlyBlob(50, { widths: [16, 96, 80, 64], precision: "int8" }),
      50,
    ],
    [
      "adaptor only (zero codebooks), fp16, 19 -> 131 -> 67 -> 30 (SIMD tails)",
      () => adaptorOnlyBlob(50, { widths: [19, 131, 67, 30], precision: "fp16" }),
      50,
    ],
    [
      "adaptor only, int8, the paper's hidden sizes 16 -> 384 -> 512 -> 100",
      () => adaptorOnlyBlob(64, { widths: [16, 384, 512, 100], precision: "int8" }),
      64,
    ],
    [
      "adaptor only, fp16, the paper's hidden sizes 16 -> 384 -> 512 -> 100",
      () => adaptorOnlyBlob(64, { widths: [16, 384, 512, 100], precision: "fp16" }),
      64,
    ],
  ];
  for (const [what, make, rows] of cases) {
    it(`${what}: both builds, both modes, whole and tiled`, async () => {
      const bytes = await make();
      await checkParity(bytes, allTokens(rows), what, tilings(bytes));
    });
  }
});

describe("streaming reads: the MLP once per run when it fits, else once per batch of tokens", () => {
  const bytes = adaptorOnlyBlob(64, { widths: [16, 96, 80, 64], precision: "int8" });
  const module = new WebAssembly.Module(readFileSync(wasmPath({ target: "mcu-128k" })));
  const preads = (ids: number[], tuning: string[]) => {
    const run = runMinimalWasi(module, {
      args: ["lookup", ...tuning, "/flash/m.carvq", ...ids.map(String)],
      preopens: [{ name: "/flash", files: { "m.carvq": bytes } }],
    });
    expect(run.stderr).toBe("");
    expect(run.peakMemoryBytes).toBeLessThanOrEqual(131072);
    return run.calls.fd_pread;
  };
  const few = [1, 2];
  const many = [1, 2, ...Array.from({ length: 30 }, (_, i) => (i * 7) % 64)];
  it("cached: each further token costs its record, its table row and at most its codebook groups", () => {
    expect(preads(many, []) - preads(few, [])).toBeLessThanOrEqual(30 * 3);
  });
  it("tiled, batch 1: every token streams every layer again; batched: once per batch", () => {
    const tile = ["--adaptor-tile", "4096"];
    const single = preads(many, [...tile, "--adaptor-batch", "1"]) - preads(few, [...tile, "--adaptor-batch", "1"]);
    const batched = preads(many, tile) - preads(few, tile);
    expect(single).toBeGreaterThan(30 * 3 * 2);
    expect(batched).toBeLessThan(single / 4);
  });
});

describe("the memory budget in streaming mode with an adaptor", () => {
  it("rpi-zero2w (4 MiB): the paper's adaptor 16 -> 384 -> 512 -> 2048 (int8, ~1.3 MB) on a 128256 x 2048 blob: peak <= budget, whole MLP and tiled", async () => {
    const bytes = adaptorOnlyBlob(128256, { widths: [16, 384, 512, 2048], precision: "int8" });
    const path = writeBlob(bytes);
    const blob = parseBlob(bytes, "paper");
    const ids = sample(128256, 40, 5);
    const want = decodeTokens(blob, ids);
    const peaks: Record<string, number> = {};
    for (const tuning of [{}, { adaptorTile: 65536 }, { adaptorTile: 65536, adaptorBatch: 1 }] as AdaptorTuning[]) {
      const rt = await openRuntime({ blob: path, target: "rpi-zero2w", ...tuning });
      expectSameBits(rt.lookup(ids), want, `rpi-zero2w paper ${JSON.stringify(tuning)}`);
      expect(rt.peakMemoryBytes).toBeLessThanOrEqual(4 * 2 ** 20);
      peaks[JSON.stringify(tuning)] = rt.peakMemoryBytes;
    }
    const info = (await openRuntime({ blob: path, target: "rpi-zero2w" })).info();
    expect(info.adaptor).toMatchObject({
      tablePrecision: "int8",
      mlpPrecision: "int8",
      m0: 16,
      layers: 3,
      widths: [16, 384, 512, 2048],
      tableRowBytes: 18,
      tableBytes: 8 + 128256 * 18,
    });
    expect(info.adaptor!.mlpBytes).toBeGreaterThan(1.25e6);
    expect(info.runtime.streamingFits).toBe(true);
    expect(peaks["{}"], "the whole MLP is held").toBeGreaterThan(info.adaptor!.mlpBytes);
    expect(peaks['{"adaptorTile":65536}'], "tiles of 64 KiB").toBeLessThan(info.adaptor!.mlpBytes);
    process.stdout.write(`rpi-zero2w paper adaptor peaks: ${JSON.stringify(peaks)}\n`);
  });

  it("mcu-128k (128 KiB): a narrow adaptor 16 -> 64 -> 64 -> 288 on a 32000 x 288 blob, int8 and fp16, through 100-byte short reads", async () => {
    for (const precision of ["int8", "fp16"] as AdaptorPrecision[]) {
      const bytes = adaptorOnlyBlob(32000, { widths: [16, 64, 64, 288], precision });
      const path = writeBlob(bytes);
      const ids = sample(32000, 60, 6);
      const want = decodeTokens(parseBlob(bytes, "narrow"), ids);
      for (const tuning of [{}, { adaptorTile: 1024 }] as AdaptorTuning[]) {
        const rt = await openRuntime({ blob: path, target: "mcu-128k", ...tuning });
        expectSameBits(rt.lookup(ids), want, `mcu-128k ${precision} ${JSON.stringify(tuning)}`);
        expect(rt.peakMemoryBytes).toBeLessThanOrEqual(131072);
      }
      const module = new WebAssembly.Module(readFileSync(wasmPath({ target: "mcu-128k" })));
      const run = runMinimalWasi(module, {
        args: ["lookup", "/flash/m.carvq", ...ids.map(String)],
        preopens: [{ name: "/flash", files: { "m.carvq": bytes } }],
        maxReadBytes: 100,
      });
      expect(run.exitCode, run.stderr).toBe(0);
      expectSameBits(new Float32Array(run.stdout.slice().buffer), want, `mcu-128k ${precision}, minimal host, short reads`);
      expect(run.peakMemoryBytes).toBeLessThanOrEqual(131072);
    }
  });

  it("mcu-128k: a 4096-wide hidden layer (16 -> 4096 -> 288, ~1.2 MB int8) streams in tiles inside 128 KiB; esp32s3-wamr and rpi-zero2w (SIMD, 40 KB tiles) too", async () => {
    const bytes = adaptorOnlyBlob(200, { widths: [16, 4096, 288], precision: "int8" });
    const path = writeBlob(bytes);
    const ids = sample(200, 6, 7);
    const want = decodeTokens(parseBlob(bytes, "wide"), ids);
    for (const target of ["mcu-128k", "esp32s3-wamr", "rpi-zero2w"]) {
      const rt = await openRuntime({ blob: path, target, adaptorTile: target === "rpi-zero2w" ? 40000 : undefined });
      expectSameBits(rt.lookup(ids), want, `${target} 4096-wide`);
      expect(rt.peakMemoryBytes).toBeLessThanOrEqual(rt.target!.memoryBudgetBytes);
    }
  });
});

describe("refusals", () => {
  it("exit 6 when not even one tile fits: the adaptor's minimum counts against the budget (mcu-128k, a long command line)", async () => {
    // Activations of a 4096-wide layer: 2 x 16 KiB, plus a 4 KiB tile; the MLP itself is ~70 KB.
    const adapted = adaptorOnlyBlob(10, { widths: [16, 4096, 1], precision: "int8" });
    const plain = randomBlob({ rows: 10, cols: 1, subvec: 4, levels: 2, group: 16, seed: 10 });
    const paths = { adapted: writeBlob(adapted), plain: writeBlob(plain) };
    const need = async (path: string) => (await openRuntime({ blob: path, target: "mcu-128k" })).info().runtime.streamingBytes;
    const adaptedNeed = await need(paths.adapted);
    const plainNeed = await need(paths.plain);
    expect(adaptedNeed - plainNeed).toBeGreaterThan(32 * 1024);
    // A command line that leaves room for the plain blob's buffers but not for the adaptor's.
    const argBytes = 131072 - adaptedNeed + 4096;
    expect(plainNeed + argBytes).toBeLessThan(131072 - 4096);
    const ids = Array.from({ length: Math.ceil(argBytes / 6) }, (_, i) => i % 10); // "d\0" + a 4-byte pointer each
    for (const [name, path] of Object.entries(paths)) {
      const run = runWasiCommand(wasmPath({ target: "mcu-128k" }), ["lookup", guestPath(path), ...ids.map(String)], { "/blob": dir });
      if (name === "plain") {
        expect(run.exitCode, run.stderr).toBe(0);
        continue;
      }
      expect(run.exitCode, run.stderr).toBe(RUNTIME_EXIT.budget);
      expect(run.stderr).toMatch(/budget exceeded: streaming mode with the adaptor .* needs \d+ more bytes/);
      expect(run.stdout.byteLength).toBe(0);
    }
  });

  it("no adaptor the format allows is refused on mcu-128k for one token: the largest minimum (m0 = 4096 fp16, a 4096-wide fp16 layer, n = 4096, 16 KiB records) is served inside 128 KiB", async () => {
    const bytes = adaptorOnlyBlob(2, { widths: [4096, 4096], precision: "fp16" }, { subvec: 1, levels: 8 });
    const path = writeBlob(bytes);
    const rt = await openRuntime({ blob: path, target: "mcu-128k" });
    const info = rt.info();
    // Every other adaptor needs at most this: the record of a 4096-wide fp16 table, two 16 KiB
    // activation buffers, the statistics, and one 8 KiB output channel.
    expect(info.adaptor!.streamingBytes).toBe(8192 + 2 * 4096 * 4 + 16 + (8192 + 2 + 14));
    expect(info.runtime.streamingFits).toBe(true);
    expectSameBits(rt.lookup([1, 0]), decodeTokens(parseBlob(bytes, "largest"), [1, 0]), "mcu-128k largest adaptor");
    expect(rt.peakMemoryBytes).toBeLessThanOrEqual(131072);
  });
});

describe("info reports the adaptor", () => {
  it("precisions, widths, section sizes and the memory it adds; formatVersion 1.2", async () => {
    const bytes = await adaptedBlob(
      40,
      24,
      { h: 8, levels: 2, group: 8 },
      { widths: [8, 16, 24], precision: "fp16", tablePrecision: "int8" },
    );
    const path = writeBlob(bytes);
    const blob = parseBlob(bytes, "x");
    const length = (id: number) => blob.sections.find((s) => s.id === id)!.length;
    for (const build of BUILDS) {
      const info = (await openRuntime({ blob: path, build })).info();
      expect(info).toMatchObject({ formatVersion: "1.2", rowScales: 0 });
      expect(info.sections.map((s) => s.name)).toEqual(["CODES", "CODEBOOKS", "ADAPTOR_TABLE", "ADAPTOR_MLP", "METADATA"]);
      expect(info.adaptor).toEqual({
        tablePrecision: "int8",
        mlpPrecision: "fp16",
        m0: 8,
        layers: 2,
        widths: [8, 16, 24],
        tableBytes: length(F.SECTION_ADAPTOR_TABLE),
        tableRowBytes: 10,
        mlpBytes: length(F.SECTION_ADAPTOR_MLP),
        residentBytes: 2 * 64 + 16,
        streamingBytes: 16 + 2 * 64 + 16 + 48,
        minTileBytes: 2 * 16 + 2,
      });
      const plain = (
        await openRuntime({ blob: writeBlob(randomBlob({ rows: 40, cols: 24, subvec: 8, levels: 2, group: 8 })), build })
      ).info();
      expect(plain.adaptor).toBeNull();
      expect(info.runtime.streamingBytes - plain.runtime.streamingBytes).toBe(info.adaptor!.streamingBytes);
    }
  });
});

// ---- Corrupted adaptor sections ----

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

const corruptionBase = await adaptedBlob(40, 24, { h: 8, levels: 2, group: 8 }, { widths: [8, 16, 24], precision: "int8" });

describe("corrupted adaptor sections are refused with exit 4 in both builds and modes, and by info", () => {
  const good = corruptionBase;
  const blob = parseBlob(good, "good");
  const header = blob.header;
  const original = (id: number) => {
    const s = blob.sections.find((x) => x.id === id)!;
    return good.slice(s.offset, s.offset + s.length);
  };
  const ORDER = [F.SECTION_CODES, F.SECTION_CODEBOOKS, F.SECTION_ADAPTOR_TABLE, F.SECTION_ADAPTOR_MLP, F.SECTION_METADATA];

  /** The good blob rebuilt (CRCs recomputed) with its sections edited: only the edit is wrong. */
  function rebuilt(edit: (sections: Map<number, Uint8Array>) => void, head = header, order = ORDER): Uint8Array {
    const sections = new Map(ORDER.map((id) => [id, original(id)]));
    edit(sections);
    return assembleBlob(
      head,
      order.filter((id) => sections.has(id)).map((id) => ({ id, bytes: sections.get(id)! })),
    );
  }
  const u32 = (bytes: Uint8Array, at: number, value: number) =>
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, value, true);
  const mlp = (edit: (b: Uint8Array) => Uint8Array | void) =>
    rebuilt((s) => s.set(F.SECTION_ADAPTOR_MLP, edit(s.get(F.SECTION_ADAPTOR_MLP)!) ?? s.get(F.SECTION_ADAPTOR_MLP)!));
  const table = (edit: (b: Uint8Array) => Uint8Array | void) =>
    rebuilt((s) => s.set(F.SECTION_ADAPTOR_TABLE, edit(s.get(F.SECTION_ADAPTOR_TABLE)!) ?? s.get(F.SECTION_ADAPTOR_TABLE)!));
  const flipped = (id: number, at: (length: number) => number) => {
    const b = new Uint8Array(good);
    const s = blob.sections.find((x) => x.id === id)!;
    b[s.offset + at(s.length)] ^= 0x08;
    return b;
  };
  const scalarWithAdaptor = () => {
    const scalar = randomBlob({ method: "int4", rows: 40, cols: 24, group: 8, seed: 3 });
    const s = parseBlob(scalar, "int4");
    const codes = s.sections.find((x) => x.id === F.SECTION_CODES)!;
    return assembleBlob({ ...s.header, versionMinor: 2 }, [
      { id: F.SECTION_CODES, bytes: scalar.subarray(codes.offset, codes.offset + codes.length) },
      { id: F.SECTION_ADAPTOR_TABLE, bytes: original(F.SECTION_ADAPTOR_TABLE) },
      { id: F.SECTION_ADAPTOR_MLP, bytes: original(F.SECTION_ADAPTOR_MLP) },
    ]);
  };

  const cases: [string, () => Uint8Array, RegExp][] = [
    ["a flipped byte in ADAPTOR_TABLE", () => flipped(F.SECTION_ADAPTOR_TABLE, (n) => n - 3), /ADAPTOR_TABLE\): CRC mismatch/],
    ["a flipped byte in ADAPTOR_MLP's weights", () => flipped(F.SECTION_ADAPTOR_MLP, (n) => n >> 1), /ADAPTOR_MLP\): CRC mismatch/],
    // The widths are read (to plan memory) before the CRC pass, but a problem is reported only once
    // the CRCs match: a corrupted width is a CRC mismatch, as the TypeScript reader says.
    ["a flipped byte in ADAPTOR_MLP's widths", () => flipped(F.SECTION_ADAPTOR_MLP, () => 13), /ADAPTOR_MLP\): CRC mismatch/],
    ["a flipped byte in ADAPTOR_TABLE's m0", () => flipped(F.SECTION_ADAPTOR_TABLE, () => 4), /ADAPTOR_TABLE\): CRC mismatch/],
    ["MLP precision 2", () => mlp((b) => u32(b, 0, 2)), /ADAPTOR_MLP\): precision is 2, expected 0 \(int8\) or 1 \(fp16\)/],
    ["table precision 3", () => table((b) => u32(b, 0, 3)), /ADAPTOR_TABLE\): precision is 3/],
    ["layer_count 0", () => mlp((b) => u32(b, 4, 0)), /layer_count is 0, expected 1 to 4/],
    ["layer_count 5", () => mlp((b) => u32(b, 4, 5)), /layer_count is 5, expected 1 to 4/],
    [
      "a layer_count that disagrees with the layers (1 instead of 2)",
      () => mlp((b) => u32(b, 4, 1)),
      /ADAPTOR_MLP\): (output width is 16|length)/,
    ],
    ["a hidden width of 0", () => mlp((b) => u32(b, 12, 0)), /width 1 is 0, expected 1 to 4096/],
    ["a hidden width of 4097", () => mlp((b) => u32(b, 12, 4097)), /width 1 is 4097, expected 1 to 4096/],
    ["an output width that is not n", () => mlp((b) => u32(b, 16, 25)), /output width is 25, expected the table's 24 columns/],
    ["an MLP one byte short", () => mlp((b) => b.subarray(0, b.length - 1)), /ADAPTOR_MLP\): length \d+, expected \d+ for widths 8-16-24/],
    ["an MLP one byte long", () => mlp((b) => new Uint8Array([...b, 0])), /ADAPTOR_MLP\): length \d+, expected \d+ for widths 8-16-24/],
    ["an MLP of 4 bytes", () => mlp((b) => b.subarray(0, 4)), /ADAPTOR_MLP\): length 4, too short for its 8-byte header/],
    ["an MLP that ends inside its widths", () => mlp((b) => b.subarray(0, 12)), /ADAPTOR_MLP\): length 12, too short for 3 widths/],
    ["a table m0 that is not w_0", () => table((b) => u32(b, 4, 9)), /ADAPTOR_TABLE\): m0 is 9, expected the MLP's input width 8/],
    ["a table one record short", () => table((b) => b.subarray(0, b.length - 10)), /ADAPTOR_TABLE\): length \d+, expected \d+/],
    ["a table of 4 bytes", () => table((b) => b.subarray(0, 4)), /ADAPTOR_TABLE\): length 4, too short/],
    [
      "ADAPTOR_TABLE without ADAPTOR_MLP",
      () => rebuilt((s) => s.delete(F.SECTION_ADAPTOR_MLP)),
      /must come together; only ADAPTOR_TABLE is present/,
    ],
    [
      "ADAPTOR_MLP without ADAPTOR_TABLE",
      () => rebuilt((s) => s.delete(F.SECTION_ADAPTOR_TABLE)),
      /must come together; only ADAPTOR_MLP is present/,
    ],
    [
      "version_minor 1 with an adaptor",
      () => rebuilt(() => {}, { ...header, versionMinor: 1 }),
      /version_minor is 1, expected at least 2 for a blob with an adaptor/,
    ],
    ["an adaptor in a scalar (int4) blob", scalarWithAdaptor, /a scalar-method blob has no adaptor/],
    [
      "a second ADAPTOR_MLP section",
      () => {
        const b = new Uint8Array(good);
        const at = F.SECTION_TABLE_OFFSET + blob.sections.findIndex((x) => x.id === F.SECTION_METADATA) * F.SECTION_ENTRY_BYTES;
        u32(b, at + F.S_ID, F.SECTION_ADAPTOR_MLP);
        u32(b, F.H_HEADER_CRC, headerCrc(b, blob.sections.length));
        return b;
      },
      /ADAPTOR_MLP\): appears twice/,
    ],
  ];
  for (const [what, make, message] of cases) {
    it(what, () => {
      const bytes = make();
      const path = writeBlob(bytes);
      expect(tsRefuses(bytes), "the TypeScript reader refuses it too").toBe(true);
      for (const build of BUILDS) {
        for (const mode of MODES) {
          const run = runWasiCommand(wasmPath({ build }), ["lookup", "--mode", mode, guestPath(path), "0"], { "/blob": dir });
          expect(run.exitCode, `${build} ${mode}: ${run.stderr}`).toBe(RUNTIME_EXIT.badBlob);
          expect(run.stderr).toMatch(message);
          expect(run.stderr).toMatch(/^carvq-rt: .*bad blob: .* \[exit 4\]\n$/);
          expect(run.stdout.byteLength).toBe(0);
        }
        const info = runWasiCommand(wasmPath({ build }), ["info", guestPath(path)], { "/blob": dir });
        expect(info.exitCode, `${build} info: ${info.stderr}`).toBe(RUNTIME_EXIT.badBlob);
        expect(info.stderr).toMatch(message);
      }
    });
  }

  it("the good blob itself is served, and the ADAPTOR_MLP before ADAPTOR_TABLE (any increasing offsets) too", async () => {
    expect(tsRefuses(good)).toBe(false);
    await checkParity(good, allTokens(40), "good v1.2");
    const swapped = rebuilt(() => {}, header, [
      F.SECTION_CODES,
      F.SECTION_CODEBOOKS,
      F.SECTION_ADAPTOR_MLP,
      F.SECTION_ADAPTOR_TABLE,
      F.SECTION_METADATA,
    ]);
    expect(tsRefuses(swapped)).toBe(false);
    await checkParity(swapped, [0, 39, 5], "MLP before TABLE");
  });
});

describe("under jco (the WASI component)", () => {
  it("serves an adapted blob in streaming mode bit for bit as the reference", async () => {
    const bytes = await adaptedBlob(21, 19, { h: 8, levels: 2, group: 6 }, { widths: [16, 40, 19], precision: "int8" });
    const path = writeBlob(bytes);
    const ids = allTokens(21);
    const rt = await openJcoRuntime({ blob: path, mode: "streaming" });
    expectSameBits(await rt.lookup(ids), decodeTokens(parseBlob(bytes, "jco"), ids), "jco streaming");
  });
});

describe("a row's bits do not depend on the batch it is looked up in", () => {
  it("one token alone, in a batch of 9 (SIMD: two passes of four tokens and one alone), and in batches of 1 and 3: identical bits, both builds and modes", async () => {
    for (const precision of ["int8", "fp16"] as AdaptorPrecision[]) {
      const bytes = adaptorOnlyBlob(30, { widths: [16, 100, 36, 44], precision });
      const path = writeBlob(bytes);
      const ids = [7, 3, 29, 0, 7, 11, 12, 13, 7];
      for (const build of BUILDS) {
        for (const mode of MODES) {
          const bits = (rows: Float32Array) => Array.from(new Uint32Array(rows.buffer, rows.byteOffset, rows.length));
          const alone = bits((await openRuntime({ blob: path, build, mode })).lookup([7]));
          for (const tuning of [{}, { adaptorBatch: 1 }, { adaptorBatch: 3 }] as AdaptorTuning[]) {
            const rows = bits((await openRuntime({ blob: path, build, mode, ...tuning })).lookup(ids));
            for (const at of [0, 4, 8])
              expect(rows.slice(at * 44, (at + 1) * 44), `${precision} ${build} ${mode} ${JSON.stringify(tuning)} row ${at}`).toEqual(
                alone,
              );
          }
        }
      }
    }
  });
});
