// Two workarounds every use of Node's WASI (node:wasi) needs, shared by the command host
// (host/node.ts) and the library (host/table.ts). Type-only imports: nothing here loads a Node
// module, so the browser bundle of the library can include it.
import type { WASI } from "node:wasi";

/**
 * node:wasi's import object with every function wrapped in a plain JS function. Called directly,
 * Node 20's WASI functions take V8's fast-call path, and the first WASI call after the module grew
 * its memory by tens of MiB (resident mode) aborts the whole process (SIGABRT, no message); through
 * a JS wrapper they take the regular path, at a negligible cost per call.
 */
export function wrappedImports(wasi: WASI): WebAssembly.Imports {
  const direct = (wasi.getImportObject() as Record<string, Record<string, (...args: unknown[]) => unknown>>).wasi_snapshot_preview1;
  const wrapped: Record<string, (...args: unknown[]) => unknown> = {};
  for (const [name, fn] of Object.entries(direct)) wrapped[name] = (...args: unknown[]) => fn(...args);
  return { wasi_snapshot_preview1: wrapped } as WebAssembly.Imports;
}

/**
 * node:wasi never closes the host handles of its preopened folders (not even when collected), so
 * every instance would leak one descriptor; close them through the instance's own fd_close.
 * Preopens take the descriptors right after stdin, stdout and stderr.
 */
export function closePreopens(wasi: WASI, count: number): void {
  const fdClose = (wasi.wasiImport as Record<string, unknown>).fd_close as (fd: number) => number;
  for (let fd = 3; fd < 3 + count; fd++) fdClose(fd);
}
