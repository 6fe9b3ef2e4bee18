// Builds the WIT component build/lib/carvq.component.wasm (world carvq:embedding/runtime,
// wit/carvq.wit) from the runtime's canonical-ABI core module build/lib/carvq-component-core.wasm
// (made by tools/dev/build-wasm.mjs): the WIT is embedded in the core module as its component-type
// section, then the module and jco's preview1 reactor adapter are composed into a component whose
// only imports are WASI 0.2 interfaces. The library form of jco's tools is used because the
// `jco embed --wit PATH` command panics on this machine (its sandbox cannot read the path).
// Called by tools/dev/build.mjs; standalone: node tools/dev/build-component.mjs
import { componentEmbed, componentNew } from "@bytecodealliance/jco-transpile/wasm-tools";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const CORE = join(root, "build/lib/carvq-component-core.wasm");
export const COMPONENT = join(root, "build/lib/carvq.component.wasm");
const WIT = join(root, "wit/carvq.wit");
const WORLD = "runtime";

/** jco's wasi_snapshot_preview1 adapter for reactors (no _start): preview1 imports -> WASI 0.2. */
function reactorAdapter() {
  const require = createRequire(import.meta.url);
  const jcoDist = dirname(require.resolve("@bytecodealliance/jco"));
  return readFileSync(join(jcoDist, "../lib/wasi_snapshot_preview1.reactor.wasm"));
}

/** Builds the component; returns false (and builds nothing) when the core module is not there. */
export async function buildComponent() {
  if (!existsSync(CORE)) return false;
  const embedded = await componentEmbed({ binary: readFileSync(CORE), witSource: readFileSync(WIT, "utf8"), world: WORLD });
  const component = await componentNew(embedded, [["wasi_snapshot_preview1", reactorAdapter()]]);
  const tmp = `${COMPONENT}.tmp-${process.pid}`;
  writeFileSync(tmp, component);
  renameSync(tmp, COMPONENT);
  return true;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  if (!(await buildComponent())) throw new Error(`${CORE}: not built (run node tools/dev/build-wasm.mjs first)`);
  process.stderr.write(`built ${COMPONENT}\n`);
}
