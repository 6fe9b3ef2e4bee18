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
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CarvqError } from "../tools/errors.ts";
import { EXIT } from "../tools/exit-codes.ts";
import {
  buildDir,
  checkRun,
  GUEST_DIR,
  guestPath,
  lookupArgs,
  rowsOf,
  RUNTIME_EXIT,
  type AdaptorTuning,
  type ModeName,
  type RunResult,
  type RuntimeInfo,
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
    throw new CarvqError(
      "--host jco needs the @bytecodealliance/jco package (a development dependency: run from the clone after npm ci, or install it beside carvq)",
      EXIT.usage,
    );
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
export async function runJcoCommand(
  args: readonly string[],
  preopens: Record<string, string>,
  component: string = componentPath(),
): Promise<RunResult> {
  const { cli, filesystemShim } = jcoPaths();
  const dir = mkdtempSync(join(tmpdir(), "carvq-jco-"));
  try {
    const setup = join(dir, "preopens.mjs");
    writeFileSync(
      setup,
      `import { _setPreopens } from ${JSON.stringify(pathToFileURL(filesystemShim).href)};\n_setPreopens(${JSON.stringify(preopens)});\n`,
    );
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
  const info = async (): Promise<RuntimeInfo> => ({
    ...(JSON.parse(new TextDecoder().decode((await run(["info", guestPath(blob)])).stdout)) as RuntimeInfo),
    file: options.blob,
  });
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

/** The WIT component of the runtime library (build/lib/carvq.component.wasm, world carvq:embedding/runtime). */
export function tableComponentPath(): string {
  const path = join(buildDir(), "lib", "carvq.component.wasm");
  if (!existsSync(path)) throw new CarvqError(`${path}: not built (run npm run build)`);
  return path;
}

/** What the component's `open` returns (wit/carvq.wit, record info). */
export interface ComponentTableInfo {
  rows: number;
  cols: number;
  bitsPerParameter: number;
}

/** The `table` interface of the component as jco's bindings expose it. */
interface ComponentTableExports {
  open(path: string): ComponentTableInfo;
  lookup(tokens: Uint32Array): Float32Array;
  close(): void;
}

export interface ComponentTable extends ComponentTableInfo {
  lookup(ids: readonly number[] | Uint32Array): Float32Array;
  close(): void;
  /** Calls `open` again on the same instance (after close: one blob per instance at a time). */
  reopen(): ComponentTableInfo;
}

/** The component's `failure` record, thrown by jco's bindings for a result's error case. */
function failureToError(e: unknown, blob: string): never {
  const f = e as { code?: unknown; message?: unknown };
  if (typeof f?.code === "number" && typeof f.message === "string")
    throw new CarvqError(f.message.split(guestPath(blob)).join(blob), f.code);
  throw new CarvqError(`the component trapped: ${e instanceof Error ? e.message : String(e)}`, RUNTIME_EXIT.internal);
}

/**
 * Opens `blob` in one instance of the WIT component under jco: the component is transpiled to
 * JavaScript (jco's library, once per process), instantiated with jco's WASI 0.2 shim with the
 * blob's folder preopened as /blob, and its `table` interface called in process: open once, then
 * lookups, as a wasmtime host in another language would call it.
 */
export async function openComponentTable(blob: string): Promise<ComponentTable> {
  const path = resolve(blob);
  const { instantiate, WASIShim } = await transpiledTableComponent();
  const shim = new WASIShim({ sandbox: { preopens: { [GUEST_DIR]: dirname(path) } } });
  const instance = await instantiate(shim.getImportObject());
  const table = instance.table;
  const open = (): ComponentTableInfo => {
    try {
      return table.open(guestPath(path));
    } catch (e) {
      failureToError(e, path);
    }
  };
  const info = open();
  return {
    ...info,
    reopen: open,
    lookup(ids) {
      try {
        return table.lookup(ids instanceof Uint32Array ? ids : Uint32Array.from(ids));
      } catch (e) {
        failureToError(e, path);
      }
    },
    close: () => table.close(),
  };
}

type Instantiate = (imports: Record<string, unknown>) => Promise<{ table: ComponentTableExports }>;
let transpiled:
  | Promise<{ instantiate: Instantiate; WASIShim: new (config: object) => { getImportObject(): Record<string, unknown> } }>
  | undefined;

async function transpiledTableComponent() {
  transpiled ??= (async () => {
    const component = tableComponentPath();
    const { transpileBytes } = await import("@bytecodealliance/jco-transpile");
    const { files } = await transpileBytes(new Uint8Array(await readFile(component)), { name: "carvq", instantiation: "async" });
    const dir = mkdtempSync(join(tmpdir(), "carvq-component-"));
    try {
      for (const [name, bytes] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, name)), { recursive: true });
        writeFileSync(join(dir, name), bytes);
      }
      const bindings = (await import(pathToFileURL(join(dir, "carvq.js")).href)) as {
        instantiate(
          getCoreModule: (name: string) => Promise<WebAssembly.Module>,
          imports: Record<string, unknown>,
        ): Promise<{ table: ComponentTableExports }>;
      };
      const cores = new Map<string, Promise<WebAssembly.Module>>();
      for (const [name, bytes] of Object.entries(files))
        if (name.endsWith(".wasm")) cores.set(name, WebAssembly.compile(new Uint8Array(bytes)));
      // jco's own copy of the WASI 0.2 shim (the one `jco run` uses).
      const fromJco = createRequire(createRequire(import.meta.url).resolve("@bytecodealliance/jco"));
      const { WASIShim } = (await import(pathToFileURL(fromJco.resolve("@bytecodealliance/preview2-shim/instantiation")).href)) as {
        WASIShim: new (config: object) => { getImportObject(): Record<string, unknown> };
      };
      return {
        instantiate: (imports: Record<string, unknown>) =>
          bindings.instantiate(
            (name) => cores.get(name) ?? Promise.reject(new Error(`jco asked for an unknown core module ${name}`)),
            imports,
          ),
        WASIShim,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  })();
  return transpiled;
}
