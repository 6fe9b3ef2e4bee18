// One fuzzing campaign: iteration i builds its input from (seed, i) alone, feeds it to the
// TypeScript readers and, for blobs, to every runtime module (the generic SIMD and scalar builds
// and each device target) in a random mode on the minimal WASI host, and checks the outcome:
//
// - the TypeScript readers either accept or throw CarvqError (anything else is a crash);
// - the runtime exits with a documented code, one "carvq-rt: ... [exit N]" line on stderr and no
//   output when it refuses; never traps, never exits 70;
// - when the TypeScript reader accepts a blob, the runtime's rows are bit-identical to the
//   reference decoder's (NaN payloads aside), and when it refuses, the runtime refuses too;
// - peak linear memory stays inside the module's declared maximum and in proportion to the input;
// - every input is handled in bounded time (here measured; the CLI's watchdog also stops hangs).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bitDifferences, loadTargets, wasmPath } from "../../../host/common.ts";
import { runMinimalWasi, type MinimalWasiResult } from "../../../host/minimal-wasi.ts";
import { memoryLimits } from "../../../host/wasm-binary.ts";
import { parseBlob, type Blob } from "../../blob/reader.ts";
import { decodeTokens } from "../../decoder.ts";
import { CarvqError } from "../../errors.ts";
import { listTensors, loadMatrix } from "../../readers/index.ts";
import { readLlama2cHeader } from "../../readers/llama2c.ts";
import { blobMutation, fieldMutation, genericMutation, resealBlob, textMutation } from "./mutate.ts";
import { Rng } from "./rng.ts";
import { compressedBlobSeeds, modelSeeds, randomShapeBlob, type BlobSeed, type ModelSeed } from "./seeds.ts";

export type Mode = "resident" | "streaming" | "auto";
export const MODES: readonly Mode[] = ["resident", "streaming", "auto"];

/** A runtime module the campaign runs: a generic build or a device target's. */
export interface RuntimeConfig {
  /** "simd", "scalar" or the target's name. */
  name: string;
  build: "simd" | "scalar";
  module: WebAssembly.Module;
  maxBytes: number;
  /** The newest blob minor version the module reads (from its --version line). */
  maxMinor: number;
}

/** A module's bytes and what it is: read once, so a campaign is immune to rebuilds while it runs. */
export interface ModuleSource {
  name: string;
  build: "simd" | "scalar";
  bytes: Uint8Array;
}

/** The generic SIMD and scalar builds and every target's module, as built in build/. */
export function readModuleSources(): ModuleSource[] {
  const read = (name: string, build: "simd" | "scalar", path: string): ModuleSource => ({
    name,
    build,
    bytes: new Uint8Array(readFileSync(path)),
  });
  return [
    read("simd", "simd", wasmPath({ build: "simd" })),
    read("scalar", "scalar", wasmPath({ build: "scalar" })),
    ...loadTargets().map((t) => read(t.name, t.simd ? "simd" : "scalar", wasmPath({ target: t.name }))),
  ];
}

export function loadRuntimeConfigs(sources: readonly ModuleSource[] = readModuleSources()): RuntimeConfig[] {
  return sources.map(({ name, build, bytes }) => {
    const { maximumPages } = memoryLimits(bytes);
    const module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
    // "carvq-rt 0.1.0 (blob format 1.0 and 1.1, ...)": the last 1.N it names.
    const version = new TextDecoder().decode(runMinimalWasi(module, { args: ["--version"], preopens: [] }).stdout);
    const minors = [...(/blob format ([^,]*)/.exec(version)?.[1] ?? "1.0").matchAll(/1\.(\d+)/g)].map((m) => Number(m[1]));
    return { name, build, module, maxBytes: (maximumPages ?? 65536) * 65536, maxMinor: Math.max(0, ...minors) };
  });
}

export interface Finding {
  iteration: number;
  /** Short class, e.g. "rt-trap", "divergence", "ts-crash". */
  type: string;
  detail: string;
  input: "blob" | "model";
  seedName: string;
  ops: string[];
  config?: string;
  args?: string[];
  /** The input that produced it (the CLI saves it as a fixture). */
  bytes: Uint8Array;
  ext: string;
}

export interface CaseResult {
  iteration: number;
  input: "blob" | "model";
  ms: number;
  findings: Finding[];
}

/** Seconds one runtime run or reader call may take before it counts as a finding (no hang). */
export const SLOW_MS = 2000;

/** Counters of a campaign; merged across workers. */
export class Stats {
  iterations = 0;
  blobIterations = 0;
  modelIterations = 0;
  /** config -> mode -> { runs, accepted (exit 0), exit code -> count } */
  runtime: Record<string, Record<string, { runs: number; byExit: Record<string, number> }>> = {};
  /** normalized reason -> count */
  tsBlobReasons: Record<string, number> = {};
  tsModelReasons: Record<string, number> = {};
  runtimeReasons: Record<string, number> = {};
  mutations: Record<string, number> = {};
  tsBlobAccepted = 0;
  tsModelAccepted = 0;
  /** TypeScript refused only the METADATA JSON, which the runtime does not read: not a finding. */
  metadataOnlyDivergences = 0;
  /** Runs where TypeScript accepted a blob newer than the module reads (refused with exit 4, as documented). */
  newerThanRuntime = 0;
  findingsByType: Record<string, number> = {};
  maxRunMs = 0;
  maxReaderMs = 0;
  /** Largest peak / declared maximum seen per config. */
  maxPeakFraction: Record<string, number> = {};
  elapsedMs = 0;

  static bump(map: Record<string, number>, key: string, by = 1): void {
    map[key] = (map[key] ?? 0) + by;
  }

  merge(other: Stats): void {
    const plain = other;
    this.iterations += plain.iterations;
    this.blobIterations += plain.blobIterations;
    this.modelIterations += plain.modelIterations;
    this.tsBlobAccepted += plain.tsBlobAccepted;
    this.tsModelAccepted += plain.tsModelAccepted;
    this.metadataOnlyDivergences += plain.metadataOnlyDivergences;
    this.newerThanRuntime += plain.newerThanRuntime;
    this.maxRunMs = Math.max(this.maxRunMs, plain.maxRunMs);
    this.maxReaderMs = Math.max(this.maxReaderMs, plain.maxReaderMs);
    for (const key of ["tsBlobReasons", "tsModelReasons", "runtimeReasons", "mutations", "findingsByType"] as const) {
      for (const [k, v] of Object.entries(plain[key])) Stats.bump(this[key], k, v);
    }
    for (const [k, v] of Object.entries(plain.maxPeakFraction)) this.maxPeakFraction[k] = Math.max(this.maxPeakFraction[k] ?? 0, v);
    for (const [config, modes] of Object.entries(plain.runtime)) {
      for (const [mode, r] of Object.entries(modes)) {
        const mine = ((this.runtime[config] ??= {})[mode] ??= { runs: 0, byExit: {} });
        mine.runs += r.runs;
        for (const [code, n] of Object.entries(r.byExit)) Stats.bump(mine.byExit, code, n);
      }
    }
  }

  static from(json: unknown): Stats {
    return Object.assign(new Stats(), json);
  }
}

/** "file: header field rows is 0; expected 1 to 16777216" -> "header field rows is #". */
export function normalizeReason(message: string, prefixes: readonly string[] = []): string {
  let text = message.trim();
  for (const p of prefixes) if (p && text.startsWith(p)) text = text.slice(p.length);
  text = text.replace(/^: /, "");
  text = text
    .replace(/0x[0-9a-f]+/gi, "#")
    .replace(/\d+/g, "#")
    .replace(/'[^']*'/g, "'…'")
    .replace(/"[^"]*"/g, '"…"');
  // "section # (CODES): offset # is not ..." keeps its section label.
  const label = /^((?:bad blob: )?section # \([^)]*\): )/.exec(text)?.[1] ?? "";
  let rest = text.slice(label.length);
  const cut = rest.search(/;|, expected| \(| but |: expected/);
  if (cut > 0) rest = rest.slice(0, cut);
  text = label + rest;
  return text.length > 90 ? `${text.slice(0, 87)}...` : text;
}

/** TypeScript refusals that concern only the METADATA JSON, which the runtime (rightly) does not parse. */
function metadataOnly(reason: string): boolean {
  return /METADATA section is not (valid UTF-8 JSON|a JSON object)/.test(reason);
}

/** Token arguments the runtime must refuse as usage errors (not a whole number below 2^32). */
const BAD_TOKEN_ARGS = ["-1", "abc", "", "4294967296", "99999999999999999999", "+5", " 5", "5 ", "0x10", "1e3", "1.0", "\u0663", "--", "-"];

/** Control characters (terminal escapes, line breaks) and bidirectional overrides. */
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

const STDERR_LINE = /^carvq-rt: [^\n]* \[exit (\d+)\]\n$/;
const GUEST_DIR = "/flash";
const GUEST_FILE = "m.carvq";

/** Whether the runtime's rows (raw little-endian f32 bytes) are the reference decoder's, bit for bit (any NaN matches any NaN). */
export function rowsAgree(actual: Uint8Array, want: Float32Array): boolean {
  return actual.byteLength === want.byteLength && bitDifferences(new Float32Array(actual.slice().buffer), want) === 0;
}

export interface CampaignOptions {
  seed: number;
  /** The runtime modules (default: read from build/ now). */
  modules?: readonly ModuleSource[];
  /** Folder for the model files the readers open (one file per iteration, overwritten). */
  workDir?: string;
  /** Fraction of iterations that are model files (default 0.3). */
  modelShare?: number;
  /** The blobs to mutate (Campaign.create makes compressedBlobSeeds()). */
  blobSeeds: BlobSeed[];
}

/** A campaign's fixed state: seed corpora, runtime modules, scratch folder. Iterations are independent. */
export class Campaign {
  readonly seed: number;
  readonly configs: RuntimeConfig[];
  readonly blobSeeds: BlobSeed[];
  readonly modelSeeds: ModelSeed[];
  readonly stats = new Stats();
  private readonly workDir: string;
  private readonly ownWorkDir: boolean;
  private readonly modelShare: number;

  /** A campaign over the compressor's own blobs (compressedBlobSeeds). */
  static async create(options: Omit<CampaignOptions, "blobSeeds">): Promise<Campaign> {
    return new Campaign({ ...options, blobSeeds: await compressedBlobSeeds() });
  }

  constructor(options: CampaignOptions) {
    this.seed = options.seed >>> 0;
    this.configs = loadRuntimeConfigs(options.modules);
    this.blobSeeds = options.blobSeeds;
    this.modelSeeds = modelSeeds();
    this.ownWorkDir = options.workDir === undefined;
    this.workDir = options.workDir ?? mkdtempSync(join(tmpdir(), "carvq-fuzz-"));
    mkdirSync(this.workDir, { recursive: true });
    this.modelShare = options.modelShare ?? 0.3;
  }

  close(): void {
    if (this.ownWorkDir) rmSync(this.workDir, { recursive: true, force: true });
  }

  /** Runs iteration i and records it in `stats`. */
  run(i: number): CaseResult {
    const started = performance.now();
    const rng = new Rng(this.seed, i);
    const isModel = rng.float() < this.modelShare;
    const findings = isModel ? this.modelCase(i, rng) : this.blobCase(i, rng);
    this.stats.iterations++;
    for (const f of findings) Stats.bump(this.stats.findingsByType, f.type);
    return { iteration: i, input: isModel ? "model" : "blob", ms: performance.now() - started, findings };
  }

  /** The input of iteration i without running it (for --replay and fixtures). */
  input(i: number): { input: "blob" | "model"; bytes: Uint8Array; seedName: string; ops: string[]; ext: string } {
    const rng = new Rng(this.seed, i);
    if (rng.float() < this.modelShare) {
      const m = this.mutateModel(rng);
      return { input: "model", bytes: m.bytes, seedName: m.seed.name, ops: m.ops, ext: m.ext };
    }
    const b = this.mutateBlob(rng);
    return { input: "blob", bytes: b.bytes, seedName: b.seedName, ops: b.ops, ext: ".carvq" };
  }

  // ---------------------------------------------------------------------------------------- blobs

  private mutateBlob(rng: Rng): { bytes: Uint8Array; seedName: string; ops: string[] } {
    const seed = rng.chance(0.5) ? rng.pick(this.blobSeeds) : randomShapeBlob(rng);
    let bytes = seed.bytes;
    const ops: string[] = [];
    const count = rng.chance(0.1) ? 0 : rng.small(3);
    for (let k = 0; k < count; k++) {
      const m = blobMutation(rng, bytes);
      bytes = m.bytes;
      ops.push(m.op);
    }
    if (count > 0 && rng.chance(0.6)) {
      bytes = bytes.slice();
      resealBlob(bytes);
      ops.push("reseal");
    }
    if (count === 0) ops.push("none");
    return { bytes, seedName: seed.name, ops };
  }

  private blobCase(i: number, rng: Rng): Finding[] {
    const { bytes, seedName, ops } = this.mutateBlob(rng);
    return this.examineBlob(i, bytes, seedName, ops, rng);
  }

  /**
   * Feeds one blob to the TypeScript reader and to the runtime modules (all, or those named in
   * `only`), with tokens, modes and host quirks drawn from `rng`, and returns what went wrong.
   */
  examineBlob(i: number, bytes: Uint8Array, seedName: string, ops: string[], rng: Rng, only?: readonly string[]): Finding[] {
    this.stats.blobIterations++;
    for (const op of ops) Stats.bump(this.stats.mutations, op);
    const findings: Finding[] = [];
    const finding = (type: string, detail: string, config?: string, args?: string[]) =>
      findings.push({ iteration: i, type, detail, input: "blob", seedName, ops, config, args, bytes, ext: ".carvq" });

    // The TypeScript reader: accept, or refuse with a CarvqError.
    let blob: Blob | null = null;
    let tsReason = "";
    const t0 = performance.now();
    try {
      blob = parseBlob(bytes, "m.carvq");
    } catch (err) {
      if (err instanceof CarvqError) {
        tsReason = err.message;
        if (UNSAFE_TEXT.test(err.message)) finding("ts-unsafe-message", JSON.stringify(err.message.slice(0, 300)));
      } else finding("ts-crash", `parseBlob threw ${String(err)}`);
    }
    this.stats.maxReaderMs = Math.max(this.stats.maxReaderMs, performance.now() - t0);
    if (performance.now() - t0 > SLOW_MS) finding("ts-slow", `parseBlob took ${(performance.now() - t0).toFixed(0)} ms`);
    if (blob) this.stats.tsBlobAccepted++;
    else Stats.bump(this.stats.tsBlobReasons, normalizeReason(tsReason, ["m.carvq"]));

    // Tokens: mostly in range, sometimes the first out of range.
    const view = bytes.length >= 24 ? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) : null;
    const rows = blob ? blob.header.rows : Math.max(1, Math.min(1000, view ? view.getUint32(20, true) : 1));
    const tokens: number[] = [];
    // Now and then a long request: thousands of tokens fill a small target's budget (exit 6) or its output buffer.
    const cols = blob ? blob.header.cols : Math.max(1, Math.min(65536, view && bytes.length >= 28 ? view.getUint32(24, true) : 1));
    const n = Math.min(rng.chance(0.03) ? rng.range(100, 4000) : rng.small(6), Math.max(1, Math.floor(2 ** 22 / cols)));
    for (let k = 0; k < n; k++) {
      const r = rng.float();
      tokens.push(
        r < 0.85 ? rng.int(rows) : r < 0.92 ? rows - 1 : r < 0.97 ? rows : rng.pick([rows + 1, 4294967295, rows + rng.int(1000)]),
      );
    }
    const inRange = tokens.every((t) => t < rows);
    // Sometimes a token argument the runtime must refuse as usage (exit 2) before opening anything,
    // or a valid one with leading zeros.
    // (At most 10 digits: the runtime reads no longer numbers.)
    const tokenArgs = tokens.map((t) => (rng.chance(0.03) ? `00${t}`.slice(-Math.max(10, String(t).length)) : String(t)));
    const badArg = rng.chance(0.05) ? rng.pick(BAD_TOKEN_ARGS) : null;
    if (badArg !== null) tokenArgs.splice(rng.int(tokenArgs.length + 1), 0, badArg);
    let want: Float32Array | null = null;
    if (blob && inRange) {
      try {
        want = decodeTokens(blob, tokens);
      } catch (err) {
        finding("ts-crash", `decodeTokens threw ${String(err)}`);
      }
    }

    for (const config of this.configs) {
      if (only && !only.includes(config.name)) continue;
      const mode = rng.pick(MODES);
      const info = rng.chance(0.15);
      const args = info
        ? ["info", `${GUEST_DIR}/${GUEST_FILE}`]
        : ["lookup", ...(mode === "auto" && rng.chance(0.5) ? [] : ["--mode", mode]), `${GUEST_DIR}/${GUEST_FILE}`, ...tokenArgs];
      const modeKey = info ? "info" : mode;
      const short = rng.chance(0.2) ? rng.range(1, 300) : undefined;
      // A component host's adapter grows a page of its own (jco); only where the budget has room.
      const foreignPages = config.maxBytes >= 4 * 2 ** 20 && rng.chance(0.1) ? 1 : undefined;
      let run: MinimalWasiResult;
      const r0 = performance.now();
      try {
        run = runMinimalWasi(config.module, {
          args,
          preopens: [{ name: GUEST_DIR, files: { [GUEST_FILE]: bytes } }],
          nulInPreopenNames: rng.chance(0.2),
          maxReadBytes: short,
          foreignPages,
        });
      } catch (err) {
        finding(
          "rt-trap",
          `${config.name} ${modeKey}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
          config.name,
          args,
        );
        Stats.bump(((this.stats.runtime[config.name] ??= {})[modeKey] ??= { runs: 0, byExit: {} }).byExit, "trap");
        continue;
      }
      const ms = performance.now() - r0;
      this.stats.maxRunMs = Math.max(this.stats.maxRunMs, ms);
      const slot = ((this.stats.runtime[config.name] ??= {})[modeKey] ??= { runs: 0, byExit: {} });
      slot.runs++;
      Stats.bump(slot.byExit, String(run.exitCode));
      const fraction = run.peakMemoryBytes / config.maxBytes;
      this.stats.maxPeakFraction[config.name] = Math.max(this.stats.maxPeakFraction[config.name] ?? 0, fraction);
      const where = `${config.name} ${modeKey}`;
      const bad = (type: string, detail: string) => finding(type, `${where}: ${detail}`, config.name, args);
      if (ms > SLOW_MS) bad("rt-slow", `took ${ms.toFixed(0)} ms`);
      if (run.peakMemoryBytes > config.maxBytes)
        bad("rt-over-budget", `peak ${run.peakMemoryBytes} bytes > declared maximum ${config.maxBytes}`);
      // A lying header must not make the runtime commit memory out of proportion to the file.
      if (run.peakMemoryBytes > bytes.length + 8 * 2 ** 20)
        bad("rt-memory", `peak ${run.peakMemoryBytes} bytes for a ${bytes.length}-byte blob`);
      if (run.exitCode !== 0) {
        Stats.bump(
          this.stats.runtimeReasons,
          `${run.exitCode} ${normalizeReason(run.stderr.replace(/ \[exit \d+\]\n?$/, ""), ["carvq-rt: ", `${GUEST_DIR}/${GUEST_FILE}`])}`,
        );
        const line = STDERR_LINE.exec(run.stderr);
        if (!line || Number(line[1]) !== run.exitCode)
          bad("rt-stderr", `exit ${run.exitCode} with stderr ${JSON.stringify(run.stderr.slice(0, 200))}`);
        if (run.stdout.length > 0) bad("rt-partial-output", `exit ${run.exitCode} after writing ${run.stdout.length} bytes to stdout`);
      } else if (run.stderr !== "") bad("rt-stderr", `exit 0 with stderr ${JSON.stringify(run.stderr.slice(0, 200))}`);
      if (run.exitCode === 70) bad("rt-internal", run.stderr.trim());
      if (run.foreignPagesIntact === false) bad("rt-foreign-pages", "wrote into the page the host grew for itself");
      if (
        run.calls.fd_close !== undefined &&
        run.calls.path_open !== undefined &&
        run.calls.fd_close !== run.calls.path_open &&
        run.exitCode === 0
      ) {
        bad("rt-fd-leak", `opened ${run.calls.path_open} files, closed ${run.calls.fd_close}`);
      }
      // A budget refusal is a documented outcome only where the blob could plausibly not fit.
      const budgetPlausible = config.maxBytes < bytes.length + 2 ** 20;
      // A blob using a feature newer than the module reads (an adaptor, v1.2, on a 1.1 runtime) is
      // refused with exit 4; one merely labelled newer may be refused or read.
      const needsMinor = blob === null ? 0 : blob.adaptor ? 2 : blob.rowScales ? 1 : 0;
      const newer = blob !== null && needsMinor > config.maxMinor;
      if (newer) this.stats.newerThanRuntime++;
      const accepted = blob !== null && !newer;
      const expected: number[] = accepted ? (info || inRange ? [0] : [5]) : [4, 5];
      if (accepted && blob!.header.versionMinor > config.maxMinor) expected.push(4);
      if (badArg !== null && !info) expected.splice(0, expected.length, 2);
      if (budgetPlausible) expected.push(6);
      if (!expected.includes(run.exitCode)) {
        if (!accepted && run.exitCode === 0 && metadataOnly(tsReason)) this.stats.metadataOnlyDivergences++;
        else if (run.exitCode !== 70) {
          const ts = accepted ? "TypeScript accepts the blob" : `TypeScript refuses it (${tsReason})`;
          bad(
            accepted ? "rt-refuses-valid" : run.exitCode === 0 ? "rt-accepts-invalid" : "rt-unexpected-exit",
            `${ts}; the runtime exits ${run.exitCode}: ${run.stderr.trim()}`,
          );
        }
      }
      if (run.exitCode === 0 && accepted) {
        if (info) {
          try {
            const json = JSON.parse(new TextDecoder().decode(run.stdout)) as { rows: number; cols: number; rowScales: number };
            if (json.rows !== blob!.header.rows || json.cols !== blob!.header.cols || json.rowScales !== (blob!.rowScales?.length ?? 0)) {
              bad(
                "rt-info-mismatch",
                `info says ${json.rows} x ${json.cols}, R ${json.rowScales}; TypeScript ${blob!.header.rows} x ${blob!.header.cols}, R ${blob!.rowScales?.length ?? 0}`,
              );
            }
          } catch {
            bad("rt-info-json", `info printed ${JSON.stringify(new TextDecoder().decode(run.stdout).slice(0, 200))}`);
          }
        } else if (want && badArg === null && !rowsAgree(run.stdout, want)) {
          bad("rt-wrong-output", `rows differ from the reference decoder for tokens ${tokens.join(",")}`);
        }
      }
    }
    return findings;
  }

  // ---------------------------------------------------------------------------------------- model files

  private mutateModel(rng: Rng): { seed: ModelSeed; bytes: Uint8Array; ops: string[]; ext: string } {
    const seed = rng.pick(this.modelSeeds);
    let bytes = seed.bytes;
    const ops: string[] = [];
    const count = rng.chance(0.08) ? 0 : rng.small(3);
    for (let k = 0; k < count; k++) {
      const r = rng.float();
      const m =
        r < 0.35
          ? genericMutation(rng, bytes)
          : r < 0.7 || seed.text.length === 0
            ? fieldMutation(rng, bytes, seed.fields)
            : textMutation(rng, bytes, rng.pick(seed.text), rng.chance(0.7));
      bytes = m.bytes;
      ops.push(`${seed.format}:${m.op}`);
    }
    if (count === 0) ops.push("none");
    const ext = rng.chance(0.85) ? seed.ext : rng.pick([".bin", ".npy", ".gguf", ".safetensors", ".dat"]);
    return { seed, bytes, ops, ext };
  }

  private modelCase(i: number, rng: Rng): Finding[] {
    const { seed, bytes, ops, ext } = this.mutateModel(rng);
    return this.examineModel(i, bytes, seed, ops, ext);
  }

  /**
   * Feeds one model file (written as `model<ext>`) to the readers: format detection, the tensor
   * catalog, the llama2.c layout, and loading the embedding. `seed` is what it was made from; an
   * unmutated file (ops ["none"]) must read back exactly.
   */
  examineModel(i: number, bytes: Uint8Array, seed: ModelSeed, ops: string[], ext: string): Finding[] {
    this.stats.modelIterations++;
    for (const op of ops) Stats.bump(this.stats.mutations, op);
    const findings: Finding[] = [];
    const finding = (type: string, detail: string) =>
      findings.push({ iteration: i, type, detail, input: "model", seedName: seed.name, ops, bytes, ext });
    const path = join(this.workDir, `model${ext}`);
    writeFileSync(path, bytes);
    const attempt = <T>(what: string, body: () => T): { value?: T; reason?: string } => {
      const t0 = performance.now();
      try {
        return { value: body() };
      } catch (err) {
        if (err instanceof CarvqError) {
          // One printable line: names from the file must not reach the terminal raw.
          if (UNSAFE_TEXT.test(err.message)) finding("ts-unsafe-message", `${what}: ${JSON.stringify(err.message.slice(0, 300))}`);
          return { reason: err.message };
        }
        finding("ts-crash", `${what} threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
        return { reason: "crash" };
      } finally {
        const ms = performance.now() - t0;
        this.stats.maxReaderMs = Math.max(this.stats.maxReaderMs, ms);
        if (ms > SLOW_MS) finding("ts-slow", `${what} took ${ms.toFixed(0)} ms`);
      }
    };
    attempt("listTensors", () => listTensors(path));
    if (seed.format === "llama2c") attempt("readLlama2cHeader", () => readLlama2cHeader(path));
    const loaded = attempt("loadMatrix", () => loadMatrix(path));
    if (loaded.value) {
      this.stats.tsModelAccepted++;
      const { matrix, tensor } = loaded.value;
      if (matrix.data.length !== matrix.rows * matrix.cols)
        finding("ts-bad-matrix", `${matrix.rows} x ${matrix.cols} matrix holds ${matrix.data.length} values`);
      if (matrix.data.byteLength > 2 * bytes.length)
        finding("ts-memory", `a ${bytes.length}-byte file gave a ${matrix.data.byteLength}-byte matrix`);
      if (!matrix.data.every(Number.isFinite)) finding("ts-nonfinite", "the matrix holds NaN or Inf");
      if (ops[0] === "none") {
        const e = seed.expect;
        const same =
          tensor === e.tensor && matrix.rows === e.rows && matrix.cols === e.cols && matrix.data.every((v, k) => v === e.values[k]);
        if (!same)
          finding("ts-wrong-matrix", `the unmutated ${seed.name} read as '${tensor}' ${matrix.rows} x ${matrix.cols}, not as expected`);
      }
    } else if (loaded.reason !== "crash") {
      Stats.bump(this.stats.tsModelReasons, `${seed.format}: ${normalizeReason(loaded.reason ?? "", [path])}`);
      if (ops[0] === "none") finding("ts-refuses-valid", `the unmutated ${seed.name} was refused: ${loaded.reason}`);
    }
    return findings;
  }
}
