// The runtime as a JavaScript library (Node 20+ and browsers): open a blob once, look tokens up
// at every decoding step.
//
//   import { openTable } from "carvq";
//   const table = await openTable("model.carvq", { target: "rpi-zero2w" });
//   const row = table.lookup([42]);            // Float32Array, cols values
//   table.lookupInto([1, 2, 3], out);          // no allocation: rows written into `out`
//   table.close();
//
// One table is one instance of a core library module (build/lib/carvq.wasm, carvq-scalar.wasm or
// <target>.wasm: a WASI reactor with a C ABI, docs/RUNTIME.md "Embedding the runtime"),
// instantiated with @assemblyscript/loader. The blob is opened, validated and planned once, inside
// the module's memory budget; a lookup then writes the ids into the module's I/O area, calls
// carvq_lookup and reads the rows back. A path is served by node:wasi (its folder preopened, as
// the command host does); bytes by the in-memory WASI host of host/minimal-wasi.ts, so they work
// in a browser too, in both modes. Failures are CarvqErrors carrying the runtime's exit code and
// its one-line message.
//
// This file loads no Node module statically (node:fs and node:wasi are imported when a path is
// opened), so the same bundle runs in browsers.
import { instantiate } from "@assemblyscript/loader";
import type { WASI } from "node:wasi";
import { CarvqError } from "../tools/errors.ts";
import { EXIT } from "../tools/exit-codes.ts";
import { createMinimalWasi } from "./minimal-wasi.ts";
import { closePreopens, wrappedImports } from "./node-wasi.ts";

export { CarvqError } from "../tools/errors.ts";
/** The runtime's exit codes, which a CarvqError's exitCode holds (tools/exit-codes.ts). */
export { EXIT as RUNTIME_EXIT } from "../tools/exit-codes.ts";

export type TableBuild = "simd" | "scalar";
export type TableMode = "auto" | "resident" | "streaming";

export interface OpenTableOptions {
  /** A device profile (targets/<name>.json): its module build/lib/<name>.wasm, budget and default mode. */
  target?: string;
  /** The generic build when no target is given: simd (default) or scalar (no SIMD instruction). */
  build?: TableBuild;
  /** auto (default): a target's own mode, or on the generic builds resident when the blob fits; or forced. */
  mode?: TableMode;
  /**
   * The core module itself, instead of the package's build/lib/ file: a compiled module, its bytes,
   * or where it is (a URL to fetch, as browsers serving the package's files elsewhere need; in
   * Node, also a file path).
   */
  module?: WebAssembly.Module | BufferSource | URL | string;
}

export interface Table {
  readonly rows: number;
  readonly cols: number;
  /** Every bit the blob stores (codes, codebooks, adaptor, header) per table value. */
  readonly bitsPerParameter: number;
  /** The mode the runtime serves the blob in (what auto chose: a target's own mode; on the generic builds, resident when the blob fits). */
  readonly mode: "resident" | "streaming";
  /** The rows of `ids` in the order asked: ids.length x cols values. */
  lookup(ids: ArrayLike<number>): Float32Array;
  /** The same into `out` (at least ids.length x cols values), without allocating; returns `out`. */
  lookupInto(ids: ArrayLike<number>, out: Float32Array): Float32Array;
  /** The module's linear memory now: its peak, since memory never shrinks (within the budget). */
  readonly memoryBytes: number;
  /** Closes the blob and drops the instance; further lookups throw. Closing twice is harmless. */
  close(): void;
}

/** The core library module's exports (docs/RUNTIME.md "Embedding the runtime"). */
interface CoreExports {
  memory: WebAssembly.Memory;
  _initialize?: () => void;
  carvq_io(): number;
  carvq_io_bytes(): number;
  carvq_open(pathLength: number, mode: number): number;
  carvq_message_len(): number;
  carvq_rows(): number;
  carvq_cols(): number;
  carvq_bits_per_parameter(): number;
  carvq_mode(): number;
  carvq_lookup(count: number): number;
  carvq_close(): number;
}

const MODE_CODES: Record<TableMode, number> = { auto: 0, resident: 1, streaming: 2 };
/** Where the blob appears inside the sandbox (the command host's convention, host/common.ts). */
const GUEST_DIR = "/blob";
/** The name a blob handed over as bytes has inside the in-memory host. */
const BYTES_NAME = "table.carvq";

const compiled = new Map<string, Promise<WebAssembly.Module>>();

function isNode(): boolean {
  return typeof process !== "undefined" && typeof process.versions?.node === "string";
}

/** build/lib/<name>.wasm beside this file's folder: host/ in the sources, dist/ in the package. */
function libraryUrl(options: OpenTableOptions): URL {
  if (options.target !== undefined && !/^[a-z0-9][a-z0-9-]*$/.test(options.target)) {
    throw new CarvqError(`unknown target '${options.target}' (a target is the name of a targets/*.json profile)`, EXIT.usage);
  }
  const name = options.target ?? (options.build === "scalar" ? "carvq-scalar" : "carvq");
  return new URL(`../build/lib/${name}.wasm`, import.meta.url);
}

/** Checks a target's name and build against targets/<name>.json (Node, from the package's files). */
async function checkTarget(options: OpenTableOptions): Promise<void> {
  if (options.target === undefined || !isNode()) return;
  const { readFileSync, readdirSync } = await import("node:fs");
  const dir = new URL("../targets/", import.meta.url);
  let known: string[];
  try {
    known = readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => f.slice(0, -5))
      .sort();
  } catch {
    return; // the profiles are not shipped here: the module's presence decides
  }
  if (!known.includes(options.target)) throw new CarvqError(`unknown target '${options.target}' (known: ${known.join(", ")})`, EXIT.usage);
  const profile = JSON.parse(readFileSync(new URL(`${options.target}.json`, dir), "utf8")) as { simd: boolean };
  const build = profile.simd ? "simd" : "scalar";
  if (options.build !== undefined && options.build !== build) {
    throw new CarvqError(`target ${options.target} uses the ${build} build, not ${options.build}`, EXIT.usage);
  }
}

/** Where a module given by name is: a URL, or in Node a file path (relative to the working folder). */
async function moduleUrl(given: URL | string): Promise<URL> {
  if (given instanceof URL || /^[a-z][a-z0-9+.-]+:/i.test(given)) return new URL(given);
  if (!isNode()) return new URL(given, globalThis.location?.href ?? import.meta.url);
  const [{ pathToFileURL }, { resolve }] = await Promise.all([import("node:url"), import("node:path")]);
  return pathToFileURL(resolve(given));
}

/** Compiles the core module once per source (and file version, in Node) per process. */
async function coreModule(options: OpenTableOptions): Promise<WebAssembly.Module> {
  const given = options.module;
  if (given instanceof WebAssembly.Module) return given;
  if (given !== undefined && typeof given !== "string" && !(given instanceof URL)) return WebAssembly.compile(given);
  const url = given === undefined ? libraryUrl(options) : await moduleUrl(given);
  if (url.protocol === "file:" && isNode()) {
    const { readFileSync, statSync } = await import("node:fs");
    let key: string;
    try {
      key = `${url.href}:${statSync(url).mtimeMs}`;
    } catch {
      throw new CarvqError(`${decodeURIComponent(url.pathname)}: not built (run npm run build)`, EXIT.io);
    }
    let module = compiled.get(key);
    if (module === undefined) compiled.set(key, (module = WebAssembly.compile(readFileSync(url))));
    return module;
  }
  let module = compiled.get(url.href);
  if (module === undefined) {
    module = fetch(url).then((response) => {
      if (!response.ok) throw new CarvqError(`${url.href}: cannot fetch the runtime module (HTTP ${response.status})`, EXIT.io);
      return WebAssembly.compileStreaming(response);
    });
    compiled.set(url.href, module);
    module.catch(() => compiled.delete(url.href));
  }
  return module;
}

/** A WASI host for the instance: what the core needs to read the blob, and what to do on close. */
interface Host {
  imports: WebAssembly.Imports;
  /** Makes the host ready once the instance exists (node:wasi's initialize, the in-memory host's memory). */
  start(instance: WebAssembly.Instance): void;
  /** The path to open inside the sandbox. */
  guestPath: string;
  /** The blob's name as the user knows it, to put back in messages in place of the guest path. */
  shownName: string;
  release(): void;
}

async function nodeHost(path: string): Promise<Host> {
  if (!isNode())
    throw new CarvqError(`${path}: opening a blob by its path needs Node's WASI; in a browser pass the blob's bytes`, EXIT.usage);
  const [{ WASI }, { basename, dirname, resolve }] = await Promise.all([import("node:wasi"), import("node:path")]);
  const absolute = resolve(path);
  const wasi: WASI = new WASI({ version: "preview1", args: [], env: {}, preopens: { [GUEST_DIR]: dirname(absolute) }, returnOnExit: true });
  let started = false;
  return {
    imports: wrappedImports(wasi),
    start(instance) {
      wasi.initialize(instance);
      started = true;
    },
    guestPath: `${GUEST_DIR}/${basename(absolute)}`,
    shownName: path,
    release() {
      if (started) closePreopens(wasi, 1);
    },
  };
}

function bytesHost(bytes: Uint8Array): Host {
  const wasi = createMinimalWasi({ args: [], preopens: [{ name: GUEST_DIR, files: { [BYTES_NAME]: bytes } }] });
  return {
    imports: wasi.imports,
    start(instance) {
      wasi.attach(instance.exports.memory as WebAssembly.Memory);
      (instance.exports._initialize as (() => void) | undefined)?.();
    },
    guestPath: `${GUEST_DIR}/${BYTES_NAME}`,
    shownName: "blob bytes",
    release() {},
  };
}

function asBytes(source: Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (source instanceof Uint8Array) return source;
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  return new Uint8Array(source);
}

function checkIds(ids: ArrayLike<number>): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff)
      throw new CarvqError(`token ${id} is not a whole number from 0 to 4294967295`, EXIT.usage);
  }
}

/**
 * Opens a blob (a file path in Node, or its bytes anywhere) for lookups. Rejects with a CarvqError
 * whose exitCode is the runtime's (2 usage, 3 i/o, 4 bad blob, 6 memory budget) and whose message
 * is its one line.
 */
export async function openTable(
  source: string | Uint8Array | ArrayBuffer | ArrayBufferView,
  options: OpenTableOptions = {},
): Promise<Table> {
  const mode = options.mode ?? "auto";
  if (!(mode in MODE_CODES)) throw new CarvqError(`mode must be auto, resident or streaming, got '${String(mode)}'`, EXIT.usage);
  if (options.build !== undefined && options.build !== "simd" && options.build !== "scalar")
    throw new CarvqError(`build must be simd or scalar, got '${String(options.build)}'`, EXIT.usage);
  await checkTarget(options);
  const module = await coreModule(options);
  const host = typeof source === "string" ? await nodeHost(source) : bytesHost(asBytes(source));
  let core: CoreExports;
  try {
    // The loader instantiates (from a module, bytes or a fetch Response alike); the calls then go
    // to the instance's own exports, not to the loader's demangled wrappers, which spread their
    // arguments through a rest array on every call: a lookup is on an inference engine's hot path.
    const { instance } = await instantiate<Record<string, unknown>>(module, host.imports);
    core = instance.exports as unknown as CoreExports;
    host.start(instance);
  } catch (e) {
    host.release();
    if (e instanceof CarvqError) throw e;
    throw new CarvqError(`the runtime module could not be instantiated: ${e instanceof Error ? e.message : String(e)}`, EXIT.internal);
  }
  return openOn(core, host, MODE_CODES[mode]);
}

function openOn(core: CoreExports, host: Host, mode: number): Table {
  const io = core.carvq_io();
  const ioBytes = core.carvq_io_bytes();
  const message = (): string => {
    const length = Math.min(core.carvq_message_len(), ioBytes);
    const text = new TextDecoder().decode(new Uint8Array(core.memory.buffer, io, length));
    return text.split(host.guestPath).join(host.shownName);
  };
  const fail = (status: number): never => {
    throw new CarvqError(message() || `the runtime failed with status ${status}`, status);
  };

  const path = new TextEncoder().encode(host.guestPath);
  if (path.length > ioBytes) {
    host.release();
    throw new CarvqError(`${host.shownName}: the path is longer than the runtime's I/O area (${ioBytes} bytes)`, EXIT.usage);
  }
  new Uint8Array(core.memory.buffer, io, path.length).set(path);
  const status = core.carvq_open(path.length, mode);
  if (status !== 0) {
    const error = new CarvqError(message() || `the runtime failed with status ${status}`, status);
    host.release();
    throw error;
  }

  const rows = core.carvq_rows();
  const cols = core.carvq_cols();
  const bitsPerParameter = core.carvq_bits_per_parameter();
  const servedMode = core.carvq_mode() === MODE_CODES.streaming ? "streaming" : "resident";
  // How many tokens one call can take: their ids and their rows both live in the I/O area.
  const perCall = Math.floor(ioBytes / (4 * Math.max(cols, 1)));
  if (perCall < 1) {
    core.carvq_close();
    host.release();
    throw new CarvqError(`${host.shownName}: a row of ${cols} values does not fit the runtime's I/O area (${ioBytes} bytes)`, EXIT.budget);
  }
  let closed = false;
  // Views on the I/O area: the ids, all the rows a call can hold, and one row. The instance grows
  // its memory only inside an open, but should it ever grow, the old buffer is detached and every
  // view on it reads as empty: a zero length (a cheap read, unlike memory.buffer) remakes them.
  let idView = new Uint32Array(0);
  let rowView = new Float32Array(0);
  let oneRow = new Float32Array(0);
  const views = () => {
    if (oneRow.length === 0) {
      const buffer = core.memory.buffer;
      idView = new Uint32Array(buffer, io, perCall);
      rowView = new Float32Array(buffer, io, perCall * cols);
      oneRow = new Float32Array(buffer, io, cols);
    }
  };
  views();
  const closedError = () => new CarvqError(`${host.shownName}: the table is closed`, EXIT.usage);

  /** One token: what an inference engine asks at every step, kept to the call and one copy. */
  const lookupOne = (id: number, out: Float32Array): Float32Array => {
    if (closed) throw closedError();
    if (out.length < cols) throw new CarvqError(`lookupInto: a row of ${cols} values does not fit the output's ${out.length}`, EXIT.usage);
    if (!(id >= 0 && id <= 0xffffffff && Number.isInteger(id))) checkIds([id]);
    views();
    idView[0] = id;
    const status = core.carvq_lookup(1);
    if (status !== 0) fail(status);
    views();
    out.set(oneRow);
    return out;
  };

  const lookupInto = (ids: ArrayLike<number>, out: Float32Array): Float32Array => {
    if (ids.length === 1) return lookupOne(ids[0], out);
    if (closed) throw closedError();
    if (out.length < ids.length * cols)
      throw new CarvqError(
        `lookupInto: ${ids.length} rows of ${cols} values need ${ids.length * cols} values, the output has ${out.length}`,
        EXIT.usage,
      );
    checkIds(ids);
    for (let start = 0; start < ids.length; start += perCall) {
      const count = Math.min(perCall, ids.length - start);
      views();
      for (let i = 0; i < count; i++) idView[i] = ids[start + i];
      const status = core.carvq_lookup(count);
      if (status !== 0) fail(status);
      views();
      out.set(count === perCall ? rowView : rowView.subarray(0, count * cols), start * cols);
    }
    return out;
  };

  return {
    rows,
    cols,
    bitsPerParameter,
    mode: servedMode,
    lookup: (ids) => lookupInto(ids, new Float32Array(ids.length * cols)),
    lookupInto,
    get memoryBytes() {
      return core.memory.buffer.byteLength;
    },
    close() {
      if (closed) return;
      closed = true;
      core.carvq_close();
      host.release();
    },
  };
}
