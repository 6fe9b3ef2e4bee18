// Runs the WASM runtime under Node's own WASI (node:wasi, preview1) — the reference host.
//
//   const rt = await openRuntime({ blob: "model.carvq", target: "rpi-zero2w" });
//   const rows = rt.lookup([1, 2, 3]);     // Float32Array, 3 x cols, in the order asked
//   rt.info(); rt.lastRun?.peakMemoryBytes; rt.close();
//
// Each call is one run of the WASI command (a fresh instance of the compiled module): the blob's
// folder is preopened as /blob, stdout and stderr go to temporary files, the exit code and the
// memory the instance ended with (its peak) are recorded. A failed run throws CarvqError with the
// runtime's message and exit code.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { devNull, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { WASI } from "node:wasi";
import { CarvqError } from "../tools/errors.ts";
import {
  checkRun,
  GUEST_DIR,
  guestPath,
  lookupArgs,
  loadTarget,
  rowsOf,
  RUNTIME_EXIT,
  wasmPath,
  type AdaptorTuning,
  type BuildName,
  type ModeName,
  type RunResult,
  type RuntimeInfo,
  type Target,
} from "./common.ts";
import { closePreopens, wrappedImports } from "./node-wasi.ts";

export { RUNTIME_EXIT, loadTarget, loadTargets, bitDifferences, targetNames, wasmPath } from "./common.ts";
export type { AdaptorTuning, BuildName, ModeName, RunResult, RuntimeAdaptorInfo, RuntimeInfo, Target } from "./common.ts";

const modules = new Map<string, WebAssembly.Module>();

/** Compiles a module once per path (and file version) per process. */
export function compiledModule(path: string): WebAssembly.Module {
  const key = `${path}:${statSync(path).mtimeMs}`;
  let module = modules.get(key);
  if (module === undefined) {
    module = new WebAssembly.Module(readFileSync(path));
    modules.set(key, module);
  }
  return module;
}

export interface RunOptions {
  /** Folder for the stdout/stderr capture files (default: a fresh temporary folder). */
  scratchDir?: string;
  /** Send stdout to /dev/null instead of capturing it (benchmarks: the host never reads the rows). */
  discardStdout?: boolean;
  /** A host file read as the command's stdin (lookup --stdin); default: none. */
  stdinFile?: string;
}

/**
 * Runs the command once: `args` after the program name, `preopens` guest path -> host folder.
 * Never throws for a non-zero exit (see checkRun); a trap becomes exit code 70 with its message.
 */
export function runWasiCommand(
  wasm: string,
  args: readonly string[],
  preopens: Record<string, string>,
  options: RunOptions = {},
): RunResult {
  const module = compiledModule(wasm);
  const own = options.scratchDir === undefined;
  const dir = options.scratchDir ?? mkdtempSync(join(tmpdir(), "carvq-rt-"));
  try {
    return runIn(module, dir, args, preopens, options.discardStdout === true, options.stdinFile);
  } finally {
    if (own) rmSync(dir, { recursive: true, force: true });
  }
}

function runIn(
  module: WebAssembly.Module,
  dir: string,
  args: readonly string[],
  preopens: Record<string, string>,
  discardStdout: boolean,
  stdinFile?: string,
): RunResult {
  const outPath = discardStdout ? devNull : join(dir, "stdout");
  const errPath = join(dir, "stderr");
  const out = openSync(outPath, "w+");
  const err = openSync(errPath, "w+");
  const input = openSync(stdinFile ?? devNull, "r");
  let exitCode: number;
  let memory: WebAssembly.Memory | undefined;
  let trap = "";
  try {
    const wasi = new WASI({
      version: "preview1",
      args: ["carvq-rt", ...args],
      env: {},
      preopens,
      stdin: input,
      stdout: out,
      stderr: err,
      returnOnExit: true,
    });
    const instance = new WebAssembly.Instance(module, wrappedImports(wasi));
    memory = instance.exports.memory as WebAssembly.Memory;
    try {
      exitCode = wasi.start(instance);
    } catch (e) {
      exitCode = RUNTIME_EXIT.internal;
      trap = `carvq-rt: the runtime trapped: ${e instanceof Error ? e.message : String(e)}\n`;
    } finally {
      closePreopens(wasi, Object.keys(preopens).length);
    }
  } finally {
    closeSync(input);
    closeSync(out);
    closeSync(err);
  }
  return {
    exitCode,
    stdout: discardStdout ? new Uint8Array(0) : new Uint8Array(readFileSync(outPath)),
    stderr: readFileSync(errPath, "utf8") + trap,
    peakMemoryBytes: memory?.buffer.byteLength ?? 0,
  };
}

export interface OpenRuntimeOptions extends AdaptorTuning {
  /** Path of the blob file on the host. */
  blob: string;
  /** A device target (targets/<name>.json): its module, budget and default mode. */
  target?: string;
  /** Generic build when no target is given (default simd). */
  build?: BuildName;
  /** Overrides the module's default mode (auto = resident if it fits the budget). */
  mode?: ModeName;
}

export interface NodeRuntime {
  readonly blob: string;
  readonly wasmPath: string;
  readonly target: Target | null;
  /** Rows of `ids` in the order asked, ids.length x cols float32. */
  lookup(ids: readonly number[]): Float32Array;
  /** The blob's summary and the runtime's memory plan (validates the whole blob, CRCs included). */
  info(): RuntimeInfo;
  /** The last run (exit code, raw stdout/stderr, peak memory). */
  readonly lastRun: RunResult | null;
  /** The largest peak linear memory of all runs so far, bytes. */
  readonly peakMemoryBytes: number;
  close(): void;
}

/**
 * A handle on a blob for the runtime. Nothing runs yet: every lookup() or info() is one run of the
 * command, which validates the blob (header, bounds, CRCs) before it answers.
 */
export async function openRuntime(options: OpenRuntimeOptions): Promise<NodeRuntime> {
  const blob = resolve(options.blob);
  if (!existsSync(blob)) throw new CarvqError(`${options.blob}: cannot open (no such file)`, RUNTIME_EXIT.io);
  const wasm = wasmPath(options);
  const target = options.target !== undefined ? loadTarget(options.target) : null;
  const preopens = { [GUEST_DIR]: dirname(blob) };
  let lastRun: RunResult | null = null;
  let peak = 0;
  let closed = false;
  const run = (args: string[]): RunResult => {
    if (closed) throw new CarvqError("the runtime handle is closed");
    const result = runWasiCommand(wasm, args, preopens);
    lastRun = result;
    peak = Math.max(peak, result.peakMemoryBytes);
    checkRun(result, options.blob);
    return result;
  };
  const info = (): RuntimeInfo => ({
    ...(JSON.parse(new TextDecoder().decode(run(["info", guestPath(blob)]).stdout)) as RuntimeInfo),
    file: options.blob,
  });
  return {
    blob,
    wasmPath: wasm,
    target,
    lookup: (ids) => rowsOf(run(lookupArgs(blob, ids, options.mode, options)), ids.length),
    info,
    get lastRun() {
      return lastRun;
    },
    get peakMemoryBytes() {
      return peak;
    },
    close() {
      closed = true;
    },
  };
}
