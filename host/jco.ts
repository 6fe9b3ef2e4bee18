// Runs the runtime as a WASI preview2 command component (build/carvq-rt.component.wasm, made by
// `jco new --wasi-command`) with `jco run`, the jco CLI, as a child process: the same commands
// and output as the Node host, through the component model's preview1 adapter. About 1 s per run
// (jco transpiles the component each time).
//
// `jco run` preopens no directory by default; the host passes --jco-import with a small module
// that preopens the blob's folder as /blob in jco's preview2 shim. wasi:cli/exit only carries
// success or failure (jco exits 1 for any error), so the exit code is read back from the
// runtime's error line, which ends with " [exit N]".
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CarvqError } from "../tools/errors.ts";
import { EXIT } from "../tools/exit-codes.ts";
import {
  buildDir, checkRun, GUEST_DIR, guestPath, lookupArgs, rowsOf, RUNTIME_EXIT,
  type AdaptorTuning, type ModeName, type RunResult, type RuntimeInfo,
} from "./common.ts";

export function componentPath(): string {
  const path = join(buildDir(), "carvq-rt.component.wasm");
  if (!existsSync(path)) throw new CarvqError(`${path}: not built (run npm run build)`);
  return path;
}

function jcoPaths(): { cli: string; filesystemShim: string } {
  const require = createRequire(import.meta.url);
  let api: string;
  try {
    api = require.resolve("@bytecodealliance/jco");
  } catch {
    throw new CarvqError("--host jco needs the @bytecodealliance/jco package (a development dependency: run from the clone after npm ci, or install it beside carvq)", EXIT.usage);
  }
  const cli = join(dirname(api), "jco.js");
  const fromJco = createRequire(api);
  return { cli, filesystemShim: fromJco.resolve("@bytecodealliance/preview2-shim/filesystem") };
}

/**
 * Runs `jco run <component> ...args` with `preopens` (guest path -> host folder). Resolves with
 * the exit status jco reports (0 or 1) and the raw output; never rejects for a failed run.
 * `component` defaults to the runtime's (the bench passes build/bench/simd.component.wasm).
 */
export async function runJcoCommand(args: readonly string[], preopens: Record<string, string>, component: string = componentPath()): Promise<RunResult> {
  const { cli, filesystemShim } = jcoPaths();
  const dir = mkdtempSync(join(tmpdir(), "carvq-jco-"));
  try {
    const setup = join(dir, "preopens.mjs");
    writeFileSync(setup, `import { _setPreopens } from ${JSON.stringify(pathToFileURL(filesystemShim).href)};\n_setPreopens(${JSON.stringify(preopens)});\n`);
    return await new Promise<RunResult>((resolvePromise, reject) => {
      execFile(
        process.execPath,
        ["--no-warnings", cli, "run", "--jco-import", setup, component, ...args],
        { encoding: "buffer", maxBuffer: 1 << 30 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
          if (code === null) {
            reject(new CarvqError(`jco run failed to start: ${error?.message ?? "unknown error"}`, RUNTIME_EXIT.internal));
            return;
          }
          resolvePromise({ exitCode: code, stdout: new Uint8Array(stdout), stderr: stderr.toString("utf8"), peakMemoryBytes: 0 });
        },
      );
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface OpenJcoRuntimeOptions extends AdaptorTuning {
  blob: string;
  mode?: ModeName;
}

export interface JcoRuntime {
  readonly blob: string;
  lookup(ids: readonly number[]): Promise<Float32Array>;
  info(): Promise<RuntimeInfo>;
  readonly lastRun: RunResult | null;
  close(): void;
}

/** A handle on a blob for the component under jco; each lookup() or info() is one `jco run`. */
export async function openJcoRuntime(options: OpenJcoRuntimeOptions): Promise<JcoRuntime> {
  const blob = resolve(options.blob);
  if (!existsSync(blob)) throw new CarvqError(`${options.blob}: cannot open (no such file)`, RUNTIME_EXIT.io);
  componentPath();
  const preopens = { [GUEST_DIR]: dirname(blob) };
  let lastRun: RunResult | null = null;
  const run = async (args: string[]): Promise<RunResult> => {
    const result = await runJcoCommand(args, preopens);
    lastRun = result;
    checkRun(result, options.blob);
    return result;
  };
  const info = async (): Promise<RuntimeInfo> => ({ ...(JSON.parse(new TextDecoder().decode((await run(["info", guestPath(blob)])).stdout)) as RuntimeInfo), file: options.blob });
  return {
    blob,
    lookup: async (ids) => rowsOf(await run(lookupArgs(blob, ids, options.mode, options)), ids.length),
    info,
    get lastRun() {
      return lastRun;
    },
    close() {},
  };
}
