// Test-only: one instance of a library module (build/lib/*.wasm, a WASI reactor) under node:wasi,
// its C ABI called directly. The JS API (host/) is the supported way in; this is what the
// tests use to hold the C ABI itself to docs/RUNTIME.md.
import { WASI } from "node:wasi";
import { join } from "node:path";
import { buildDir } from "../host/common.ts";
import { compiledModule } from "../host/node.ts";

export interface CarvqExports {
  memory: WebAssembly.Memory;
  _initialize(): void;
  carvq_io(): number;
  carvq_io_bytes(): number;
  carvq_message_len(): number;
  carvq_open(pathLen: number, mode: number): number;
  carvq_blob_area(bytes: number): number;
  carvq_open_memory(bytes: number): number;
  carvq_rows(): number;
  carvq_cols(): number;
  carvq_mode(): number;
  carvq_bits_per_parameter(): number;
  carvq_lookup(count: number): number;
  carvq_close(): number;
}

/** build/lib/<name>.wasm: "carvq", "carvq-scalar" or a target's name. */
export function libraryPath(name: string): string {
  return join(buildDir(), "lib", `${name}.wasm`);
}

export interface Reactor {
  exports: CarvqExports;
  /** carvq_open with a path (written at the I/O area). */
  open(path: string, mode?: number): number;
  /** carvq_blob_area + carvq_open_memory. */
  openMemory(bytes: Uint8Array): number;
  /** carvq_lookup of `ids`: the status and, on 0, a copy of the rows. */
  lookup(ids: ArrayLike<number>): { status: number; rows: Float32Array };
  /** The message of the last refusal. */
  message(): string;
  /** Closes the instance's preopened directories (node:wasi never does). */
  dispose(): void;
}

/**
 * Instantiates the WASI reactor `wasm` with `preopens` (guest path -> host folder) and calls its
 * `_initialize` if it has one (node:wasi's WASI.initialize). `dispose` closes the preopens.
 */
export function instantiateWasiReactor(
  wasm: string,
  preopens: Record<string, string> = {},
): { instance: WebAssembly.Instance; dispose(): void } {
  const wasi = new WASI({ version: "preview1", args: [], env: {}, preopens, returnOnExit: false });
  const direct = (wasi.getImportObject() as Record<string, Record<string, (...args: unknown[]) => unknown>>).wasi_snapshot_preview1;
  // Wrapped as host/node.ts does: Node 20's fast-call path aborts after a large memory.grow.
  const wrapped: Record<string, (...args: unknown[]) => unknown> = {};
  for (const [name, fn] of Object.entries(direct)) wrapped[name] = (...args: unknown[]) => fn(...args);
  const instance = new WebAssembly.Instance(compiledModule(wasm), { wasi_snapshot_preview1: wrapped } as WebAssembly.Imports);
  wasi.initialize(instance);
  return {
    instance,
    dispose() {
      const fdClose = (wasi.wasiImport as Record<string, unknown>).fd_close as (fd: number) => number;
      for (let fd = 3; fd < 3 + Object.keys(preopens).length; fd++) fdClose(fd);
    },
  };
}

/** A library module's instance (instantiateWasiReactor) with its C ABI and a few conveniences. */
export function instantiateReactor(wasm: string, preopens: Record<string, string> = {}): Reactor {
  const { instance, dispose } = instantiateWasiReactor(wasm, preopens);
  const ex = instance.exports as unknown as CarvqExports;
  const bytes = () => new Uint8Array(ex.memory.buffer);
  return {
    exports: ex,
    open(path, mode = 0) {
      const encoded = new TextEncoder().encode(path);
      bytes().set(encoded, ex.carvq_io());
      return ex.carvq_open(encoded.length, mode);
    },
    openMemory(blob) {
      const at = ex.carvq_blob_area(blob.length);
      if (at === 0) return 6;
      bytes().set(blob, at);
      return ex.carvq_open_memory(blob.length);
    },
    lookup(ids) {
      const io = ex.carvq_io();
      const view = new Uint32Array(ex.memory.buffer, io, ids.length);
      for (let i = 0; i < ids.length; i++) view[i] = ids[i];
      const status = ex.carvq_lookup(ids.length);
      const rows = status === 0 ? new Float32Array(ex.memory.buffer.slice(io, io + ids.length * ex.carvq_cols() * 4)) : new Float32Array(0);
      return { status, rows };
    },
    message() {
      return new TextDecoder().decode(bytes().subarray(ex.carvq_io(), ex.carvq_io() + ex.carvq_message_len()));
    },
    dispose,
  };
}
