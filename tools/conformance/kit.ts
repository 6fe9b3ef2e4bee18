// Writes a conformance kit: a self-contained folder that any WASI engine on any device can run
// with `sh run.sh ENGINE WORDS...` (see tools/conformance/files/README.md, copied into the kit).
//
//   DIR/modules/     the command modules (generic SIMD and scalar builds, one per chosen target)
//   DIR/blobs/       the blobs the cases read
//   DIR/manifest.json every case, module and blob (hashes, budgets, what is not covered)
//   DIR/cases.txt    the same cases, one a line, for run.sh: NAME EXIT SHA256 MODULE ARGS...
//   DIR/run.sh       the POSIX sh runner
//   DIR/host/run-wasi.mjs  a Node WASI runner, for machines with only Node
//   DIR/README.md
//
// Deterministic: the same targets and options give the same bytes (fixed seeds, sorted entries,
// no timestamps). The folder is built beside DIR and renamed into place, so an interrupted run
// leaves no half-written kit at DIR.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { projectRoot, type Target } from "../../host/common.ts";
import { TOOL_VERSION } from "../compress.ts";
import { CarvqError } from "../errors.ts";
import { EXIT } from "../exit-codes.ts";
import { planKit, sha256, type KitCase, type KitPlan } from "./cases.ts";

/** Version of the kit's layout (manifest.json, cases.txt); run.sh and --run read this one. */
export const KIT_FORMAT = 1;
/** A kit must stay small enough to copy to a device. */
export const MAX_KIT_BYTES = 20 * 1024 * 1024;

export interface WriteKitOptions {
  dir: string;
  targets: readonly Target[];
  quick: boolean;
  /** Replace an existing DIR. */
  force: boolean;
}

export interface KitSummary {
  dir: string;
  cases: number;
  bytes: number;
  plan: KitPlan;
}

/** Words run.sh splits on blanks and passes to the engine: nothing a shell would change. */
const SAFE_WORD = /^[A-Za-z0-9._/=+-]+$/;

function kitFile(name: string): string {
  return readFileSync(join(projectRoot(), "tools", "conformance", "files", name), "utf8");
}

/** cases.txt: one case a line, NAME EXIT SHA256 MODULE ARGS..., blank-separated. */
export function casesText(cases: readonly KitCase[]): string {
  const lines = [
    "# carvq conformance cases: NAME EXPECTED_EXIT SHA256_OF_STDOUT MODULE ARGS... (run from the kit's folder; see README.md)",
  ];
  for (const c of cases) {
    const words = [c.name, String(c.expectedExit), c.expectedStdoutSha256, c.module, ...c.args];
    for (const w of words)
      if (!SAFE_WORD.test(w)) throw new Error(`conformance: case ${c.name} has a word run.sh cannot pass as is: '${w}'`);
    lines.push(words.join(" "));
  }
  return `${lines.join("\n")}\n`;
}

function manifestJson(plan: KitPlan, targets: readonly Target[], quick: boolean, moduleBytes: Map<string, Uint8Array>): string {
  const manifest = {
    format: "carvq-conformance-kit",
    kitFormat: KIT_FORMAT,
    generator: `carvq ${TOOL_VERSION}`,
    quick,
    targets: targets.map((t) => ({ name: t.name, engine: t.engine, simd: t.simd, mode: t.mode, budgetBytes: t.memoryBudgetBytes })),
    modules: plan.modules.map((m) => ({
      file: m.file,
      build: m.build,
      target: m.target,
      budgetBytes: m.budgetBytes,
      defaultMode: m.defaultMode,
      bytes: moduleBytes.get(m.file)!.length,
      sha256: sha256(moduleBytes.get(m.file)!),
    })),
    blobs: plan.blobs.map((b) => ({ file: b.file, bytes: b.bytes.length, sha256: sha256(b.bytes), description: b.description })),
    cases: plan.cases.map((c) => ({
      name: c.name,
      kind: c.kind,
      module: c.module,
      args: c.args,
      expectedExit: c.expectedExit,
      expectedStdoutSha256: c.expectedStdoutSha256,
      budgetBytes: c.budgetBytes,
      target: c.target,
      blob: c.blob,
    })),
    notCovered: plan.notCovered,
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** Case counts per module and kind, for the README and the command's summary. */
export function caseTable(plan: KitPlan): string[] {
  const kinds = ["variant", "hostile", "request", "budget"] as const;
  const rows = plan.modules.map((m) => {
    const mine = plan.cases.filter((c) => c.module === m.file);
    return [
      m.file,
      `${m.build}, ${m.defaultMode}`,
      String(m.budgetBytes),
      ...kinds.map((k) => String(mine.filter((c) => c.kind === k).length)),
      String(mine.length),
    ];
  });
  const header = ["module", "build, mode", "budget bytes", ...kinds, "total"];
  return [`| ${header.join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)];
}

function readme(plan: KitPlan): string {
  const covered = [
    "## This kit",
    "",
    `${plan.cases.length} cases, ${plan.modules.length} modules, ${plan.blobs.length} blobs.`,
    "",
    ...caseTable(plan),
    "",
    "Blobs:",
    "",
    ...plan.blobs.map((b) => `- \`${b.file}\` (${b.bytes.length} bytes): ${b.description}`),
    "",
    ...(plan.notCovered.length === 0
      ? []
      : ["Not covered by this kit:", "", ...plan.notCovered.map((n) => `- ${n.target}: ${n.check}: ${n.reason}.`), ""]),
  ];
  return `${kitFile("README.md").trimEnd()}\n\n${covered.join("\n")}`;
}

/** Writes the kit to `options.dir` (refused if it exists, unless force). */
export async function writeKit(options: WriteKitOptions): Promise<KitSummary> {
  const dir = resolve(options.dir);
  if (existsSync(dir) && !options.force) throw new CarvqError(`${options.dir}: already exists (pass --force to replace it)`, EXIT.usage);
  if (!existsSync(dirname(dir))) throw new CarvqError(`${options.dir}: its parent folder does not exist`, EXIT.io);
  const plan = await planKit({ targets: options.targets, quick: options.quick });
  const moduleBytes = new Map(plan.modules.map((m) => [m.file, new Uint8Array(readFileSync(m.source))]));
  const files = new Map<string, Uint8Array | string>();
  for (const m of plan.modules) files.set(m.file, moduleBytes.get(m.file)!);
  for (const b of plan.blobs) files.set(b.file, b.bytes);
  files.set("manifest.json", manifestJson(plan, options.targets, options.quick, moduleBytes));
  files.set("cases.txt", casesText(plan.cases));
  files.set("run.sh", kitFile("run.sh"));
  files.set("host/run-wasi.mjs", kitFile("run-wasi.mjs"));
  files.set("README.md", readme(plan));
  let bytes = 0;
  for (const content of files.values()) bytes += typeof content === "string" ? Buffer.byteLength(content) : content.length;
  if (bytes > MAX_KIT_BYTES)
    throw new CarvqError(`conformance: the kit would take ${bytes} bytes, more than ${MAX_KIT_BYTES}; choose fewer targets or --quick`);

  const temp = `${dir}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  try {
    for (const [name, content] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const path = join(temp, name);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
    }
    chmodSync(join(temp, "run.sh"), 0o755);
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    renameSync(temp, dir);
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
  return { dir, cases: plan.cases.length, bytes, plan };
}
