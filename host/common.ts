// What the Node and jco hosts share: where the built modules are, the device targets, the
// runtime's exit codes, and turning a failed run into a CarvqError.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { CarvqError } from "../tools/errors.ts";
import { EXIT } from "../tools/exit-codes.ts";
import { packageRoot } from "../tools/built.ts";

export type BuildName = "simd" | "scalar";
export type ModeName = "resident" | "streaming";

/** Exit codes of the runtime: the tools' table (tools/exit-codes.ts, mirrored by assembly/exit.ts). */
export const RUNTIME_EXIT = EXIT;

/** A device profile from targets/<name>.json. */
export interface Target {
  name: string;
  engine: string;
  simd: boolean;
  memoryBudgetBytes: number;
  mode: ModeName;
  description: string;
  blobSizes?: string;
  /** The blob shape the conformance tests run on this target. */
  representative?: { rows: number; cols: number; subvec: number; levels: number; group: number; layout: "row" | "col" };
}

/** The package root (tools/built.ts): host/ and dist/ (where the CLI bundle lives) both sit one level below it. */
export const projectRoot = packageRoot;

export function buildDir(): string {
  return join(projectRoot(), "build");
}

export function targetNames(): string[] {
  const dir = join(projectRoot(), "targets");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .sort();
}

export function loadTarget(name: string): Target {
  const names = targetNames();
  if (!names.includes(name)) throw new CarvqError(`unknown target '${name}' (known: ${names.join(", ")})`);
  return JSON.parse(readFileSync(join(projectRoot(), "targets", `${name}.json`), "utf8")) as Target;
}

export function loadTargets(): Target[] {
  return targetNames().map(loadTarget);
}

/** The module for a target (build/targets/<name>.wasm) or a generic build. */
export function wasmPath(options: { target?: string; build?: BuildName }): string {
  let path: string;
  if (options.target !== undefined) {
    const target = loadTarget(options.target);
    if (options.build !== undefined && options.build !== (target.simd ? "simd" : "scalar")) {
      throw new CarvqError(`target ${target.name} uses the ${target.simd ? "simd" : "scalar"} build, not ${options.build}`);
    }
    path = join(buildDir(), "targets", `${target.name}.wasm`);
  } else {
    path = join(buildDir(), options.build === "scalar" ? "carvq-rt-scalar.wasm" : "carvq-rt.wasm");
  }
  if (!existsSync(path)) throw new CarvqError(`${path}: not built (run npm run build)`);
  return path;
}

/** Where the blob appears inside the sandbox: its folder is preopened as GUEST_DIR. */
export const GUEST_DIR = "/blob";

export function guestPath(blob: string): string {
  return `${GUEST_DIR}/${basename(blob)}`;
}

/** The JSON `info` prints (see assembly/main.ts). */
export interface RuntimeInfo {
  format: "carvq";
  formatVersion: string;
  file: string;
  fileBytes: number;
  method: "rvq" | "int4" | "int3" | "int2";
  rows: number;
  cols: number;
  subvec: number;
  levels: number;
  codebookSize: number;
  group: number;
  layout: "row" | "col" | null;
  codeBits: number;
  rowBytes: number;
  groupCount: number;
  /** v1.1 gain-shape: R, the number of row scales in the ROW_SCALES section; 0 without one. */
  rowScales: number;
  /** v1.2 corrective adaptor; null without one. */
  adaptor: RuntimeAdaptorInfo | null;
  bitsPerParameter: number;
  sections: { id: number; name: string; offset: number; length: number; crc: string }[];
  runtime: {
    version: string;
    build: BuildName;
    budgetBytes: number;
    /** Static data below the arena (string literals, CRC tables, scratch words). */
    staticBytes: number;
    defaultMode: ModeName | "auto";
    residentBytes: number;
    residentFits: boolean;
    streamingBytes: number;
    streamingFits: boolean;
    peakMemoryBytes: number;
  };
}

/** What `info` reports about a v1.2 blob's adaptor. */
export interface RuntimeAdaptorInfo {
  tablePrecision: "int8" | "fp16";
  mlpPrecision: "int8" | "fp16";
  m0: number;
  /** C, the number of MLP layers. */
  layers: number;
  /** w_0 = m0 ... w_C = cols. */
  widths: number[];
  /** Bytes of the ADAPTOR_TABLE section and of one of its records. */
  tableBytes: number;
  tableRowBytes: number;
  /** Bytes of the ADAPTOR_MLP section (what streaming holds when it keeps the whole MLP). */
  mlpBytes: number;
  /** Arena bytes the adaptor adds at the least: resident (one token's activations) and streaming (+ a table record and one tile). */
  residentBytes: number;
  streamingBytes: number;
  /** The smallest streaming tile: one output channel of the widest layer. */
  minTileBytes: number;
}

/** One finished run of the command. */
export interface RunResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: string;
  /** Linear memory at the end of the run, pages x 64 KiB: the peak, since memory never shrinks. Node host only. */
  peakMemoryBytes: number;
}

/** Throws the runtime's one-line error as a CarvqError with the runtime's exit code. */
export function checkRun(run: RunResult, blob: string): void {
  if (run.exitCode === 0) return;
  const line = run.stderr.split("\n").find((l) => l.startsWith("carvq-rt: ")) ?? run.stderr.trim().split("\n").pop() ?? "";
  const tagged = /\s*\[exit (\d+)\]$/.exec(line);
  const code = tagged ? Number(tagged[1]) : run.exitCode;
  const message = line
    .slice(0, tagged ? tagged.index : line.length)
    .replace(/^carvq-rt: /, "")
    .split(guestPath(blob))
    .join(blob);
  throw new CarvqError(message || `the runtime failed with exit code ${run.exitCode}`, code);
}

/** The rows a lookup printed (count rows of the same width), checked for a whole number of rows. */
export function rowsOf(run: RunResult, count: number): Float32Array {
  const bytes = run.stdout;
  if (bytes.byteLength === 0 || bytes.byteLength % (count * 4) !== 0) {
    throw new CarvqError(`the runtime wrote ${bytes.byteLength} bytes for ${count} rows of float32 values`, RUNTIME_EXIT.internal);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

/** Tuning of the adaptor's evaluation (v1.2 blobs; the runtime ignores them otherwise). */
export interface AdaptorTuning {
  /** At most this many tokens evaluated together (--adaptor-batch). */
  adaptorBatch?: number;
  /** At most this many bytes of the adaptor's MLP in memory at once (--adaptor-tile): below its size, streaming reads it in tiles. */
  adaptorTile?: number;
}

function tuningArgs(tuning: AdaptorTuning): string[] {
  const args: string[] = [];
  for (const [flag, value] of [
    ["--adaptor-batch", tuning.adaptorBatch],
    ["--adaptor-tile", tuning.adaptorTile],
  ] as const) {
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1 || value > 0xffffffff)
      throw new CarvqError(`${flag} must be a whole number from 1 to 4294967295, got ${value}`, RUNTIME_EXIT.usage);
    args.push(flag, String(value));
  }
  return args;
}

/**
 * How many values of `got` differ in their bits from `want` (NaN matches any NaN: wasm may
 * canonicalize payloads). The runtime's rows, adaptor included, must match the reference decoder
 * bit for bit (FORMAT.md: the adaptor's sums have one fixed order), so conformance wants 0.
 */
export function bitDifferences(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) throw new RangeError(`row sets differ in size: ${got.length} and ${want.length} values`);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  const isNaNBits = (bits: number) => (bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0;
  let count = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(isNaNBits(a[i]) && isNaNBits(b[i]))) count++;
  return count;
}

export function lookupArgs(blob: string, ids: readonly number[], mode: ModeName | undefined, tuning: AdaptorTuning = {}): string[] {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff)
      throw new CarvqError(`token ${id} is not a whole number from 0 to 4294967295`, RUNTIME_EXIT.usage);
  }
  if (ids.length === 0) throw new CarvqError("no token to look up", RUNTIME_EXIT.usage);
  return ["lookup", ...(mode ? ["--mode", mode] : []), ...tuningArgs(tuning), guestPath(blob), ...ids.map(String)];
}
