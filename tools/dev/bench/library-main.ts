// npm run bench:library -- <blob> [--target NAME] [--mode resident|streaming] [--tokens N] [--one-shot K] [--no-jco] [--json]
//
// What an inference engine gains by opening a blob once: per-token time of N single-token lookups
// through one open instance of the library (openTable, Node's WASI; and the WIT component under
// jco), the open time and the first lookup's latency, against today's one-shot way, one process
// run per token: the WASI command run once per token in this process (instantiate, validate every
// CRC, plan, look up: what a script pays per call), and `carvq lookup` spawned per token (a Node
// process each time, what a shell pipeline pays). Random tokens, the same for every path.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { devNull, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { checkRun, GUEST_DIR, guestPath, projectRoot, type ModeName } from "../../../host/common.ts";
import { openComponentTable } from "../../../host/jco.ts";
import { runWasiCommand, wasmPath } from "../../../host/node.ts";
import { openTable, type TableMode } from "../../../host/table.ts";
import { CarvqError } from "../../errors.ts";
import { openTiming, randomTokens, singleLookupSeconds } from "./library.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: "string" },
    mode: { type: "string" },
    tokens: { type: "string" },
    "one-shot": { type: "string" },
    "no-jco": { type: "boolean" },
    json: { type: "boolean" },
  },
});
if (positionals.length !== 1)
  throw new CarvqError(
    "npm run bench:library -- <blob> [--target NAME] [--mode resident|streaming] [--tokens N] [--one-shot K] [--no-jco] [--json]",
    2,
  );
const blob = resolve(positionals[0]);
const target = values.target ?? "rpi-zero2w";
const mode = (values.mode ?? "streaming") as TableMode;
const N = Number(values.tokens ?? 10_000);
const K = Number(values["one-shot"] ?? 10);
const PASSES = 3;
const log = (line: string) => process.stderr.write(`${line}\n`);

async function main() {
  const blobBytes = statSync(blob).size;
  const node = await openTable(blob, { target, mode });
  const { rows, cols } = node;
  node.close();
  const tokens = randomTokens(rows, N);
  log(`bench:library: ${blob} (${(blobBytes / 2 ** 20).toFixed(1)} MiB, ${rows} x ${cols}), ${target} ${mode}, ${N} single-token lookups`);

  // The library under Node: open, first lookup, then N single lookups through one instance.
  const opens = await openTiming(blob, { target, mode }, 3, tokens[0]);
  const nodeOpen = { openSeconds: Math.min(...opens.openSeconds), firstLookupSeconds: Math.min(...opens.firstLookupSeconds) };
  const table = await openTable(blob, { target, mode });
  const nodePerToken = singleLookupSeconds(table, tokens, PASSES);
  const memoryBytes = table.memoryBytes;
  table.close();
  log(
    `  library, Node: open ${ms(nodeOpen.openSeconds)} (fastest of 3), first lookup ${us(nodeOpen.firstLookupSeconds)}, ${us(nodePerToken)} per token (fastest of ${PASSES} passes), linear memory ${memoryBytes} bytes`,
  );

  // The WIT component under jco (the generic SIMD build; its open takes no mode: auto).
  let jco: { firstOpenSeconds: number; openSeconds: number; perTokenSeconds: number } | null = null;
  if (values["no-jco"] !== true) {
    // The first open transpiles the component (once per process); the second is what an open costs.
    const t0 = performance.now();
    (await openComponentTable(blob)).close();
    const firstSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const component = await openComponentTable(blob);
    const openSeconds = (performance.now() - t1) / 1000;
    const one = new Uint32Array(1);
    let best = Infinity;
    for (let p = 0; p < PASSES; p++) {
      const started = performance.now();
      for (let i = 0; i < tokens.length; i++) {
        one[0] = tokens[i];
        component.lookup(one);
      }
      best = Math.min(best, (performance.now() - started) / 1000 / tokens.length);
    }
    component.close();
    jco = { firstOpenSeconds: firstSeconds, openSeconds, perTokenSeconds: best };
    log(
      `  component, jco (generic SIMD build, mode auto): first open ${ms(firstSeconds)} (transpiling the component included), then instantiate + open ${ms(openSeconds)}, ${us(best)} per token`,
    );
  }

  // Today's one-shot command, K runs of one token each: in process, then as `carvq lookup`.
  const wasm = wasmPath({ target });
  const scratch = mkdtempSync(join(tmpdir(), "carvq-bench-library-"));
  let inProcess = Infinity;
  try {
    for (let k = 0; k < K; k++) {
      const started = performance.now();
      const run = runWasiCommand(
        wasm,
        ["lookup", "--mode", mode as ModeName, guestPath(blob), String(tokens[k % N])],
        { [GUEST_DIR]: dirname(blob) },
        { scratchDir: scratch, discardStdout: true },
      );
      const seconds = (performance.now() - started) / 1000;
      checkRun(run, blob);
      inProcess = Math.min(inProcess, seconds);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const cli = join(projectRoot(), "dist", "carvq.mjs");
  let spawned = Infinity;
  for (let k = 0; k < K; k++) {
    const started = performance.now();
    const run = spawnSync(
      process.execPath,
      [
        "--no-warnings",
        cli,
        "lookup",
        blob,
        "--tokens",
        String(tokens[k % N]),
        "--target",
        target,
        "--mode",
        mode,
        "-o",
        devNull,
        "--force",
      ],
      { encoding: "utf8" },
    );
    const seconds = (performance.now() - started) / 1000;
    if (run.status !== 0) throw new CarvqError(`carvq lookup failed: ${run.stderr.trim()}`, run.status ?? 70);
    spawned = Math.min(spawned, seconds);
  }
  log(`  one-shot command, in process: ${ms(inProcess)} per token (fastest of ${K}); carvq lookup per process: ${ms(spawned)}`);
  log(
    `  ratio one-shot / library: ${(inProcess / nodePerToken).toFixed(0)}x in process, ${(spawned / nodePerToken).toFixed(0)}x per carvq lookup process`,
  );

  const result = {
    blob,
    blobBytes,
    rows,
    cols,
    target,
    mode,
    tokens: N,
    node: { ...nodeOpen, perTokenSeconds: nodePerToken, memoryBytes },
    jco,
    oneShot: { runs: K, inProcessSeconds: inProcess, carvqLookupSeconds: spawned },
    ratios: {
      inProcessOverLibrary: inProcess / nodePerToken,
      carvqLookupOverLibrary: spawned / nodePerToken,
      ...(jco ? { jcoOverNode: jco.perTokenSeconds / nodePerToken } : {}),
    },
  };
  if (values.json === true) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

function ms(seconds: number): string {
  return `${(seconds * 1000).toFixed(2)} ms`;
}

function us(seconds: number): string {
  return `${(seconds * 1e6).toFixed(2)} µs`;
}

main().catch((e: unknown) => {
  process.stderr.write(`npm run bench:library: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = e instanceof CarvqError ? e.exitCode : 1;
});
