// Device targets: every targets/*.json builds to a module whose declared maximum memory is its
// budget; the scalar builds contain no SIMD instruction; each target serves its representative
// blob (far larger than the budget when streaming), as v1.0 and as v1.1 with row scales,
// bit-identically to the TypeScript decoder, and as v1.2 with a corrective adaptor, also bit for
// bit, with a peak linear memory inside the budget, and
// refuses what cannot fit with exit code 6.
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, ftruncateSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as F from "../assembly/format.ts";
import { guestPath, projectRoot, RUNTIME_EXIT, type Target } from "../host/common.ts";
import { loadTargets, bitDifferences, openRuntime, runWasiCommand, wasmPath } from "../host/node.ts";
import { randomBlob, type RandomBlobOptions } from "../tools/blob/random.ts";
import { memoryLimits } from "../host/wasm-binary.ts";
import { deriveHeader, encodeHeader, type HeaderParams } from "../tools/blob/header.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { headerCrc } from "../tools/blob/writer.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { createRandom } from "../tools/random.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-targets-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const targets = loadTargets();
const PAGE = 65536;

/**
 * Validates a module with only the given features enabled, in a child process (binaryen prints
 * the whole module when validation fails). Returns true when it validates.
 */
function validatesWith(path: string, features: string[]): boolean {
  const script = `import binaryen from "binaryen"; import { readFileSync } from "node:fs";
    const m = binaryen.readBinary(readFileSync(${JSON.stringify(path)}));
    m.setFeatures(${features.map((f) => `binaryen.Features.${f}`).join(" | ")});
    process.exitCode = m.validate() ? 0 : 1;`;
  try {
    execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: projectRoot(), stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const SCALAR_FEATURES = ["MVP", "MutableGlobals", "SignExt"];

describe("targets/*.json", () => {
  it("has the required device profiles with every field", () => {
    const names = targets.map((t) => t.name);
    for (const name of ["rpi4-wasmtime", "rpi-zero2w", "esp32s3-wamr", "mcu-128k"]) expect(names).toContain(name);
    for (const t of targets) {
      expect(typeof t.engine).toBe("string");
      expect(typeof t.simd).toBe("boolean");
      expect(t.memoryBudgetBytes % PAGE).toBe(0);
      expect(["resident", "streaming"]).toContain(t.mode);
      expect(t.description.length).toBeGreaterThan(40);
      expect(t.representative).toBeDefined();
    }
    const byName = Object.fromEntries(targets.map((t) => [t.name, t])) as Record<string, Target>;
    expect(byName["rpi4-wasmtime"]).toMatchObject({ simd: true, mode: "resident" });
    expect(byName["rpi-zero2w"]).toMatchObject({ simd: true, mode: "streaming", memoryBudgetBytes: 4 * 2 ** 20 });
    expect(byName["esp32s3-wamr"]).toMatchObject({ simd: false, mode: "streaming", memoryBudgetBytes: 256 * 1024 });
    expect(byName["mcu-128k"]).toMatchObject({ simd: false, mode: "streaming", memoryBudgetBytes: 128 * 1024 });
  });

  for (const t of targets) {
    it(`${t.name}: the module's declared maximum memory is the budget, its build matches simd = ${t.simd}`, () => {
      const path = wasmPath({ target: t.name });
      const limits = memoryLimits(readFileSync(path));
      expect(limits.maximumPages! * PAGE).toBe(t.memoryBudgetBytes);
      expect(limits.initialPages * PAGE).toBeLessThanOrEqual(t.memoryBudgetBytes);
      expect(validatesWith(path, SCALAR_FEATURES)).toBe(!t.simd);
    });
  }
});

describe("the scalar build has no SIMD instruction", () => {
  it("validates with SIMD (and every post-MVP feature but sign-extension and mutable globals) disabled", () => {
    expect(validatesWith(wasmPath({ build: "scalar" }), SCALAR_FEATURES)).toBe(true);
  });
  it("while the SIMD build does not (the check can fail)", () => {
    expect(validatesWith(wasmPath({ build: "simd" }), SCALAR_FEATURES)).toBe(false);
    expect(
      validatesWith(wasmPath({ build: "simd" }), [...SCALAR_FEATURES, "BulkMemory", "BulkMemoryOpt", "NontrappingFPToInt", "SIMD128"]),
    ).toBe(true);
  });
  it("the generic builds declare the whole 4 GiB wasm32 space as their maximum", () => {
    for (const build of ["simd", "scalar"] as const) expect(memoryLimits(readFileSync(wasmPath({ build }))).maximumPages).toBe(65536);
  });
});

const blobs = new Map<string, { path: string; bytes: Uint8Array }>();

/** The paper's adaptor sizes (16 -> 384 -> 512 -> n) for wide tables, narrower hidden layers for narrow ones. */
function adaptorFor(cols: number): RandomBlobOptions["adaptor"] {
  return { widths: cols >= 2048 ? [16, 384, 512, cols] : cols >= 512 ? [16, 128, 128, cols] : [16, 64, 64, cols], precision: "int8" };
}

/**
 * The target's representative blob; with `rowScales`, the same shape as a v1.1 gain-shape blob;
 * with `adapted`, as a v1.2 blob with a random adaptor (adaptorFor).
 */
function representativeBlob(t: Target, rowScales = 0, adapted = false): { path: string; bytes: Uint8Array } {
  const r = t.representative!;
  const key = JSON.stringify({ ...r, rowScales, adapted });
  let blob = blobs.get(key);
  if (blob === undefined) {
    const bytes = randomBlob({
      ...r,
      rowScales,
      seed: r.rows + r.cols,
      adaptor: adapted ? adaptorFor(r.cols) : undefined,
    } as RandomBlobOptions);
    const path = join(dir, `${r.rows}x${r.cols}${rowScales > 0 ? `-r${rowScales}` : ""}${adapted ? "-a" : ""}.carvq`);
    writeFileSync(path, bytes);
    blob = { path, bytes };
    blobs.set(key, blob);
  }
  return blob;
}

function sample(rows: number, count: number, seed: number): number[] {
  const random = createRandom(seed);
  return [0, rows - 1, ...Array.from({ length: count }, () => Math.floor(random() * rows))];
}

describe("memory budget: each target serves its representative blob inside its budget", () => {
  for (const t of targets) {
    const r = t.representative!;
    it(`${t.name} (${t.mode}, ${t.memoryBudgetBytes} bytes): a ${r.rows} x ${r.cols} blob, a seeded sample bit-identical, peak <= budget`, async () => {
      const { path, bytes } = representativeBlob(t);
      if (t.mode === "streaming") expect(bytes.length, "the blob is far larger than the budget").toBeGreaterThan(4 * t.memoryBudgetBytes);
      const ids = sample(r.rows, 200, 17);
      const rt = await openRuntime({ blob: path, target: t.name });
      const info = rt.info();
      expect(info.runtime).toMatchObject({ build: t.simd ? "simd" : "scalar", budgetBytes: t.memoryBudgetBytes, defaultMode: t.mode });
      expect(info.runtime.peakMemoryBytes).toBeLessThanOrEqual(t.memoryBudgetBytes);
      const rows = rt.lookup(ids);
      const want = decodeTokens(parseBlob(bytes, "rep"), ids);
      expect(Buffer.from(rows.buffer).equals(Buffer.from(want.buffer)), "bit-identical to decodeTokens").toBe(true);
      const peak = rt.lastRun!.peakMemoryBytes;
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(t.memoryBudgetBytes);
      if (t.mode === "resident") expect(peak, "the blob is in linear memory").toBeGreaterThan(bytes.length);
      else expect(peak, "streaming keeps the blob out of memory").toBeLessThan(bytes.length);
    });

    it(`${t.name}: the same shape with 256 row scales (v1.1), a seeded sample bit-identical, peak <= budget`, async () => {
      const { path, bytes } = representativeBlob(t, 256);
      const ids = sample(r.rows, 200, 18);
      const rt = await openRuntime({ blob: path, target: t.name });
      const info = rt.info();
      expect(info).toMatchObject({ formatVersion: "1.1", rowScales: 256 });
      expect(info.runtime.streamingFits).toBe(true);
      const rows = rt.lookup(ids);
      const want = decodeTokens(parseBlob(bytes, "rep v1.1"), ids);
      expect(Buffer.from(rows.buffer).equals(Buffer.from(want.buffer)), "bit-identical to decodeTokens").toBe(true);
      expect(rt.lastRun!.peakMemoryBytes).toBeLessThanOrEqual(t.memoryBudgetBytes);
    });

    it(`${t.name}: the same shape with a corrective adaptor (v1.2, ${adaptorFor(r.cols)!.widths.join(" -> ")} int8), bit for bit, peak <= budget`, async () => {
      const { path, bytes } = representativeBlob(t, 0, true);
      const ids = sample(r.rows, 60, 19);
      const rt = await openRuntime({ blob: path, target: t.name });
      const info = rt.info();
      expect(info).toMatchObject({ formatVersion: "1.2", adaptor: { widths: adaptorFor(r.cols)!.widths, mlpPrecision: "int8" } });
      expect(info.runtime.streamingFits).toBe(true);
      const rows = rt.lookup(ids);
      expect(bitDifferences(rows, decodeTokens(parseBlob(bytes, "rep v1.2"), ids))).toBe(0);
      expect(rt.lastRun!.peakMemoryBytes).toBeLessThanOrEqual(t.memoryBudgetBytes);
      if (t.mode === "streaming")
        expect(rt.lastRun!.peakMemoryBytes, "streaming keeps the blob out of memory").toBeLessThan(bytes.length / 4);
    });
  }
});

/** Writes a header + section table for `params` and extends the file (sparse) to its full size. */
function sparseBlob(name: string, params: HeaderParams): { path: string; size: number } {
  const header = deriveHeader(params);
  const codes = header.rows * header.rowBytes;
  const codebooks = header.groupCount * header.levels * header.codebookSize * header.subvec * 2;
  const start = Math.ceil((F.SECTION_TABLE_OFFSET + 2 * F.SECTION_ENTRY_BYTES) / 64) * 64;
  const cbOffset = Math.ceil((start + codes) / 64) * 64;
  const size = cbOffset + codebooks;
  const head = new Uint8Array(start);
  head.set(encodeHeader(header, 2), 0);
  const v = new DataView(head.buffer);
  const entries: [number, number, number][] = [
    [F.SECTION_CODES, start, codes],
    [F.SECTION_CODEBOOKS, cbOffset, codebooks],
  ];
  entries.forEach(([id, offset, length], i) => {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    v.setUint32(at + F.S_ID, id, true);
    v.setBigUint64(at + F.S_OFFSET, BigInt(offset), true);
    v.setBigUint64(at + F.S_LENGTH, BigInt(length), true);
  });
  v.setUint32(F.H_HEADER_CRC, headerCrc(head, 2), true);
  const path = join(dir, name);
  const fd = openSync(path, "w");
  writeSync(fd, head);
  ftruncateSync(fd, size);
  closeSync(fd);
  return { path, size };
}

function refusal(wasm: string, args: string[]): { exitCode: number; line: string; peak: number } {
  const run = runWasiCommand(wasm, args, { "/blob": dir });
  const lines = run.stderr.split("\n").filter((l) => l.length > 0);
  expect(lines).toHaveLength(1);
  expect(run.stdout.byteLength).toBe(0);
  return { exitCode: run.exitCode, line: lines[0], peak: run.peakMemoryBytes };
}

describe("impossible requests are refused with exit 6 (budget exceeded), never a trap", () => {
  for (const t of targets.filter((x) => x.mode === "streaming")) {
    it(`${t.name}: --mode resident with its representative blob`, () => {
      const { path } = representativeBlob(t);
      const r = refusal(wasmPath({ target: t.name }), ["lookup", "--mode", "resident", guestPath(path), "0"]);
      expect(r.exitCode, r.line).toBe(RUNTIME_EXIT.budget);
      expect(r.line).toMatch(/budget exceeded: resident mode .* needs \d+ more bytes .* budget of \d+ bytes/);
      expect(r.peak).toBeLessThanOrEqual(t.memoryBudgetBytes);
    });
  }

  it("mcu-128k: a row of 65536 values (256 KiB of output) cannot be decoded in 128 KiB", () => {
    const path = join(dir, "wide.carvq");
    writeFileSync(path, randomBlob({ rows: 2, cols: 65536, subvec: 8, levels: 2, group: 1024, seed: 3 }));
    for (const target of ["mcu-128k", "esp32s3-wamr"]) {
      const r = refusal(wasmPath({ target }), ["lookup", guestPath(path), "1"]);
      expect(r.exitCode, r.line).toBe(RUNTIME_EXIT.budget);
      expect(r.line).toMatch(/streaming mode/);
    }
    // The 4 MiB target serves it.
    const ok = runWasiCommand(wasmPath({ target: "rpi-zero2w" }), ["lookup", guestPath(path), "1"], { "/blob": dir });
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout.byteLength).toBe(65536 * 4);
  });

  it("mcu-128k: a command line of 30000 tokens does not fit 128 KiB", () => {
    const { path } = representativeBlob(targets.find((t) => t.name === "mcu-128k")!);
    const ids = Array.from({ length: 30000 }, (_, i) => String(i));
    const r = refusal(wasmPath({ target: "mcu-128k" }), ["lookup", guestPath(path), ...ids]);
    expect(r.exitCode, r.line).toBe(RUNTIME_EXIT.budget);
    expect(r.line).toMatch(/command line/);
  });

  it("rpi4-wasmtime: a 384 MB blob cannot be resident in 256 MiB (refused before reading it)", () => {
    const { path, size } = sparseBlob("big.carvq", {
      method: "carvq",
      rows: 1_000_000,
      cols: 2048,
      subvec: 8,
      levels: 2,
      group: 1024,
      layout: "row",
    });
    expect(size).toBeGreaterThan(256 * 2 ** 20);
    const r = refusal(wasmPath({ target: "rpi4-wasmtime" }), ["lookup", guestPath(path), "5"]);
    expect(r.exitCode, r.line).toBe(RUNTIME_EXIT.budget);
    expect(r.peak).toBeLessThan(2 ** 20);
  });

  it("generic builds: a 6 GiB blob (offsets past 2^32) cannot be resident in 4 GiB; u64 offsets stay exact", () => {
    const { path, size } = sparseBlob("huge.carvq", {
      method: "carvq",
      rows: F.MAX_ROWS,
      cols: 2048,
      subvec: 8,
      levels: 2,
      group: 1024,
      layout: "row",
    });
    expect(size).toBeGreaterThan(2 ** 32);
    for (const build of ["simd", "scalar"] as const) {
      const r = refusal(wasmPath({ build }), ["lookup", "--mode", "resident", guestPath(path), String(F.MAX_ROWS - 1)]);
      expect(r.exitCode, r.line).toBe(RUNTIME_EXIT.budget);
      const range = refusal(wasmPath({ build }), ["lookup", guestPath(path), String(F.MAX_ROWS)]);
      expect(range.exitCode, range.line).toBe(RUNTIME_EXIT.tokenRange);
    }
  });
});
