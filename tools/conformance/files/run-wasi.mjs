// A small WASI (preview1) command runner on Node's own node:wasi, for machines with Node but no
// other engine:
//
//   node host/run-wasi.mjs MODULE ARGS...
//
// Preopens the current directory as "." (as `wasmtime run --dir=.` does), passes the module's
// stdout and stderr through and exits with its exit code. A trap exits 70 with one line on stderr.
import { readFileSync } from "node:fs";

// node:wasi prints an ExperimentalWarning on stderr; the module's own stderr is what matters here.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === "string" ? rest[0] : rest[0]?.type;
  if (type === "ExperimentalWarning") return;
  emitWarning.call(process, warning, ...rest);
};
const { WASI } = await import("node:wasi");

const [modulePath, ...args] = process.argv.slice(2);
if (modulePath === undefined) {
  process.stderr.write("usage: node run-wasi.mjs MODULE [ARGS...]\n");
  process.exit(2);
}

const wasi = new WASI({ version: "preview1", args: [modulePath, ...args], env: {}, preopens: { ".": process.cwd() }, returnOnExit: true });
// Each import goes through a plain JS function: called directly, Node 20's WASI functions take
// V8's fast-call path, which aborts the process after a module grows its memory by tens of MiB.
const imports = {};
for (const [name, fn] of Object.entries(wasi.getImportObject().wasi_snapshot_preview1)) imports[name] = (...a) => fn(...a);

let code;
try {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(modulePath)), { wasi_snapshot_preview1: imports });
  code = wasi.start(instance);
} catch (err) {
  process.stderr.write(`run-wasi: ${modulePath}: ${err instanceof Error ? err.message : String(err)}\n`);
  code = 70;
}
process.exitCode = code;
