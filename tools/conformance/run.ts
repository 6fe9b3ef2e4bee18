// Runs a conformance kit on this machine through the project's own hosts: Node's WASI
// (host/node.ts) or jco's component host (host/jco.ts), with the same checks and the same lines
// as the kit's run.sh. Under Node it also checks each run's peak linear memory against the
// module's budget (the engine enforces it; this makes it visible).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { runJcoCommand } from "../../host/jco.ts";
import { runWasiCommand } from "../../host/node.ts";
import type { RunResult } from "../../host/common.ts";
import { CarvqError } from "../errors.ts";
import { sha256, type KitCase } from "./cases.ts";
import { KIT_FORMAT } from "./kit.ts";

export type KitHost = "node" | "jco";

export interface RunKitOptions {
  dir: string;
  host: KitHost;
  /** Only the cases whose name contains this (a shell pattern: * ? [...], as run.sh's --only). */
  only?: string;
  /** Called with each case's line (PASS name / FAIL name: why) as it finishes. */
  onLine?: (line: string) => void;
}

export interface CaseResult {
  name: string;
  passed: boolean;
  /** Why it failed (the text after "FAIL name: "), or "" when it passed. */
  why: string;
  exitCode: number;
}

export interface KitRun {
  results: CaseResult[];
  passed: number;
  failed: number;
  /** Cases not run on this host, and why. */
  skipped: { names: string[]; reason: string } | null;
}

/**
 * A component host's preview1 adapter keeps its state in pages it grows from the module's own
 * memory, which counts against the declared maximum: under jco a 256 KiB device module has only
 * ~64 KiB left for the runtime, and a 128 KiB one traps in the adapter. So jco runs the generic
 * builds' cases (a 4 GiB budget) and leaves the device modules to core-module engines.
 */
const JCO_SKIP_REASON =
  "device modules are not run under jco: its preview1 adapter takes pages of the module's declared memory budget (run them with sh run.sh node host/run-wasi.mjs or --host node)";

interface Manifest {
  format: string;
  kitFormat: number;
  cases: KitCase[];
}

export function readManifest(dir: string): Manifest {
  const path = join(dir, "manifest.json");
  if (!existsSync(path)) throw new CarvqError(`${path}: not found (is ${dir} a conformance kit? make one with carvq conformance -o DIR)`);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(path, "utf8")) as Manifest;
  } catch {
    throw new CarvqError(`${path}: not valid JSON`);
  }
  if (manifest.format !== "carvq-conformance-kit" || manifest.kitFormat !== KIT_FORMAT)
    throw new CarvqError(
      `${path}: field format/kitFormat is ${manifest.format}/${manifest.kitFormat}; expected carvq-conformance-kit/${KIT_FORMAT}`,
    );
  return manifest;
}

/** run.sh's --only: the name contains the pattern, a shell pattern (* ? and [...] brackets, [!...] negated). */
export function matchesOnly(name: string, only: string | undefined): boolean {
  if (only === undefined || only === "") return true;
  let pattern = "";
  for (let i = 0; i < only.length; i++) {
    const ch = only[i];
    const close = ch === "[" ? only.indexOf("]", i + 2) : -1;
    if (ch === "*") pattern += ".*";
    else if (ch === "?") pattern += ".";
    else if (close > 0) {
      const body = only.slice(i + 1, close);
      pattern += `[${body.startsWith("!") ? `^${body.slice(1)}` : body}]`.replace(/\\/g, "\\\\");
      i = close;
    } else pattern += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(pattern).test(name);
}

/** The exit code a run reports: jco only says success or failure, so read the runtime's "[exit N]" tag. */
function exitCodeOf(run: RunResult, host: KitHost): number {
  if (host === "node" || run.exitCode === 0) return run.exitCode;
  const tagged = /\[exit (\d+)\]\s*$/m.exec(run.stderr);
  return tagged ? Number(tagged[1]) : run.exitCode;
}

/** The kit module wrapped as a WASI command component (jco new --wasi-command), cached by its hash. */
export function componentOf(modulePath: string): string {
  const bytes = readFileSync(modulePath);
  const cache = join(tmpdir(), "carvq-conformance-components");
  const path = join(cache, `${sha256(bytes)}.component.wasm`);
  if (existsSync(path)) return path;
  mkdirSync(cache, { recursive: true });
  const require = createRequire(import.meta.url);
  const jco = join(dirname(require.resolve("@bytecodealliance/jco")), "jco.js");
  const temp = `${path}.${process.pid}.tmp`;
  execFileSync(process.execPath, [jco, "new", modulePath, "--wasi-command", "-o", temp], { stdio: ["ignore", "ignore", "pipe"] });
  renameSync(temp, path);
  return path;
}

/**
 * Runs one command module under jco as an engine for the kit's run.sh would, from the current
 * folder (preopened as "."): `sh run.sh node dist/carvq.mjs conformance jco-run`. Returns its
 * stdout, stderr and the runtime's exit code (jco itself only says success or failure).
 */
export async function runUnderJco(modulePath: string, args: readonly string[]): Promise<RunResult> {
  const run = await runJcoCommand(args, { ".": process.cwd() }, componentOf(resolve(modulePath)));
  return { ...run, exitCode: exitCodeOf(run, "jco") };
}

async function runCase(dir: string, c: KitCase, host: KitHost): Promise<CaseResult> {
  const modulePath = join(dir, c.module);
  const preopens = { ".": dir };
  const run =
    host === "node" ? runWasiCommand(modulePath, c.args, preopens) : await runJcoCommand(c.args, preopens, componentOf(modulePath));
  const exitCode = exitCodeOf(run, host);
  let why = "";
  if (exitCode !== c.expectedExit) why = `expected exit ${c.expectedExit}, got ${exitCode}`;
  else if (sha256(run.stdout) !== c.expectedStdoutSha256)
    why = `rows differ (sha256 ${sha256(run.stdout)}, expected ${c.expectedStdoutSha256})`;
  else if (host === "node" && run.peakMemoryBytes > c.budgetBytes)
    why = `peak linear memory ${run.peakMemoryBytes} bytes is over the budget of ${c.budgetBytes}`;
  if (why !== "") {
    const first = run.stderr.split("\n").find((l) => l.trim() !== "");
    if (first !== undefined) why += `\n  stderr: ${first}`;
  }
  return { name: c.name, passed: why === "", why, exitCode };
}

/** Runs the kit's cases in order; never throws for a failing case. */
export async function runKit(options: RunKitOptions): Promise<KitRun> {
  const dir = resolve(options.dir);
  const matching = readManifest(dir).cases.filter((c) => matchesOnly(c.name, options.only));
  if (matching.length === 0) throw new CarvqError(`${options.dir}: no case matches '${options.only ?? ""}'`);
  const skip = (c: KitCase) => options.host === "jco" && c.target !== null;
  const cases = matching.filter((c) => !skip(c));
  const skippedNames = matching.filter(skip).map((c) => c.name);
  if (cases.length === 0)
    throw new CarvqError(`${options.dir}: every case that matches '${options.only ?? ""}' is skipped: ${JCO_SKIP_REASON}`);
  const results: CaseResult[] = [];
  for (const c of cases) {
    const result = await runCase(dir, c, options.host);
    results.push(result);
    options.onLine?.(result.passed ? `PASS ${c.name}` : `FAIL ${c.name}: ${result.why}`);
  }
  const passed = results.filter((r) => r.passed).length;
  return {
    results,
    passed,
    failed: results.length - passed,
    skipped: skippedNames.length === 0 ? null : { names: skippedNames, reason: JCO_SKIP_REASON },
  };
}
