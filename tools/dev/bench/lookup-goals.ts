// The lookup goals of `npm run bench`, each a ratio of two paths timed inside the same engine: the bench
// modules (build/bench/, the runtime's source with a `bench` command, assembly/bench.ts) loop over
// a path with the WASI monotonic clock, so a ratio compares kernels, not instantiation or the
// host's file reads. Two paths of a goal are run alternately, one run each per round, and the
// goal is the median of the per-round ratios: on a shared machine a slow moment then hits both.
//
// Shapes: a Llama-3.2-1B-shaped table (128256 x 2048, the paper's h 8, L 2, g 1024 and its
// 16 -> 384 -> 512 -> 2048 int8 adaptor) and a stories15M-shaped one (32000 x 288, the same RVQ
// configuration, a 16 -> 64 -> 64 -> 288 int8 adaptor), random codes (tools/blob/random.ts): speed
// depends on the shape, not on the values.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { buildDir, checkRun, guestPath, GUEST_DIR, type ModeName } from "../../../host/common.ts";
import { runJcoCommand } from "../../../host/jco.ts";
import { runWasiCommand } from "../../../host/node.ts";
import { randomBlob, type RandomBlobOptions } from "../../blob/random.ts";
import { openTable } from "../../../host/table.ts";
import { CarvqError } from "../../errors.ts";
import { gemmPerThread, gemmShape } from "./compress.ts";
import { calibratedCount, openTiming, randomTokens, singleLookupSeconds } from "./library.ts";
import { goal, summarize, type BenchGoal, type BenchGroup, type BenchOptions, type Timing } from "./types.ts";

/** The cases of `carvq-rt bench` (assembly/bench.ts). */
type BenchCase = "decode" | "lookup" | "adaptor" | "fp16" | "copy";

/** One path to time: a case on a bench module, in a mode, with lookup's options. */
interface Path {
  label: string;
  module: "simd" | "scalar" | "rpi-zero2w";
  blob: string;
  case: BenchCase;
  mode?: ModeName;
  options?: string[];
  /** Items per pass; fixed (lookup batches must see 64-token requests) or found by calibration. */
  count?: number;
  /** Run through `jco run` of the component instead of node:wasi. */
  jco?: boolean;
}

/** What one run of the bench command printed (assembly/bench.ts). */
interface BenchLine {
  case: BenchCase;
  build: string;
  mode: ModeName;
  count: number;
  outRows: number;
  adaptorBatch: number;
  adaptorCached: boolean;
  adaptorTileBytes: number;
  mlpBytes: number;
  warmupNs: number;
  ns: number[];
}

interface Shape {
  id: "llama1b" | "stories15m";
  name: string;
  blob: RandomBlobOptions;
  int4: RandomBlobOptions;
}

const RVQ = { subvec: 8, levels: 2, group: 1024, layout: "row" as const };

const SHAPES: Shape[] = [
  {
    id: "llama1b",
    name: "Llama-3.2-1B-shaped 128256 x 2048",
    blob: { rows: 128256, cols: 2048, ...RVQ, adaptor: { widths: [16, 384, 512, 2048], precision: "int8" } },
    int4: { method: "int4", rows: 128256, cols: 2048, group: 32 },
  },
  {
    id: "stories15m",
    name: "stories15M-shaped 32000 x 288",
    blob: { rows: 32000, cols: 288, ...RVQ, adaptor: { widths: [16, 64, 64, 288], precision: "int8" } },
    int4: { method: "int4", rows: 32000, cols: 288, group: 32 },
  },
];

/** --quick: tiny tables of the same structure, so every goal key is produced in seconds. */
const QUICK_SHAPES: Shape[] = [
  {
    id: "llama1b",
    name: "quick stand-in for llama1b: 2048 x 256",
    blob: { rows: 2048, cols: 256, ...RVQ, adaptor: { widths: [16, 32, 32, 256], precision: "int8" } },
    int4: { method: "int4", rows: 2048, cols: 256, group: 32 },
  },
  {
    id: "stories15m",
    name: "quick stand-in for stories15m: 1024 x 64",
    blob: { rows: 1024, cols: 64, ...RVQ, adaptor: { widths: [16, 16, 64], precision: "int8" } },
    int4: { method: "int4", rows: 1024, cols: 64, group: 32 },
  },
];

/** A pass of a calibrated case lasts about this long. */
const PASS_SECONDS = 0.02;
/**
 * Timed passes per run after its warm-up pass; a run counts its fastest. On a shared machine a pass
 * is often preempted or slowed by a neighbour; the fastest of a few is the path's own cost, and the
 * median over rounds (and its spread) shows how stable that is.
 */
const PASSES_PER_RUN = 3;
/** The batched-lookup goal: requests of this many tokens. */
const BATCH_TOKENS = 64;

function modulePath(name: Path["module"]): string {
  const path = join(buildDir(), "bench", `${name}.wasm`);
  if (!existsSync(path)) throw new CarvqError(`${path}: not built (run npm run build)`);
  return path;
}

function componentPath(): string {
  const path = join(buildDir(), "bench", "simd.component.wasm");
  if (!existsSync(path)) throw new CarvqError(`${path}: not built (run npm run build)`);
  return path;
}

class Runner {
  private readonly dir = mkdtempSync(join(tmpdir(), "carvq-bench-"));
  private readonly scratch = mkdtempSync(join(tmpdir(), "carvq-bench-out-"));

  /** Writes a random blob of `shape` and returns its host path. */
  blob(name: string, shape: RandomBlobOptions): string {
    const path = join(this.dir, `${name}.carvq`);
    writeFileSync(path, randomBlob({ seed: 1, ...shape }));
    return path;
  }

  /** One run of the bench command: a warm-up pass and `repetitions` timed passes of `count` items. */
  async run(p: Path, count: number, repetitions: number): Promise<BenchLine> {
    const args = [
      "bench",
      ...(p.mode ? ["--mode", p.mode] : []),
      ...(p.options ?? []),
      guestPath(p.blob),
      p.case,
      String(count),
      String(repetitions),
    ];
    const preopens = { [GUEST_DIR]: this.dir };
    const result = p.jco
      ? await runJcoCommand(args, preopens, componentPath())
      : runWasiCommand(modulePath(p.module), args, preopens, { scratchDir: this.scratch });
    try {
      checkRun(result, p.blob);
    } catch (e) {
      throw new CarvqError(`bench ${p.label}: ${e instanceof Error ? e.message : String(e)}`);
    }
    return JSON.parse(new TextDecoder().decode(result.stdout)) as BenchLine;
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

/** Seconds per item of each timed pass of a run. */
function perItem(line: BenchLine): number[] {
  return line.ns.map((ns) => ns / 1e9 / line.count);
}

/** A measured pair: each path's timing and the per-round ratios a / b. */
interface Pair {
  a: Timing;
  b: Timing;
  ratio: number;
  lineA: BenchLine;
  lineB: BenchLine;
}

function median(values: number[]): number {
  return summarize("median", values, "").median;
}

/** Items per pass of `p`: its fixed count, or what makes a pass last PASS_SECONDS (one probe run). */
async function calibrate(r: Runner, p: Path, o: BenchOptions): Promise<number> {
  if (p.count !== undefined) return p.count;
  if (o.quick) return 16;
  const probe = await r.run(p, 8, 1);
  const seconds = Math.max(...perItem(probe), probe.warmupNs / 1e9 / probe.count, 1e-9);
  return Math.max(8, Math.min(1_000_000, Math.round(PASS_SECONDS / seconds)));
}

/**
 * Times paths a and b alternately, `rounds` runs each (a warm-up pass, then the fastest of
 * PASSES_PER_RUN timed passes), and returns their timings and the median of the per-round ratios
 * a / b. Without a fixed count, one calibration run each picks the count that makes a pass last
 * PASS_SECONDS.
 */
async function pair(r: Runner, a: Path, b: Path, o: BenchOptions): Promise<Pair> {
  const counts = await Promise.all([a, b].map((p) => calibrate(r, p, o)));
  const rounds = o.quick ? 1 : o.repetitions;
  const ta: number[] = [];
  const tb: number[] = [];
  const ratios: number[] = [];
  let lineA: BenchLine | undefined;
  let lineB: BenchLine | undefined;
  const passes = o.quick ? 1 : PASSES_PER_RUN;
  for (let i = 0; i < rounds; i++) {
    lineA = await r.run(a, counts[0]!, passes);
    lineB = await r.run(b, counts[1]!, passes);
    const sa = Math.min(...perItem(lineA));
    const sb = Math.min(...perItem(lineB));
    ta.push(sa);
    tb.push(sb);
    ratios.push(sa / sb);
  }
  o.log(`  ${a.label}: ${fmt(median(ta))} s, ${b.label}: ${fmt(median(tb))} s, ratio ${median(ratios).toFixed(3)}`);
  return { a: summarize(a.label, ta, "s"), b: summarize(b.label, tb, "s"), ratio: median(ratios), lineA: lineA!, lineB: lineB! };
}

function fmtUs(seconds: number): string {
  return `${(seconds * 1e6).toFixed(2)} µs`;
}

function fmt(seconds: number): string {
  return seconds.toExponential(3);
}

/** What the shapes' goals share: the GEMM's per-core rate, and each shape's table without its adaptor. */
interface Common {
  gemm: Timing;
  plain: Map<Shape["id"], { path: string; cols: number }>;
}

/**
 * The library's goal on one shape's table without its adaptor: single-token lookups through one
 * open instance of build/lib/carvq.wasm (openTable, resident), per token, against the in-module
 * RVQ decode of one row, alternately; plus its open time and first lookup, resident and streaming.
 */
async function libraryGoals(r: Runner, s: Shape, o: BenchOptions, c: Common, goals: BenchGoal[], extra: Timing[]): Promise<void> {
  const plain = r.blob(`${s.id}-rvq`, { ...s.blob, adaptor: undefined });
  const table = await openTable(plain, { build: "simd", mode: "resident" });
  const passes = o.quick ? 1 : PASSES_PER_RUN;
  try {
    const tokens = randomTokens(table.rows, o.quick ? 16 : calibratedCount(table, PASS_SECONDS));
    const decode: Path = {
      module: "simd",
      blob: plain,
      mode: "resident",
      label: `in-module RVQ decode of a ${s.blob.cols}-wide row`,
      case: "decode",
    };
    const decodeCount = await calibrate(r, decode, o);
    const lib: number[] = [];
    const mod: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < (o.quick ? 1 : o.repetitions); i++) {
      const a = singleLookupSeconds(table, tokens, passes);
      const b = Math.min(...perItem(await r.run(decode, decodeCount, passes)));
      lib.push(a);
      mod.push(b);
      ratios.push(a / b);
    }
    const ratio = median(ratios);
    const libTiming = summarize(`single-token lookup through an open library instance (openTable, Node), ${s.blob.cols} values`, lib, "s");
    o.log(`  library single lookup: ${fmt(libTiming.median)} s, in-module decode ${fmt(median(mod))} s, ratio ${ratio.toFixed(3)}`);
    goals.push(
      goal(
        `lookup.library-vs-decode.${s.id}`,
        `single-token lookup through an open library instance vs the in-module RVQ decode of one row (SIMD, resident, no adaptor), ${s.name}: goal <= 1.5x`,
        ratio,
        1.5,
        "max",
        [libTiming, summarize(decode.label, mod, "s")],
        `what a lookup adds to the decode: the JS call into the instance, carvq_lookup's checks (the token's range, the request against the I/O area) and the ${s.blob.cols * 4}-byte row copied out of that area, ${fmtUs(libTiming.median - median(mod))} per call here` +
          (ratio <= 1.5
            ? ""
            : `: a fixed cost per call that a ${s.blob.cols}-wide row's ${fmtUs(median(mod))} decode cannot hide (a wider row does; batched requests share it)`),
      ),
    );
    c.plain.set(s.id, { path: plain, cols: s.blob.cols });
  } finally {
    table.close();
  }
  const reps = o.quick ? 1 : 3;
  const size = `${(readSize(plain) / 2 ** 20).toFixed(1)} MiB`;
  for (const [label, options] of [
    ["resident, generic SIMD", { build: "simd" as const, mode: "resident" as const }],
    ["streaming, rpi-zero2w", { target: "rpi-zero2w", mode: "streaming" as const }],
  ] as const) {
    const t = await openTiming(plain, options, reps);
    extra.push(
      summarize(
        `${s.id} (${size}): openTable, ${label} (instantiate, validate every CRC, plan${options.mode === "resident" ? ", load" : ""})`,
        t.openSeconds,
        "s",
      ),
    );
    extra.push(summarize(`${s.id}: first lookup after the open, ${label}`, t.firstLookupSeconds, "s"));
  }
}

/**
 * Per value decoded, single-token lookups through open instances on the large and the small table,
 * alternately in each round (a slow moment of the shared machine then hits both).
 */
async function sizeIndependence(
  big: { path: string; cols: number },
  small: { path: string; cols: number },
  o: BenchOptions,
): Promise<BenchGoal> {
  const tables = await Promise.all([big, small].map((t) => openTable(t.path, { build: "simd", mode: "resident" })));
  try {
    const tokens = tables.map((t) => randomTokens(t.rows, o.quick ? 16 : calibratedCount(t, PASS_SECONDS)));
    const passes = o.quick ? 1 : PASSES_PER_RUN;
    const perValue: number[][] = [[], []];
    const ratios: number[] = [];
    for (let i = 0; i < (o.quick ? 1 : o.repetitions); i++) {
      const [a, b] = tables.map((t, k) => singleLookupSeconds(t, tokens[k], passes) / t.cols);
      perValue[0].push(a);
      perValue[1].push(b);
      ratios.push(Math.max(a / b, b / a));
    }
    const ratio = median(ratios);
    const [tb, ts] = [0, 1].map((k) =>
      summarize(
        `${k === 0 ? SHAPES[0].id : SHAPES[1].id}: library single lookup per value (${tables[k].cols} values a row)`,
        perValue[k],
        "s",
      ),
    );
    o.log(
      `  library per value: ${fmt(tb.median)} s (${big.cols} wide), ${fmt(ts.median)} s (${small.cols} wide), ratio ${ratio.toFixed(3)}`,
    );
    return goal(
      "lookup.library-size-independence",
      `library single-token lookups per value decoded, ${SHAPES[0].name} vs ${SHAPES[1].name} blobs (either way, alternately): goal <= 1.3x`,
      ratio,
      1.3,
      "max",
      [tb, ts],
      `a lookup reads one record and the codebook entries it names wherever the table is, so only the per-call cost, a larger share of a ${small.cols}-value row, differs${o.quick ? "; quick: the stand-in shapes" : ""}`,
    );
  } finally {
    for (const t of tables) t.close();
  }
}

function readSize(path: string): number {
  return statSync(path).size;
}

/** The goals of one shape. */
async function shapeGoals(r: Runner, s: Shape, o: BenchOptions, c: Common, goals: BenchGoal[], extra: Timing[]): Promise<void> {
  o.log(`lookup: ${s.name}`);
  const blob = r.blob(s.id, s.blob);
  const int4 = r.blob(`${s.id}-int4`, s.int4);
  const widths = s.blob.adaptor!.widths;
  const macs = widths.slice(1).reduce((sum, w, k) => sum + w * widths[k]!, 0);
  const cols = s.blob.cols;
  const resident: Pick<Path, "module" | "blob" | "mode"> = { module: "simd", blob, mode: "resident" };
  const fp16: Path = { ...resident, label: `FP16 row of ${cols} to f32`, case: "fp16" };

  // 1. RVQ-only decode vs widening an FP16 row of the same width.
  const g1 = await pair(r, { ...resident, label: `RVQ decode of a ${cols}-wide row`, case: "decode" }, fp16, o);
  goals.push(
    goal(
      `lookup.rvq-vs-fp16.${s.id}`,
      `RVQ-only decode vs FP16 row to f32 (SIMD, resident, node:wasi), ${s.name}: goal <= 2x`,
      g1.ratio,
      2,
      "max",
      [g1.a, g1.b],
      g1.ratio <= 2
        ? undefined
        : `per row: ${cols / RVQ.subvec} sub-vectors, each a code read, a group index and ${RVQ.levels} codebook entries widened and added, vs one straight widening pass over ${cols * 2} bytes`,
    ),
  );

  await libraryGoals(r, s, o, c, goals, extra);

  // The same through the component under jco (the preview2 shim's clock and files).
  const j1 = await pair(
    r,
    { ...resident, label: `RVQ decode (jco)`, case: "decode", jco: true },
    { ...fp16, label: `FP16 row (jco)`, jco: true },
    { ...o, repetitions: Math.min(o.repetitions, 3) },
  );
  goals.push(
    goal(
      `lookup.jco.rvq-vs-fp16.${s.id}`,
      `RVQ-only decode vs FP16 row to f32 under jco run (component), ${s.name}: goal <= 2x`,
      j1.ratio,
      2,
      "max",
      [j1.a, j1.b],
    ),
  );

  // 2. The adaptor for one token vs copying its MLP's bytes once.
  const adaptor: Path = { ...resident, label: `adaptor for one token (${widths.join("-")} int8, ${macs} MACs)`, case: "adaptor" };
  const g2 = await pair(r, adaptor, { ...resident, label: `memory.copy of the MLP's bytes`, case: "copy" }, o);
  const mlp = g2.lineB.mlpBytes;
  const adaptorMacs = macs / g2.a.median;
  const gemmMacs = (c.gemm.median * 1e9) / 2;
  const macRatio = adaptorMacs / gemmMacs;
  goals.push(
    goal(
      `lookup.adaptor-vs-gemm.${s.id}`,
      `adaptor's multiply-adds per second vs the training GEMM kernel's per-core rate (SIMD, resident), ${s.name}: goal >= 0.7x`,
      macRatio,
      0.7,
      "min",
      [
        { ...g2.a, label: `${g2.a.label}: ${(adaptorMacs / 1e9).toFixed(2)} GMAC/s` },
        { ...c.gemm, label: `${c.gemm.label}: ${(gemmMacs / 1e9).toFixed(2)} GMAC/s` },
      ],
      `the GEMM's rate is its flops per CPU-second on one thread (a ${gemmShape(o.quick).join(" x ")} training step, forward and backward), the adaptor's from its fastest pass; the adaptor is one token's matrix-vector products, every int8 weight widened to f32 and used once, while the GEMM reuses each loaded value across a register tile. For reference, memory.copy of the MLP's ${mlp} bytes takes ${(g2.b.median * 1e6).toFixed(1)} µs (${g2.ratio.toFixed(2)}x less than the adaptor)`,
    ),
  );

  // 3. A 64-token request (batches as lookup plans them) vs the same tokens one per batch.
  const count = o.quick ? BATCH_TOKENS : BATCH_TOKENS * 4;
  const g3 = await pair(
    r,
    { ...resident, label: `lookup in ${BATCH_TOKENS}-token requests, per token`, case: "lookup", count },
    { ...resident, label: "single lookups (--adaptor-batch 1), per token", case: "lookup", count, options: ["--adaptor-batch", "1"] },
    o,
  );
  goals.push(
    goal(
      `lookup.batch64-vs-single.${s.id}`,
      `batched lookup of 64 tokens vs 64 single lookups, per token (SIMD, resident), ${s.name}: goal <= 0.5x`,
      g3.ratio,
      0.5,
      "max",
      [g3.a, g3.b],
      `the runtime evaluates a ${BATCH_TOKENS}-token request in batches of ${g3.lineA.adaptorBatch} (its 64 KiB output batch)` +
        (g3.ratio <= 0.5
          ? ""
          : `; a batch shares each weight's load and widening across four tokens, but every token still needs its own f32 multiply and add per weight (the bit-exact sum order rules out reassociation, and wasm SIMD has no fused multiply-add), so per token the work falls at most to the multiply-adds`),
    ),
  );

  // 4. SIMD vs scalar build on the adaptor.
  const g4 = await pair(
    r,
    { ...adaptor, module: "scalar", label: "adaptor for one token, scalar build" },
    { ...adaptor, label: "adaptor for one token, SIMD build" },
    o,
  );
  goals.push(
    goal(`lookup.simd-vs-scalar.${s.id}`, `SIMD vs scalar build on the adaptor (speed-up), ${s.name}: goal >= 3x`, g4.ratio, 3, "min", [
      g4.a,
      g4.b,
    ]),
  );

  // 5. Streaming inside rpi-zero2w's 4 MiB vs resident, whole lookups.
  const g5 = await pair(
    r,
    { ...resident, label: `lookup, resident (generic SIMD module), per token`, case: "lookup", count: BATCH_TOKENS * (o.quick ? 1 : 8) },
    {
      module: "rpi-zero2w",
      blob,
      label: `lookup, streaming in rpi-zero2w's 4 MiB, per token`,
      case: "lookup",
      count: BATCH_TOKENS * (o.quick ? 1 : 8),
    },
    o,
  );
  const plan = g5.lineB.adaptorCached ? "the MLP held whole" : `the MLP in ${g5.lineB.adaptorTileBytes}-byte tiles`;
  goals.push(
    goal(
      `lookup.streaming-vs-resident.${s.id}`,
      `streaming in rpi-zero2w's budget vs resident (speed), whole lookups with the adaptor, ${s.name}: goal >= 0.5x`,
      g5.ratio,
      0.5,
      "min",
      [g5.b, g5.a],
      `streaming plan: ${plan}, batches of ${g5.lineB.adaptorBatch}; each token's record, codebook group and sigma0 row read with fd_pread from the page cache`,
    ),
  );

  // For reference: streaming vs resident without the adaptor (the table part alone), and int4.
  const rvqStream = await pair(
    r,
    { ...resident, label: "RVQ decode, resident", case: "decode" },
    { module: "rpi-zero2w", blob, label: `RVQ decode, streaming in rpi-zero2w's 4 MiB`, case: "decode" },
    o,
  );
  extra.push({ ...rvqStream.b, label: `${s.id}: ${rvqStream.b.label} (speed ${rvqStream.ratio.toFixed(2)}x resident)` });
  const i4 = await pair(
    r,
    { module: "simd", blob: int4, mode: "resident", label: "int4 decode of a row", case: "decode" },
    { module: "simd", blob: int4, mode: "resident", label: "FP16 row", case: "fp16" },
    o,
  );
  extra.push({
    ...i4.a,
    label: `${s.id}: int4 (block 32) decode of a ${cols}-wide row, SIMD resident (${i4.ratio.toFixed(2)}x the FP16 row)`,
  });
}

/** How the lookup figures are taken and what bounds them, for docs/PERFORMANCE.md. */
const LOOKUP_NOTES = [
  "**How.** Each figure is timed inside the WebAssembly module with WASI's monotonic clock: `build/bench/*.wasm` are the runtime's own source built with a `bench` command (`carvq-rt bench <blob> <case> <count> <repetitions>`, assembly/bench.ts) that loops over one path (`decode`: the RVQ sum of a random token's row; `lookup`: whole lookups as the `lookup` command makes them, batches and adaptor included, without writing the rows; `adaptor`: one token's adaptor; `fp16`: widening a random row of an FP16 table as large as the real one, rows x cols x 2 bytes, with the decode's own widening kernel; `copy`: `memory.copy` of the adaptor's MLP bytes). The device modules do not contain the command, so they keep the runtime's eleven WASI imports. Two paths of a goal run alternately, one run each per round after a calibration run; each run does a warm-up pass and three timed ones and keeps the fastest (a neighbour on the shared cores slows some passes), and the goal is the median of the per-round ratios; the medians and spreads shown are over the rounds. Node's WASI hosts every run but the `jco` rows, which run the same module as a component under `jco run`. The library goals time, in JavaScript, single-token lookups through one open instance of `build/lib/carvq.wasm` (`openTable`, resident, the table without its adaptor), alternating with the in-module decode of the same table; the adaptor's rate is set against the adaptor trainer's GEMM kernel on one thread (the compression group's kernel, timed in the same run).",
  "**Where the time goes.** *RVQ vs FP16*: a long-lived instance (the bench, the library, `lookup --stdin`) widens a resident blob's codebooks to f32 once at open when the budget holds them, so a decoded value is two f32 entries added, while the FP16 row widens every value (exact for subnormals, infinities and NaNs, 13 SIMD operations per four values); without the widening (streaming, or a budget too small) the RVQ row widens two entries per value and the ratio sits near 2. The rest is per sub-vector (a code byte, two entry addresses). The tables here fit this machine's large cache, so the FP16 row is not slowed by memory, as it would be on a device. *Adaptor vs the GEMM kernel*: one token's adaptor is compute-bound: an int8 weight becomes an f32 in three SIMD steps (int8 to int16 to int32 to f32) before its multiply and add, about 20 SIMD operations per 16 weights, each weight used once per token, while the GEMM kernel loads f32 values and reuses each across a register tile. The sums' order is fixed (docs/FORMAT.md's eight-lane sum, bit-identical in every build), which rules out integer dot products and reassociation, and WebAssembly SIMD has no fused multiply-add. *Batched vs single*: a batch of four tokens widens each weight once for all four, but each token keeps its own multiply and add per weight, so batching cannot go below about half the single-token cost; a device whose cache cannot hold the MLP (1.27 MB here) gains more, since a batch reads it from memory once. *SIMD vs scalar*: on the small stories15M-sized adaptor the per-channel and per-layer work outside the dot products (scales, biases, LayerNorm) weighs more.",
];

/** The lookup group of `npm run bench`. */
export async function benchLookup(o: BenchOptions): Promise<BenchGroup> {
  const started = performance.now();
  const r = new Runner();
  const goals: BenchGoal[] = [];
  const extra: Timing[] = [];
  try {
    const shape = gemmShape(o.quick);
    o.log(`lookup: the training GEMM kernel's per-core rate (${shape.join(" x ")}, 1 thread), for the adaptor's goal`);
    // Per CPU-second: the kernel's rate while it ran, whatever share of the shared cores it got
    // (its wall-clock rate drops when a neighbour preempts it, which the adaptor's fastest pass hides).
    const c: Common = { gemm: (await gemmPerThread(1, o, shape)).perCpuSecond, plain: new Map() };
    for (const s of o.quick ? QUICK_SHAPES : SHAPES) await shapeGoals(r, s, o, c, goals, extra);
    const big = c.plain.get("llama1b");
    const small = c.plain.get("stories15m");
    if (big !== undefined && small !== undefined) goals.push(await sizeIndependence(big, small, o));
  } finally {
    r.close();
  }
  o.log(`lookup: done in ${((performance.now() - started) / 1000).toFixed(1)} s (load average now ${loadavg()[0]!.toFixed(2)})`);
  return { name: "lookup", goals, extra, seconds: (performance.now() - started) / 1000, notes: LOOKUP_NOTES };
}
