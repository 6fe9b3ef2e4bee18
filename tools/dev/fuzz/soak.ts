// The soak: many random lookups in streaming mode on the smallest target (mcu-128k, two 64 KiB
// pages), run after run, through the Node host (node:wasi, real files) or the minimal host. Every
// run's rows are checked against the reference decoder, every run's peak linear memory is recorded
// (it must not grow from one run to the next, nor pass the target's budget), and the process's open
// file descriptors are counted before and after (none may leak).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTarget, wasmPath } from "../../../host/common.ts";
import { runMinimalWasi } from "../../../host/minimal-wasi.ts";
import { openRuntime } from "../../../host/node.ts";
import { randomBlob } from "../../blob/random.ts";
import { parseBlob } from "../../blob/reader.ts";
import { decodeTokens } from "../../decoder.ts";
import { Rng } from "./rng.ts";

export interface SoakOptions {
  /** Total lookups (tokens looked up) across all runs. */
  lookups: number;
  host: "node" | "minimal";
  target?: string;
  seed?: number;
  /** Tokens per run (one run = one command line; the budget bounds it). */
  tokensPerRun?: number;
  /** The blob's shape (default: the target's representative). */
  rows?: number;
  cols?: number;
  /** Check every run's rows against the reference decoder (default true). */
  verify?: boolean;
}

export interface SoakResult {
  host: "node" | "minimal";
  target: string;
  budgetBytes: number;
  blobBytes: number;
  runs: number;
  lookups: number;
  seconds: number;
  /** Peak linear memory of the first run, and the largest and smallest over all runs. */
  firstPeakBytes: number;
  maxPeakBytes: number;
  minPeakBytes: number;
  /** Open file descriptors of this process before and after (Linux /proc/self/fd; -1 elsewhere). */
  fdsBefore: number;
  fdsAfter: number;
  /** Runs whose rows differed from the reference decoder, or that failed. */
  mismatches: number;
  failures: string[];
}

function openFds(): number {
  return existsSync("/proc/self/fd") ? readdirSync("/proc/self/fd").length : -1;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const target = loadTarget(options.target ?? "mcu-128k");
  const shape = target.representative ?? { rows: 32000, cols: 288, subvec: 8, levels: 2, group: 1024, layout: "row" as const };
  const rows = options.rows ?? shape.rows;
  const cols = options.cols ?? shape.cols;
  const bytes = randomBlob({
    rows,
    cols,
    subvec: shape.subvec,
    levels: shape.levels,
    group: shape.group,
    layout: shape.layout,
    seed: options.seed ?? 1,
  });
  const blob = parseBlob(bytes, "soak.carvq");
  const rng = new Rng(options.seed ?? 1, 0x50a4);
  const perRun = options.tokensPerRun ?? 2048;
  const verify = options.verify !== false;
  const dir = mkdtempSync(join(tmpdir(), "carvq-soak-"));
  const path = join(dir, "soak.carvq");
  writeFileSync(path, bytes);
  const module = options.host === "minimal" ? new WebAssembly.Module(readFileSync(wasmPath({ target: target.name }))) : null;
  const result: SoakResult = {
    host: options.host,
    target: target.name,
    budgetBytes: target.memoryBudgetBytes,
    blobBytes: bytes.length,
    runs: 0,
    lookups: 0,
    seconds: 0,
    firstPeakBytes: 0,
    maxPeakBytes: 0,
    minPeakBytes: Infinity,
    fdsBefore: 0,
    fdsAfter: 0,
    mismatches: 0,
    failures: [],
  };
  const started = performance.now();
  // Open the handle before counting: its own state (none, for node:wasi) is not a per-run leak.
  const runtime = options.host === "node" ? await openRuntime({ blob: path, target: target.name, mode: "streaming" }) : null;
  result.fdsBefore = openFds();
  try {
    while (result.lookups < options.lookups) {
      const count = Math.min(perRun, options.lookups - result.lookups);
      const tokens = Array.from({ length: count }, () => rng.int(rows));
      let out: Uint8Array;
      let peak: number;
      try {
        if (runtime) {
          const rowsOut = runtime.lookup(tokens);
          out = new Uint8Array(rowsOut.buffer, rowsOut.byteOffset, rowsOut.byteLength);
          peak = runtime.lastRun!.peakMemoryBytes;
        } else {
          const run = runMinimalWasi(module!, {
            args: ["lookup", "--mode", "streaming", "/flash/soak.carvq", ...tokens.map(String)],
            preopens: [{ name: "/flash", files: { "soak.carvq": bytes } }],
          });
          if (run.exitCode !== 0) throw new Error(run.stderr.trim());
          if (run.calls.path_open !== run.calls.fd_close)
            throw new Error(`opened ${run.calls.path_open} files, closed ${run.calls.fd_close}`);
          out = run.stdout;
          peak = run.peakMemoryBytes;
        }
      } catch (err) {
        result.failures.push(`run ${result.runs}: ${err instanceof Error ? err.message : String(err)}`);
        if (result.failures.length >= 5) break;
        result.runs++;
        continue;
      }
      if (result.runs === 0) result.firstPeakBytes = peak;
      result.maxPeakBytes = Math.max(result.maxPeakBytes, peak);
      result.minPeakBytes = Math.min(result.minPeakBytes, peak);
      if (verify) {
        const want = decodeTokens(blob, tokens);
        if (!Buffer.from(out.buffer, out.byteOffset, out.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)))
          result.mismatches++;
      }
      result.runs++;
      result.lookups += count;
    }
  } finally {
    runtime?.close();
    result.fdsAfter = openFds();
    result.seconds = (performance.now() - started) / 1000;
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}
