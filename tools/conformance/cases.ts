// What a conformance kit covers: its modules, its blobs (every format variant the runtime reads,
// hostile ones, and per target one blob that fits the budget only when streamed and one that
// cannot fit at all) and its cases (module, command line, expected exit code, expected stdout).
//
// Expected rows come from the TypeScript reference decoder (tools/decoder.ts), never from the
// runtime; every hostile blob is also refused by the reference reader (tools/blob/reader.ts), so
// its expected exit 4 has a reason outside the runtime. Budget expectations follow from the
// memory model in docs/RUNTIME.md with wide margins: resident needs at least the whole file,
// streaming at least one output row (cols x 4 bytes), both above ~30 KB of static data.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as F from "../../assembly/format.ts";
import { buildDir, RUNTIME_EXIT, type Target } from "../../host/common.ts";
import { randomBlob, randomBlobHeader, type RandomBlobOptions } from "../blob/random.ts";
import { compressMatrix } from "../compress.ts";
import { decodeTokens } from "../decoder.ts";
import { parseBlob } from "../blob/reader.ts";
import { assembleBlob, headerCrc, type SectionBytes } from "../blob/writer.ts";
import { CarvqError } from "../errors.ts";
import { synthMatrix } from "../synth.ts";

/** A module shipped in the kit's modules/ folder. */
export interface KitModule {
  /** Short name used in case names: "simd", "scalar" or the target's name. */
  label: string;
  /** Path inside the kit, e.g. "modules/mcu-128k.wasm". */
  file: string;
  /** Where it is copied from (build/...). */
  source: string;
  build: "simd" | "scalar";
  /** The device target it is built for, or null for a generic build. */
  target: string | null;
  /** The module's declared maximum memory: the budget the engine enforces. */
  budgetBytes: number;
  defaultMode: "resident" | "streaming" | "auto";
}

/** A blob shipped in the kit's blobs/ folder. */
export interface KitBlob {
  /** Path inside the kit, e.g. "blobs/rvq-row.carvq". */
  file: string;
  /** What it exercises (one line). */
  description: string;
  bytes: Uint8Array;
}

export type CaseKind = "variant" | "hostile" | "request" | "budget";

/** One run of one module: `ENGINE WORDS... module args...` from the kit's folder. */
export interface KitCase {
  name: string;
  kind: CaseKind;
  module: string;
  args: string[];
  expectedExit: number;
  /** sha256 (hex) of everything the run must write to stdout: raw little-endian f32 rows, or nothing. */
  expectedStdoutSha256: string;
  /** The module's budget (declared maximum memory), bytes. */
  budgetBytes: number;
  target: string | null;
  /** The blob it reads, when it reads one. */
  blob: string | null;
}

/** A check issue-level coverage asks for that no kit can hold, with the reason. */
export interface NotCovered {
  target: string;
  check: string;
  reason: string;
}

export interface KitPlan {
  modules: KitModule[];
  blobs: KitBlob[];
  cases: KitCase[];
  notCovered: NotCovered[];
}

export interface PlanOptions {
  targets: readonly Target[];
  /** Fewer cases (one mode per generic build, hostile blobs on the generic builds only) and no blob over 1 MiB. */
  quick: boolean;
}

const EMPTY_SHA256 = sha256(new Uint8Array(0));
/** Linear memory a module holds before its arena: static data (measured ~30 KB: 30476 bytes on mcu-128k), rounded up. */
const STATIC_BYTES_AT_MOST = 32 * 1024;
/** Above this, a blob that fits only when streamed would not fit in a kit meant to be copied to a device. */
const MAX_BUDGET_BLOB_BYTES = 6 * 1024 * 1024;
/** A --quick kit keeps every blob below this. */
const QUICK_BLOB_LIMIT = 1024 * 1024;

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function rowsBytes(rows: Float32Array): Uint8Array {
  for (let i = 0; i < rows.length; i++)
    if (Number.isNaN(rows[i]))
      throw new CarvqError(`conformance: an expected row holds a NaN (value ${i}); NaN payloads may differ between engines`);
  return new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
}

// ---- Modules ----

export function kitModules(targets: readonly Target[]): KitModule[] {
  const generic: KitModule[] = [
    {
      label: "simd",
      file: "modules/carvq-rt.wasm",
      source: join(buildDir(), "carvq-rt.wasm"),
      build: "simd",
      target: null,
      budgetBytes: 2 ** 32,
      defaultMode: "auto",
    },
    {
      label: "scalar",
      file: "modules/carvq-rt-scalar.wasm",
      source: join(buildDir(), "carvq-rt-scalar.wasm"),
      build: "scalar",
      target: null,
      budgetBytes: 2 ** 32,
      defaultMode: "auto",
    },
  ];
  const perTarget = targets.map(
    (t): KitModule => ({
      label: t.name,
      file: `modules/${t.name}.wasm`,
      source: join(buildDir(), "targets", `${t.name}.wasm`),
      build: t.simd ? "simd" : "scalar",
      target: t.name,
      budgetBytes: t.memoryBudgetBytes,
      defaultMode: t.mode,
    }),
  );
  const modules = [...generic, ...perTarget];
  for (const m of modules) if (!existsSync(m.source)) throw new CarvqError(`${m.source}: not built (run npm run build)`);
  return modules;
}

// ---- Format variants ----

interface VariantSpec {
  name: string;
  description: string;
  make(): Uint8Array | Promise<Uint8Array>;
  /** Tokens looked up: first, last, a middle one and a repeat, in an order that is not sorted. */
  tokens: number[];
  adaptor?: boolean;
}

function tokensFor(rows: number): number[] {
  if (rows === 1) return [0, 0];
  return [rows - 1, 0, Math.floor(rows / 2), 1, rows - 1];
}

function random(name: string, description: string, options: RandomBlobOptions): VariantSpec {
  return { name, description, make: () => randomBlob(options), tokens: tokensFor(options.rows), adaptor: options.adaptor !== undefined };
}

function fitted(name: string, description: string, rows: number, cols: number, options: Parameters<typeof compressMatrix>[1]): VariantSpec {
  return {
    name,
    description,
    make: async () => (await compressMatrix(synthMatrix({ rows, cols, seed: 16 }), options)).bytes,
    tokens: tokensFor(rows),
  };
}

/** Every format variant the runtime reads, each in a small blob (a few KB to ~60 KB). */
function variantSpecs(): VariantSpec[] {
  return [
    random("rvq-row", "v1.0 RVQ, row layout: 300 x 64, h 8, L 2, g 64", {
      rows: 300,
      cols: 64,
      subvec: 8,
      levels: 2,
      group: 64,
      layout: "row",
      seed: 101,
    }),
    random("rvq-col", "v1.0 RVQ, column-block layout: 300 x 64, h 8, L 2, g 64", {
      rows: 300,
      cols: 64,
      subvec: 8,
      levels: 2,
      group: 64,
      layout: "col",
      seed: 102,
    }),
    random(
      "rvq-odd-row",
      "n not a multiple of h (36, h 8), a partial last group (1505 sub-vectors, g 48), an odd nibble count (S 5 x L 3)",
      { rows: 301, cols: 36, subvec: 8, levels: 3, group: 48, layout: "row", seed: 103 },
    ),
    random("rvq-odd-col", "column-block layout with a partial last block (301 tokens, g 16), n 36 with h 8, L 1", {
      rows: 301,
      cols: 36,
      subvec: 8,
      levels: 1,
      group: 16,
      layout: "col",
      seed: 104,
    }),
    random("rvq-v1", "V = 1: one token, one partly filled group", {
      rows: 1,
      cols: 24,
      subvec: 8,
      levels: 2,
      group: 1024,
      layout: "row",
      seed: 105,
    }),
    random("rvq-h1", "h = 1: scalar sub-vectors, 20 per row", {
      rows: 64,
      cols: 20,
      subvec: 1,
      levels: 2,
      group: 256,
      layout: "row",
      seed: 106,
    }),
    random("rvq-l8", "L = 8: the most residual levels", { rows: 64, cols: 40, subvec: 8, levels: 8, group: 32, layout: "row", seed: 107 }),
    random("rvq-h256", "h = 256: the longest sub-vector, n 300 (one full and one partial), column-block layout", {
      rows: 40,
      cols: 300,
      subvec: 256,
      levels: 2,
      group: 20,
      layout: "col",
      seed: 108,
    }),
    fitted("rvq-fitted", "an RVQ blob from the real encoder (k-means on a synthetic 256 x 48 table, h 8, L 2, g 128)", 256, 48, {
      method: "carvq",
      h: 8,
      levels: 2,
      group: 128,
      layout: "row",
      iters: 4,
    }),
    fitted("int4", "int4 scalar, blocks of 16 over n 37 (a partial last block)", 100, 37, { method: "int4", block: 16 }),
    fitted("int3", "int3 scalar, blocks of 16 over n 37 (codes across byte boundaries)", 100, 37, { method: "int3", block: 16 }),
    fitted("int2", "int2 scalar, blocks of 16 over n 37", 100, 37, { method: "int2", block: 16 }),
    random("rowscale", "v1.1 row scales: R 7, row layout", {
      rows: 200,
      cols: 48,
      subvec: 8,
      levels: 2,
      group: 64,
      layout: "row",
      rowScales: 7,
      seed: 109,
    }),
    random("rowscale-256", "v1.1 row scales: R 256 (the most), column-block layout, odd n", {
      rows: 300,
      cols: 30,
      subvec: 8,
      levels: 2,
      group: 32,
      layout: "col",
      rowScales: 256,
      seed: 110,
    }),
    random("adaptor-int8", "v1.2 adaptor, int8 table and MLP: 8 -> 32 -> 48", {
      rows: 200,
      cols: 48,
      subvec: 8,
      levels: 2,
      group: 64,
      layout: "row",
      adaptor: { widths: [8, 32, 48], precision: "int8" },
      seed: 111,
    }),
    random("adaptor-fp16", "v1.2 adaptor, fp16 table and MLP, two hidden layers of widths not multiples of 8: 12 -> 24 -> 20 -> 40", {
      rows: 150,
      cols: 40,
      subvec: 8,
      levels: 2,
      group: 64,
      layout: "col",
      adaptor: { widths: [12, 24, 20, 40], precision: "fp16" },
      seed: 112,
    }),
    random("adaptor-mixed", "v1.2 adaptor with row scales: fp16 table, int8 MLP, m0 1, one layer 1 -> 33", {
      rows: 120,
      cols: 33,
      subvec: 8,
      levels: 3,
      group: 40,
      layout: "row",
      rowScales: 5,
      adaptor: { widths: [1, 33], precision: "int8", tablePrecision: "fp16" },
      seed: 113,
    }),
  ];
}

// ---- Hostile blobs ----

interface HostileSpec {
  name: string;
  description: string;
  bytes: Uint8Array;
}

function sectionsOf(bytes: Uint8Array): SectionBytes[] {
  const parsed = parseBlob(bytes, "blob");
  return parsed.sections.map((s) => ({ id: s.id, bytes: bytes.slice(s.offset, s.offset + s.length) }));
}

/** A copy of `bytes` with `edit` applied to its header or section table and the header CRC made right again. */
function withHeaderEdit(bytes: Uint8Array, edit: (view: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  const view = new DataView(copy.buffer);
  edit(view);
  view.setUint32(F.H_HEADER_CRC, headerCrc(copy, view.getUint32(F.H_SECTION_COUNT, true)), true);
  return copy;
}

function sectionEntry(bytes: Uint8Array, id: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(F.H_SECTION_COUNT, true);
  for (let i = 0; i < count; i++) {
    const entry = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    if (view.getUint32(entry + F.S_ID, true) === id) return entry;
  }
  throw new RangeError(`no section ${id}`);
}

/** Blobs every reader must refuse (exit 4), derived from valid ones. */
function hostileSpecs(base: Uint8Array, rowScaled: Uint8Array, adapted: Uint8Array): HostileSpec[] {
  const codes = sectionEntry(base, F.SECTION_CODES);
  const baseView = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const codesOffset = Number(baseView.getBigUint64(codes + F.S_OFFSET, true));
  const crc = base.slice();
  crc[codesOffset + 17] ^= 0x10;
  // The zero padding between the section table and the first section: no CRC covers it.
  const sectionCount = baseView.getUint32(F.H_SECTION_COUNT, true);
  const tableEnd = F.SECTION_TABLE_OFFSET + sectionCount * F.SECTION_ENTRY_BYTES;
  if (codesOffset <= tableEnd) throw new Error("conformance: the base blob has no padding before its first section");
  const padding = base.slice();
  padding[codesOffset - 1] = 0x01;
  const trailing = new Uint8Array(base.length + 1);
  trailing.set(base);
  // Row scales: one record's index pushed to R (not below R), every CRC made right again.
  const rsSections = sectionsOf(rowScaled);
  const rsHeader = parseBlob(rowScaled, "blob").header;
  const rsCodes = rsSections.find((s) => s.id === F.SECTION_CODES)!;
  const R = rsSections.find((s) => s.id === F.SECTION_ROW_SCALES)!.bytes.length / 2;
  rsCodes.bytes[37 * rsHeader.rowBytes] = R;
  return [
    { name: "bad-crc", description: "one flipped bit in the CODES section (its CRC-32 no longer matches)", bytes: crc },
    { name: "bad-magic", description: 'magic "CRVX" (header CRC right)', bytes: withHeaderEdit(base, (v) => v.setUint8(3, 0x58)) },
    {
      name: "bad-version-major",
      description: "version_major 2 (header CRC right)",
      bytes: withHeaderEdit(base, (v) => v.setUint16(F.H_VERSION_MAJOR, 2, true)),
    },
    {
      name: "bad-version-minor",
      description: "version_minor 3, newer than the runtime (header CRC right)",
      bytes: withHeaderEdit(base, (v) => v.setUint16(F.H_VERSION_MINOR, F.VERSION_MINOR + 1, true)),
    },
    { name: "truncated", description: "the last 100 bytes cut off", bytes: base.slice(0, base.length - 100) },
    { name: "truncated-header", description: "only the first 40 bytes (inside the header)", bytes: base.slice(0, 40) },
    {
      name: "lying-offset-past-end",
      description: "CODES offset 1 TiB, past the end of the file (header CRC right)",
      bytes: withHeaderEdit(base, (v) => v.setBigUint64(codes + F.S_OFFSET, 1n << 40n, true)),
    },
    {
      name: "lying-offset-overlap",
      description: "CODES offset 64: inside the section table (header CRC right)",
      bytes: withHeaderEdit(base, (v) => v.setBigUint64(codes + F.S_OFFSET, 64n, true)),
    },
    {
      name: "lying-length",
      description: "CODES length one byte longer than the records (header CRC right)",
      bytes: withHeaderEdit(base, (v) => v.setBigUint64(codes + F.S_LENGTH, v.getBigUint64(codes + F.S_LENGTH, true) + 1n, true)),
    },
    { name: "padding-not-zero", description: "a non-zero byte in the padding before the first section", bytes: padding },
    { name: "trailing-byte", description: "one byte after the end of the last section", bytes: trailing },
    {
      name: "adaptor-version-1-1",
      description: "v1.2 adaptor sections in a blob whose header says 1.1 (header CRC right)",
      bytes: withHeaderEdit(adapted, (v) => v.setUint16(F.H_VERSION_MINOR, 1, true)),
    },
    {
      name: "rowscale-bad-index",
      description: "v1.1: token 37's row-scale index is R (every CRC right)",
      bytes: assembleBlob(rsHeader, rsSections),
    },
  ];
}

// ---- Budget blobs ----

/** A budget blob as shipped: where it is, what it holds, the tokens its cases ask for and their rows. */
interface BudgetBlob {
  file: string;
  bytes: Uint8Array;
  tokens: number[];
  expectedRows: Uint8Array;
}

/** The widest row (cols) whose streaming need stays well inside `budget`: an output row of ~55 % of it. */
function streamedCols(budget: number): number {
  return Math.min(F.MAX_COLS, Math.floor((budget * 0.55) / 4 / 8) * 8);
}

/**
 * A blob 64 KiB larger than the budget (resident mode can never hold it) whose rows take ~55 % of
 * it: it fits only when streamed, and, for the small budgets, not in the next smaller target's.
 */
function streamedBlobOptions(target: Target): RandomBlobOptions {
  const budget = target.memoryBudgetBytes;
  const cols = streamedCols(budget);
  const S = Math.ceil(cols / 8);
  const rowBytes = Math.ceil((S * 2) / 2);
  return {
    rows: Math.ceil((budget + 65536) / rowBytes),
    cols,
    subvec: 8,
    levels: 2,
    group: S * 8,
    layout: "row",
    seed: 200 + budget / 65536,
  };
}

/** A small blob whose single output row (cols x 4 bytes) plus the static data exceeds the budget. */
function tooWideBlob(target: Target): RandomBlobOptions {
  const cols = Math.min(F.MAX_COLS, Math.ceil(target.memoryBudgetBytes / 4 / 1024) * 1024);
  return {
    rows: 2,
    cols,
    subvec: 8,
    levels: 1,
    group: 2 * Math.ceil(cols / 8),
    layout: "row",
    seed: 300 + target.memoryBudgetBytes / 65536,
  };
}

// ---- The plan ----

function modeArgs(mode: "resident" | "streaming" | null): string[] {
  return mode === null ? [] : ["--mode", mode];
}

/** The modes a generic build is run in (targets run in their own mode). */
function genericModes(module: KitModule, quick: boolean): ("resident" | "streaming")[] {
  if (!quick) return ["resident", "streaming"];
  return [module.build === "simd" ? "resident" : "streaming"];
}

/** What the plan is being built into, shared by the three parts below. */
interface KitBuilder {
  quick: boolean;
  modules: KitModule[];
  blobs: KitBlob[];
  cases: KitCase[];
  notCovered: NotCovered[];
}

function addBlob(kit: KitBuilder, file: string, description: string, bytes: Uint8Array): void {
  kit.blobs.push({ file, description, bytes });
}

interface CaseSpec {
  name: string;
  kind: CaseKind;
  args: string[];
  expectedExit: number;
  /** The expected stdout: rows, or null for nothing. */
  stdout: Uint8Array | null;
  blob: string | null;
}

function addCase(kit: KitBuilder, module: KitModule, spec: CaseSpec): void {
  kit.cases.push({
    name: `${module.label}.${spec.name}`,
    kind: spec.kind,
    module: module.file,
    args: spec.args,
    expectedExit: spec.expectedExit,
    expectedStdoutSha256: spec.stdout === null ? EMPTY_SHA256 : sha256(spec.stdout),
    budgetBytes: module.budgetBytes,
    target: module.target,
    blob: spec.blob,
  });
}

interface PlannedVariant {
  spec: VariantSpec;
  file: string;
  bytes: Uint8Array;
  rows: Uint8Array;
}

/** Format variants: every module reads every variant (generic builds in both modes, targets in theirs). */
async function planVariants(kit: KitBuilder): Promise<PlannedVariant[]> {
  const variants: PlannedVariant[] = [];
  for (const spec of variantSpecs()) {
    const bytes = await spec.make();
    const file = `blobs/${spec.name}.carvq`;
    addBlob(kit, file, spec.description, bytes);
    variants.push({ spec, file, bytes, rows: rowsBytes(decodeTokens(parseBlob(bytes, file), spec.tokens)) });
  }
  for (const module of kit.modules) {
    for (const v of variants) {
      const lookup = (mode: "resident" | "streaming" | null, extra: string[] = []) => [
        "lookup",
        ...modeArgs(mode),
        ...extra,
        v.file,
        ...v.spec.tokens.map(String),
      ];
      const served = (name: string, args: string[]): CaseSpec => ({
        name,
        kind: "variant",
        args,
        expectedExit: 0,
        stdout: v.rows,
        blob: v.file,
      });
      if (module.target !== null) {
        addCase(kit, module, served(v.spec.name, lookup(null)));
        continue;
      }
      for (const mode of genericModes(module, kit.quick)) addCase(kit, module, served(`${v.spec.name}.${mode}`, lookup(mode)));
      // The adaptor's MLP streamed in its smallest tiles, one token per batch.
      if (v.spec.adaptor)
        addCase(
          kit,
          module,
          served(`${v.spec.name}.streaming-tiles`, lookup("streaming", ["--adaptor-batch", "1", "--adaptor-tile", "1"])),
        );
    }
  }
  return variants;
}

/** Hostile blobs (exit 4) and bad requests (exits 2, 3, 5); a --quick kit runs them on the generic builds only. */
function planRefusals(kit: KitBuilder, variants: readonly PlannedVariant[]): void {
  const variant = (name: string) => variants.find((v) => v.spec.name === name)!;
  const base = variant("rvq-row");
  const hostile = hostileSpecs(base.bytes, variant("rowscale").bytes, variant("adaptor-int8").bytes).map((h) => {
    const file = `blobs/hostile-${h.name}.carvq`;
    try {
      parseBlob(h.bytes, file);
    } catch {
      addBlob(kit, file, h.description, h.bytes);
      return { ...h, file };
    }
    throw new CarvqError(`conformance: the reference reader accepts the hostile blob ${file}; it must refuse it`);
  });
  const V = parseBlob(base.bytes, base.file).header.rows;
  const requests: { name: string; args: string[]; exit: number }[] = [
    { name: "token-out-of-range", args: ["lookup", base.file, "0", String(V)], exit: RUNTIME_EXIT.tokenRange },
    { name: "token-not-a-number", args: ["lookup", base.file, "1x"], exit: RUNTIME_EXIT.usage },
    { name: "no-token", args: ["lookup", base.file], exit: RUNTIME_EXIT.usage },
    { name: "unknown-option", args: ["lookup", "--fast", base.file, "1"], exit: RUNTIME_EXIT.usage },
    { name: "missing-blob", args: ["lookup", "blobs/no-such-blob.carvq", "1"], exit: RUNTIME_EXIT.io },
  ];
  for (const module of kit.modules) {
    const isGeneric = module.target === null;
    if (kit.quick && !isGeneric) continue;
    for (const mode of isGeneric ? genericModes(module, kit.quick) : [null]) {
      const suffix = mode === null ? "" : `.${mode}`;
      for (const h of hostile)
        addCase(kit, module, {
          name: `hostile-${h.name}${suffix}`,
          kind: "hostile",
          args: ["lookup", ...modeArgs(mode), h.file, "0", "1"],
          expectedExit: RUNTIME_EXIT.badBlob,
          stdout: null,
          blob: h.file,
        });
    }
    for (const r of requests)
      addCase(kit, module, {
        name: r.name,
        kind: "request",
        args: r.args,
        expectedExit: r.exit,
        stdout: null,
        blob: r.args.find((a) => a.startsWith("blobs/")) ?? null,
      });
  }
}

/** The "fits only when streamed" blob of one target and its cases, or why the kit cannot hold it. */
function planStreamed(kit: KitBuilder, target: Target, module: KitModule): BudgetBlob | null {
  const budget = target.memoryBudgetBytes;
  const options = streamedBlobOptions(target);
  const approxBytes = options.rows * randomBlobHeader(options).rowBytes;
  const check = "a blob that fits only when streamed";
  if (approxBytes > MAX_BUDGET_BLOB_BYTES) {
    kit.notCovered.push({
      target: target.name,
      check,
      reason: `it must be larger than the ${budget}-byte budget; the kit keeps blobs under ${MAX_BUDGET_BLOB_BYTES} bytes`,
    });
    return null;
  }
  if (kit.quick && approxBytes > QUICK_BLOB_LIMIT) {
    kit.notCovered.push({ target: target.name, check, reason: `left out of a --quick kit (it would take ~${approxBytes} bytes)` });
    return null;
  }
  const file = `blobs/budget-${target.name}-streamed.carvq`;
  const bytes = randomBlob(options);
  addBlob(
    kit,
    file,
    `${options.rows} x ${options.cols} RVQ: larger than ${target.name}'s ${budget}-byte budget (resident cannot hold it), rows of ${options.cols * 4} bytes (streaming fits)`,
    bytes,
  );
  const tokens = tokensFor(options.rows);
  const rows = rowsBytes(decodeTokens(parseBlob(bytes, file), tokens));
  const lookup = (mode: "resident" | "streaming" | null) => ["lookup", ...modeArgs(mode), file, ...tokens.map(String)];
  addCase(kit, module, {
    name: "budget-streamed.resident",
    kind: "budget",
    args: lookup("resident"),
    expectedExit: RUNTIME_EXIT.budget,
    stdout: null,
    blob: file,
  });
  addCase(kit, module, {
    name: "budget-streamed.streaming",
    kind: "budget",
    args: lookup("streaming"),
    expectedExit: 0,
    stdout: rows,
    blob: file,
  });
  if (target.mode === "streaming")
    addCase(kit, module, { name: "budget-streamed", kind: "budget", args: lookup(null), expectedExit: 0, stdout: rows, blob: file });
  return { file, bytes, tokens, expectedRows: rows };
}

/** The "cannot fit at all" blob of one target and its cases, or why no blob can be that. */
function planTooWide(kit: KitBuilder, target: Target, module: KitModule): void {
  const budget = target.memoryBudgetBytes;
  const wide = tooWideBlob(target);
  if (wide.cols * 4 + STATIC_BYTES_AT_MOST / 2 <= budget) {
    kit.notCovered.push({
      target: target.name,
      check: "a blob that cannot fit at all",
      reason: `no valid blob needs that much when streamed (at most ~${Math.ceil((F.MAX_COLS * 4 * 2 + 65536) / 1024)} KiB: a row holds at most ${F.MAX_COLS} values), far inside the ${budget}-byte budget, and a blob too large to hold resident would not fit in the kit`,
    });
    return;
  }
  const file = `blobs/budget-${target.name}-too-wide.carvq`;
  addBlob(
    kit,
    file,
    `${wide.rows} x ${wide.cols} RVQ: one output row (${wide.cols * 4} bytes) plus the static data exceeds ${target.name}'s ${budget}-byte budget in any mode`,
    randomBlob(wide),
  );
  for (const mode of ["resident", "streaming"] as const)
    addCase(kit, module, {
      name: `budget-too-wide.${mode}`,
      kind: "budget",
      args: ["lookup", ...modeArgs(mode), file, "1"],
      expectedExit: RUNTIME_EXIT.budget,
      stdout: null,
      blob: file,
    });
}

/** Budgets: per target, a blob that fits only when streamed and one that cannot fit at all. */
function planBudgets(kit: KitBuilder, targets: readonly Target[]): void {
  const moduleOf = (target: Target) => kit.modules.find((m) => m.target === target.name)!;
  const streamed: { target: Target; blob: BudgetBlob }[] = [];
  for (const target of targets) {
    const blob = planStreamed(kit, target, moduleOf(target));
    if (blob !== null) streamed.push({ target, blob });
    planTooWide(kit, target, moduleOf(target));
  }
  // A resident target must hold the other targets' streamed blobs, which are far below its budget.
  for (const target of targets.filter((t) => t.mode === "resident")) {
    for (const { target: other, blob } of streamed) {
      if (other.name === target.name || blob.bytes.length + 1024 * 1024 > target.memoryBudgetBytes) continue;
      addCase(kit, moduleOf(target), {
        name: `budget-${other.name}-streamed.resident`,
        kind: "budget",
        args: ["lookup", "--mode", "resident", blob.file, ...blob.tokens.map(String)],
        expectedExit: 0,
        stdout: blob.expectedRows,
        blob: blob.file,
      });
    }
  }
}

export async function planKit(options: PlanOptions): Promise<KitPlan> {
  const kit: KitBuilder = { quick: options.quick, modules: kitModules(options.targets), blobs: [], cases: [], notCovered: [] };
  const variants = await planVariants(kit);
  planRefusals(kit, variants);
  planBudgets(kit, options.targets);
  kit.blobs.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  const names = new Set<string>();
  for (const c of kit.cases) {
    if (names.has(c.name)) throw new Error(`conformance: two cases named ${c.name}`);
    names.add(c.name);
  }
  return { modules: kit.modules, blobs: kit.blobs, cases: kit.cases, notCovered: kit.notCovered };
}
