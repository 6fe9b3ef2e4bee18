// Builds the WASM runtime (assembly/, AssemblyScript) into every module the device side ships:
//   build/carvq-rt.wasm              SIMD build, budget = the whole 4 GiB wasm32 space, mode auto
//   build/carvq-rt-scalar.wasm       the same without any SIMD instruction (MVP + sign-ext + mutable globals)
//   build/targets/<name>.wasm        one per targets/*.json: its SIMD choice, default mode, and its
//                                    memory budget as the module's declared maximum memory
//   build/carvq-rt.component.wasm    the SIMD build wrapped as a WASI command component (jco new)
//   build/lib/carvq.wasm, carvq-scalar.wasm, <target>.wasm
//                                    the library (assembly/lib.ts, C ABI, WASI reactors) with the
//                                    same budgets and modes as the commands
//   build/lib/carvq-component-core.wasm
//                                    the core module of the WIT component (assembly/component.ts,
//                                    canonical ABI of wit/carvq.wit), SIMD, 4 GiB
//   build/bench/                     the same source with the bench command (CARVQ_BENCH=1, one more
//                                    import: clock_time_get) for npm run bench: simd.wasm,
//                                    scalar.wasm, <target>.wasm for the targets the bench runs on,
//                                    simd.component.wasm. Never shipped to a device.
// Called by tools/dev/build.mjs (npm run build, npm ci's prepare). Standalone: node tools/dev/build-wasm.mjs
import asc from "assemblyscript/asc";
import binaryen from "binaryen";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PAGE = 65536;
const MODES = { auto: 0, resident: 1, streaming: 2 };
/** Features the scalar builds leave out so that microcontroller interpreters (WAMR, wasm3) run them. */
const SCALAR_DISABLE = ["bulk-memory", "nontrapping-f2i"];

/** Reads and checks targets/*.json; returns them sorted by name. */
export function loadTargets(dir = join(root, "targets")) {
  const targets = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()) {
    const t = JSON.parse(readFileSync(join(dir, file), "utf8"));
    const where = `targets/${file}`;
    if (typeof t.name !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(t.name) || `${t.name}.json` !== file)
      throw new Error(`${where}: name must be the file's base name (lowercase letters, digits, dashes)`);
    if (typeof t.simd !== "boolean") throw new Error(`${where}: simd must be true or false`);
    if (
      !Number.isInteger(t.memoryBudgetBytes) ||
      t.memoryBudgetBytes < 2 * PAGE ||
      t.memoryBudgetBytes % PAGE !== 0 ||
      t.memoryBudgetBytes > 65536 * PAGE
    ) {
      throw new Error(`${where}: memoryBudgetBytes must be a multiple of 65536 between 131072 and 4294967296`);
    }
    if (t.mode !== "resident" && t.mode !== "streaming") throw new Error(`${where}: mode must be resident or streaming`);
    if (typeof t.engine !== "string" || typeof t.description !== "string")
      throw new Error(`${where}: engine and description are required strings`);
    targets.push(t);
  }
  return targets;
}

/** Targets the bench measures in their own budget (tools/dev/bench/lookup-goals.ts). */
const BENCH_TARGETS = ["rpi-zero2w"];

/**
 * The library's I/O area (assembly/lib.ts): a sixteenth of the budget, from 4 KiB (a path and a
 * message) to 1 MiB (four rows of the widest table the format allows), a multiple of 16.
 */
export function ioBytes(pages) {
  const budget = pages * PAGE;
  return Math.min(Math.max(Math.floor(budget / 16 / 16) * 16, 4096), 1 << 20);
}

/** The faces built from assembly/: the command, the C ABI library, the component's core module. */
const ENTRIES = {
  command: { file: "assembly/main.ts", abort: "assembly/exit/onAbort" },
  library: { file: "assembly/lib.ts", abort: "assembly/exit/trapOnAbort" },
  component: { file: "assembly/component.ts", abort: "assembly/exit/trapOnAbort" },
};

async function compile(outFile, { simd, pages, mode, bench = false, entry = "command" }) {
  const { file, abort } = ENTRIES[entry];
  const args = [
    file,
    "--config",
    "asconfig.json",
    "--target",
    "device",
    "--outFile",
    outFile,
    "--maximumMemory",
    String(pages),
    "--use",
    `abort=${abort}`,
    "--use",
    `CARVQ_BUDGET_PAGES=${pages}`,
    "--use",
    `CARVQ_DEFAULT_MODE=${MODES[mode]}`,
    "--use",
    `CARVQ_BENCH=${bench ? 1 : 0}`,
    "--use",
    `CARVQ_IO_BYTES=${ioBytes(pages)}`,
    ...(simd ? ["--enable", "simd"] : ["--disable", SCALAR_DISABLE.join(",")]),
  ];
  let errors = "";
  const { error } = await asc.main(args, {
    stdout: { write: () => true },
    stderr: { write: (chunk) => ((errors += String(chunk)), true) },
  });
  if (error) throw new Error(`asc ${outFile} failed: ${error.message}\n${errors}`);
}

/** The component core's exports (assembly/component.ts) under their canonical ABI names. */
const COMPONENT_EXPORTS = {
  open: "carvq:embedding/table@0.1.0#open",
  openPost: "cabi_post_carvq:embedding/table@0.1.0#open",
  lookup: "carvq:embedding/table@0.1.0#lookup",
  lookupPost: "cabi_post_carvq:embedding/table@0.1.0#lookup",
  close: "carvq:embedding/table@0.1.0#close",
};

/**
 * Renames exports of a built module (AssemblyScript exports take identifier names only; the
 * component model's names hold ':', '/', '@' and '#').
 */
function renameExports(file, names) {
  const module = binaryen.readBinary(readFileSync(file));
  try {
    module.setFeatures(binaryen.Features.All);
    for (const [from, to] of Object.entries(names)) {
      const info = binaryen.getExportInfo(module.getExport(from));
      if (info.kind !== binaryen.ExternalFunction) throw new Error(`${file}: export ${from} is not a function`);
      module.removeExport(from);
      module.addFunctionExport(info.value, to);
    }
    if (!module.validate()) throw new Error(`${file}: invalid after renaming its exports`);
    writeFileSync(file, module.emitBinary());
  } finally {
    module.dispose();
  }
}

export async function buildWasm() {
  const started = Date.now();
  const cwd = process.cwd();
  process.chdir(root);
  try {
    mkdirSync("build/targets", { recursive: true });
    for (const f of readdirSync("build/targets")) if (f.endsWith(".wasm")) rmSync(join("build/targets", f));
    await compile("build/carvq-rt.wasm", { simd: true, pages: 65536, mode: "auto" });
    await compile("build/carvq-rt-scalar.wasm", { simd: false, pages: 65536, mode: "auto" });
    const targets = loadTargets();
    for (const t of targets) {
      await compile(`build/targets/${t.name}.wasm`, { simd: t.simd, pages: t.memoryBudgetBytes / PAGE, mode: t.mode });
    }
    mkdirSync("build/lib", { recursive: true });
    for (const f of readdirSync("build/lib")) if (f.endsWith(".wasm")) rmSync(join("build/lib", f));
    await compile("build/lib/carvq.wasm", { simd: true, pages: 65536, mode: "auto", entry: "library" });
    await compile("build/lib/carvq-scalar.wasm", { simd: false, pages: 65536, mode: "auto", entry: "library" });
    for (const t of targets) {
      await compile(`build/lib/${t.name}.wasm`, { simd: t.simd, pages: t.memoryBudgetBytes / PAGE, mode: t.mode, entry: "library" });
    }
    await compile("build/lib/carvq-component-core.wasm", { simd: true, pages: 65536, mode: "auto", entry: "component" });
    renameExports("build/lib/carvq-component-core.wasm", COMPONENT_EXPORTS);
    const require = createRequire(import.meta.url);
    const jco = join(dirname(require.resolve("@bytecodealliance/jco")), "jco.js");
    if (!existsSync(jco)) throw new Error(`jco CLI not found at ${jco}`);
    execFileSync(process.execPath, [jco, "new", "build/carvq-rt.wasm", "--wasi-command", "-o", "build/carvq-rt.component.wasm"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    mkdirSync("build/bench", { recursive: true });
    await compile("build/bench/simd.wasm", { simd: true, pages: 65536, mode: "auto", bench: true });
    await compile("build/bench/scalar.wasm", { simd: false, pages: 65536, mode: "auto", bench: true });
    for (const t of targets.filter((t) => BENCH_TARGETS.includes(t.name))) {
      await compile(`build/bench/${t.name}.wasm`, { simd: t.simd, pages: t.memoryBudgetBytes / PAGE, mode: t.mode, bench: true });
    }
    execFileSync(process.execPath, [jco, "new", "build/bench/simd.wasm", "--wasi-command", "-o", "build/bench/simd.component.wasm"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    process.stderr.write(
      `built the WASM runtime: 2 builds, ${targets.length} targets, ${2 + targets.length} library modules, 1 component core, 1 component, ${2 + BENCH_TARGETS.length} bench modules (${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
    );
  } finally {
    process.chdir(cwd);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await buildWasm();
