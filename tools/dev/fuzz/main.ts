// `npm run fuzz -- --iterations N --seed S`: a fuzzing campaign over worker threads, with a
// watchdog that stops and reports any input that hangs. Also `--replay I` (rerun one iteration and
// save its input) and `--soak N` (N random streaming lookups on the smallest target).
//
// The bundle (build/fuzz.mjs) is both the main program and the worker: a worker runs iterations
// start + w, start + w + W, ... and posts findings as it meets them and its statistics now and then.
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { Campaign, readModuleSources, Stats, type Finding, type ModuleSource } from "./campaign.ts";
import { compressedBlobSeeds, type BlobSeed } from "./seeds.ts";
import { runSoak } from "./soak.ts";
import { checkOutputFolder } from "../../atomic.ts";
import { parseFlags, quoted } from "../../cli/args.ts";
import { CarvqError } from "../../errors.ts";
import { EXIT } from "../../exit-codes.ts";
import { count } from "../../text.ts";

const HELP = `npm run fuzz -- [options]

Mutates valid carvq blobs and model files and feeds them to the TypeScript readers and to every
runtime module (generic SIMD and scalar builds, each device target) in resident, streaming and
auto mode on the minimal WASI host; reports what each input did and every finding.

  --iterations N     iterations to run (default 10000)
  --seed S           campaign seed (default 1); iteration i depends only on (S, i)
  --start I          first iteration (default 0)
  --workers W        worker threads (default: the machine's cores)
  --hang-seconds T   an iteration running longer than this is a hang (default 30)
  --out DIR          where findings are saved, input and description (default build/fuzz-findings)
  --replay I         run iteration I alone, print what happened, save its input to --out
  --soak N           instead: N random streaming lookups on mcu-128k through the Node and
                     the minimal host; reports peak memory pages and open descriptors
  --json             print the report as JSON
  -h, --help         this text

Exit status: 0 when there are no findings, 1 when there are, 2 on bad usage.`;

interface WorkerInput {
  seed: number;
  modules: ModuleSource[];
  /** Made once by the main thread (compressedBlobSeeds) and shared with every worker. */
  blobSeeds: BlobSeed[];
  start: number;
  end: number;
  stride: number;
  offset: number;
  progress: SharedArrayBuffer;
  slot: number;
}

type WorkerMessage =
  | { type: "finding"; finding: Finding }
  | { type: "stats"; stats: Stats; done: number }
  | { type: "done"; stats: Stats; done: number };

function workerMain(input: WorkerInput): void {
  const campaign = new Campaign({ seed: input.seed, modules: input.modules, blobSeeds: input.blobSeeds });
  const progress = new Int32Array(input.progress);
  let last = performance.now();
  let done = 0;
  // For testing the watchdog itself: this iteration spins forever.
  const spinAt = process.env.CARVQ_FUZZ_TEST_HANG === undefined ? -1 : Number(process.env.CARVQ_FUZZ_TEST_HANG);
  for (let i = input.start + input.offset; i < input.end; i += input.stride) {
    Atomics.store(progress, input.slot, i);
    if (i === spinAt) for (;;);
    const result = campaign.run(i);
    done++;
    for (const finding of result.findings) parentPort!.postMessage({ type: "finding", finding } satisfies WorkerMessage);
    if (performance.now() - last > 250) {
      last = performance.now();
      parentPort!.postMessage({ type: "stats", stats: campaign.stats, done } satisfies WorkerMessage);
    }
  }
  campaign.close();
  parentPort!.postMessage({ type: "done", stats: campaign.stats, done } satisfies WorkerMessage);
}

if (!isMainThread) workerMain(workerData as WorkerInput);

interface Saved {
  key: string;
  count: number;
  first: Omit<Finding, "bytes">;
  files: string[];
}

/** Keeps findings grouped by kind (type + detail without numbers), saving the first two inputs of each. */
class FindingLog {
  readonly groups = new Map<string, Saved>();
  constructor(
    private readonly outDir: string,
    private readonly seed: number,
  ) {}

  add(f: Finding): void {
    const key = `${f.type}: ${f.detail.replace(/\d+/g, "#").slice(0, 120)}`;
    let group = this.groups.get(key);
    if (!group) {
      const { bytes: _bytes, ...rest } = f;
      group = { key, count: 0, first: rest, files: [] };
      this.groups.set(key, group);
    }
    group.count++;
    if (group.files.length < 2) {
      mkdirSync(this.outDir, { recursive: true });
      const base = join(this.outDir, `${f.type}-s${this.seed}-i${f.iteration}${f.config ? `-${f.config}` : ""}`);
      writeFileSync(`${base}${f.ext}`, f.bytes);
      const { bytes: _bytes, ...description } = f;
      writeFileSync(
        `${base}.json`,
        `${JSON.stringify({ ...description, seed: this.seed, file: `${base}${f.ext}`.split(/[\\/]/).pop() }, null, 2)}\n`,
      );
      group.files.push(`${base}${f.ext}`);
    }
  }

  get total(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.count;
    return n;
  }
}

function top(map: Record<string, number>, n: number): string[] {
  return Object.entries(map)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `    ${String(v).padStart(9)}  ${k}`);
}

function report(
  stats: Stats,
  log: FindingLog,
  options: { seed: number; start: number; iterations: number; workers: number; hangs: number },
): string {
  const seconds = stats.elapsedMs / 1000;
  const lines = [
    `carvq fuzz: seed ${options.seed}, iterations ${options.start} to ${options.start + options.iterations - 1} on ${options.workers} worker(s)`,
    `  ${count(stats.iterations, "iteration")} in ${seconds.toFixed(1)} s (${(stats.iterations / Math.max(seconds, 1e-9)).toFixed(0)} per second): ${stats.blobIterations} blobs, ${stats.modelIterations} model files`,
    `  TypeScript blob reader: accepted ${stats.tsBlobAccepted}, refused ${stats.blobIterations - stats.tsBlobAccepted}; model readers: accepted ${stats.tsModelAccepted}, refused ${stats.modelIterations - stats.tsModelAccepted}`,
    `  slowest runtime run ${stats.maxRunMs.toFixed(1)} ms, slowest reader call ${stats.maxReaderMs.toFixed(1)} ms`,
    "",
    "  runtime runs per module and mode, by exit code:",
  ];
  for (const [config, modes] of Object.entries(stats.runtime).sort()) {
    const total = Object.values(modes).reduce((n, m) => n + m.runs, 0);
    lines.push(
      `    ${config.padEnd(14)} ${String(total).padStart(9)} runs, peak memory up to ${((stats.maxPeakFraction[config] ?? 0) * 100).toFixed(2)} % of the module's maximum`,
    );
    for (const [mode, r] of Object.entries(modes).sort()) {
      const codes = Object.entries(r.byExit)
        .sort()
        .map(([c, n]) => `exit ${c}: ${n}`)
        .join(", ");
      lines.push(`      ${mode.padEnd(10)} ${String(r.runs).padStart(9)}  (${codes})`);
    }
  }
  lines.push("", `  TypeScript refused the METADATA JSON only (the runtime does not read it): ${stats.metadataOnlyDivergences} runs`);
  lines.push(`  blobs using a feature newer than the module reads (refused with exit 4): ${stats.newerThanRuntime} runs`);
  lines.push("", "  blob rejections by the TypeScript reader (top 25):", ...top(stats.tsBlobReasons, 25));
  lines.push("", "  runtime rejections, exit code and reason (top 25):", ...top(stats.runtimeReasons, 25));
  lines.push("", "  model file rejections (top 25):", ...top(stats.tsModelReasons, 25));
  lines.push("", `  findings: ${log.total}${options.hangs ? ` (${options.hangs} hangs)` : ""}`);
  for (const g of log.groups.values())
    lines.push(
      `    ${String(g.count).padStart(6)}  ${g.key}`,
      `            e.g. iteration ${g.first.iteration} (${g.first.seedName}; ${g.first.ops.join(", ")}): ${g.files.join(", ")}`,
    );
  return lines.join("\n");
}

async function campaign(options: {
  seed: number;
  start: number;
  iterations: number;
  workers: number;
  hangMs: number;
  outDir: string;
  json: boolean;
}): Promise<number> {
  const started = performance.now();
  const log = new FindingLog(options.outDir, options.seed);
  const total = new Stats();
  const end = options.start + options.iterations;
  const progress = new SharedArrayBuffer(4 * options.workers);
  const slots = new Int32Array(progress);
  let hangs = 0;
  const latest = new Map<Worker, { stats: Stats; done: number }>();
  let settledDone = 0;
  const settle = (w: Worker) => {
    const last = latest.get(w);
    if (last) {
      total.merge(Stats.from(last.stats));
      settledDone += last.done;
    }
    latest.delete(w);
  };
  const modules = readModuleSources();
  const blobSeeds = await compressedBlobSeeds();
  let replayer: Campaign | null = null;

  const startWorker = (slot: number, from: number): Promise<void> =>
    new Promise((done, fail) => {
      slots[slot] = -1;
      const worker = new Worker(new URL(import.meta.url), {
        workerData: {
          seed: options.seed,
          modules,
          blobSeeds,
          start: from,
          end,
          stride: options.workers,
          offset: 0,
          progress,
          slot,
        } satisfies WorkerInput,
        execArgv: ["--no-warnings"],
      });
      let seen = -1;
      let since = performance.now();
      // Set when this worker is replaced (hang or crash): its exit then ends nothing.
      let replaced = false;
      const replace = (type: string, detail: (current: number) => string) => {
        replaced = true;
        clearInterval(watchdog);
        const current = Atomics.load(slots, slot);
        // The iterations this worker finished after its last report, and the one it is stuck in,
        // count as run; their statistics are lost with it.
        const finished = current < from ? 0 : Math.floor((current - from) / options.workers);
        const uncounted = finished - (latest.get(worker)?.done ?? 0) + 1;
        total.iterations += uncounted;
        settledDone += uncounted;
        settle(worker);
        try {
          replayer ??= new Campaign({ seed: options.seed, modules, blobSeeds });
          const input = replayer.input(current);
          log.add({
            iteration: current,
            type,
            detail: detail(current),
            input: input.input,
            seedName: input.seedName,
            ops: input.ops,
            bytes: input.bytes,
            ext: input.ext,
          });
        } catch (err) {
          log.add({
            iteration: current,
            type,
            detail: `${detail(current)} (its input could not be rebuilt: ${String(err)})`,
            input: "blob",
            seedName: "?",
            ops: [],
            bytes: new Uint8Array(0),
            ext: ".bin",
          });
        }
        startWorker(slot, current + options.workers).then(done, fail);
      };
      const watchdog = setInterval(() => {
        const current = Atomics.load(slots, slot);
        if (current !== seen) {
          seen = current;
          since = performance.now();
          return;
        }
        if (current >= 0 && performance.now() - since > options.hangMs) {
          hangs++;
          void worker.terminate();
          replace("hang", (i) => `iteration ${i} ran for more than ${options.hangMs / 1000} s`);
        }
      }, 500);
      worker.on("message", (m: WorkerMessage) => {
        if (m.type === "finding") log.add({ ...m.finding, bytes: new Uint8Array(m.finding.bytes) });
        else latest.set(worker, { stats: m.stats, done: m.done });
      });
      worker.on("error", (err) => {
        if (!replaced) replace("worker-crash", () => String(err));
      });
      worker.on("exit", () => {
        clearInterval(watchdog);
        if (replaced) return;
        settle(worker);
        done();
      });
    });

  const ticker = setInterval(
    () => {
      let done = settledDone;
      for (const l of latest.values()) done += l.done;
      const line = `${done} of ${count(options.iterations, "iteration")}, ${count(log.total, "finding")}, ${((performance.now() - started) / 1000).toFixed(0)} s`;
      process.stderr.write(process.stderr.isTTY ? `\r  ${line}   ` : `${line}\n`);
    },
    process.stderr.isTTY ? 5000 : 60_000,
  );
  await Promise.all(Array.from({ length: options.workers }, (_, w) => startWorker(w, options.start + w)));
  clearInterval(ticker);
  if (process.stderr.isTTY) process.stderr.write("\n");
  (replayer as Campaign | null)?.close();
  total.elapsedMs = performance.now() - started;
  const meta = { seed: options.seed, start: options.start, iterations: options.iterations, workers: options.workers, hangs };
  if (options.json) process.stdout.write(`${JSON.stringify({ ...meta, stats: total, findings: [...log.groups.values()] }, null, 1)}\n`);
  else process.stdout.write(`${report(total, log, meta)}\n`);
  return log.total === 0 ? 0 : 1;
}

async function replay(seed: number, iteration: number, outDir: string): Promise<number> {
  const c = await Campaign.create({ seed });
  const input = c.input(iteration);
  const result = c.run(iteration);
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `replay-s${seed}-i${iteration}${input.ext}`);
  writeFileSync(file, input.bytes);
  process.stdout.write(
    `${JSON.stringify({ seed, iteration, input: input.input, seedName: input.seedName, ops: input.ops, bytes: input.bytes.length, saved: file, ms: result.ms, findings: result.findings.map(({ bytes: _b, ...f }) => f), runtime: c.stats.runtime, tsBlobReasons: c.stats.tsBlobReasons, tsModelReasons: c.stats.tsModelReasons, runtimeReasons: c.stats.runtimeReasons }, null, 1)}\n`,
  );
  c.close();
  return result.findings.length === 0 ? 0 : 1;
}

async function soak(lookups: number, seed: number, json: boolean): Promise<number> {
  const results = [];
  for (const host of ["node", "minimal"] as const) results.push(await runSoak({ lookups, host, seed, tokensPerRun: 2048 }));
  if (json) process.stdout.write(`${JSON.stringify(results, null, 1)}\n`);
  else {
    for (const r of results) {
      process.stdout.write(
        `soak ${r.host} host, ${r.target} (budget ${r.budgetBytes} bytes), blob ${r.blobBytes} bytes: ${r.lookups} lookups in ${r.runs} runs, ${r.seconds.toFixed(1)} s (${(r.lookups / r.seconds).toFixed(0)} per second)\n` +
          `  peak linear memory: first run ${r.firstPeakBytes} bytes (${r.firstPeakBytes / 65536} pages), every run ${r.minPeakBytes} to ${r.maxPeakBytes} bytes\n` +
          `  open file descriptors: ${r.fdsBefore} before, ${r.fdsAfter} after${r.fdsAfter > r.fdsBefore ? ` (LEAK: ${r.fdsAfter - r.fdsBefore})` : ""}\n` +
          `  rows differing from the reference decoder: ${r.mismatches} runs; failed runs: ${r.failures.length}${r.failures.length ? ` (${r.failures[0]})` : ""}\n`,
      );
    }
  }
  const ok = results.every(
    (r) =>
      r.mismatches === 0 &&
      r.failures.length === 0 &&
      r.maxPeakBytes === r.firstPeakBytes &&
      r.maxPeakBytes <= r.budgetBytes &&
      r.fdsAfter <= r.fdsBefore,
  );
  return ok ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  // Usage errors read "fuzz: ...", exit 2 (EXIT.usage); exit 1 is kept for "there are findings".
  const int = (flag: string, raw: string | undefined, fallback: number, min: number, max: number): number => {
    if (raw === undefined) return fallback;
    if (!/^\s*\d{1,16}\s*$/.test(raw) || Number(raw) < min || Number(raw) > max)
      throw new CarvqError(`fuzz: --${flag} must be a whole number from ${min} to ${max}, got ${quoted(raw)}`, EXIT.usage);
    return Number(raw);
  };
  try {
    const { values, positionals } = parseFlags(
      "fuzz",
      argv,
      {
        iterations: { type: "string" },
        seed: { type: "string" },
        start: { type: "string" },
        workers: { type: "string" },
        "hang-seconds": { type: "string" },
        out: { type: "string" },
        replay: { type: "string" },
        soak: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      "see npm run fuzz -- --help",
    );
    if (values.help) {
      process.stdout.write(`${HELP}\n`);
      return EXIT.ok;
    }
    if (positionals.length > 0)
      throw new CarvqError(`fuzz: unexpected argument '${positionals[0]}' (see npm run fuzz -- --help)`, EXIT.usage);
    const seed = int("seed", values.seed, 1, 0, 0xffffffff);
    const outDir = resolve(values.out ?? join("build", "fuzz-findings"));
    checkOutputFolder(outDir);
    if (values.soak !== undefined) return await soak(int("soak", values.soak, 1_000_000, 1, 1e9), seed, values.json === true);
    if (values.replay !== undefined) return replay(seed, int("replay", values.replay, 0, 0, Number.MAX_SAFE_INTEGER), outDir);
    const iterations = int("iterations", values.iterations, 10_000, 1, 1e10);
    const workers = Math.min(iterations, int("workers", values.workers, availableParallelism(), 1, 256));
    return await campaign({
      seed,
      start: int("start", values.start, 0, 0, Number.MAX_SAFE_INTEGER),
      iterations,
      workers,
      hangMs: 1000 * int("hang-seconds", values["hang-seconds"], 30, 1, 3600),
      outDir,
      json: values.json === true,
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(message.startsWith("fuzz: ") ? `${message}\n` : `fuzz: ${message}\n`);
    return err instanceof CarvqError ? err.exitCode : EXIT.internal;
  }
}

if (isMainThread) process.exitCode = await main(process.argv.slice(2));
