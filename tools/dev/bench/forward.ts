// The Hugging Face forward's group of `npm run bench`: the matrix kernel's GFLOP/s on the products of
// one Llama-3.2-1B-shaped layer (1 thread and all threads), then a prefill of a --ctx 512 window
// with the logits of every position (what perplexity needs) through the forward (tools/hf/forward.ts)
// on a random Llama-3.2-1B-shaped bf16 checkpoint, its tokens/s, and the ratio to the bound the
// kernel's measured GFLOP/s allows, 2 x params flops per token; goal >= 0.5.
//
// The checkpoint (2.5 GB) is written once, from a seeded generator, to .cache/bench/ and reused;
// it is never part of the repository.
import { existsSync, mkdtempSync, renameSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../../../host/common.ts";
import { headLogits, prefill } from "../../hf/forward.ts";
import type { MatmulBackend, MatmulJob } from "../../hf/matmul.ts";
import { openMatmul } from "../../hf/matmul-pool.ts";
import { loadHfModel, type HfModel } from "../../hf/model.ts";
import { randomHfFolder, writeHfFolder, type RandomCheckpointOptions } from "../../hf/write.ts";
import { createRandom } from "../../random.ts";
import { goal, summarize, type BenchGoal, type BenchGroup, type BenchOptions, type Timing } from "./types.ts";

/** Llama-3.2-1B's shapes (its config.json), with random bf16 weights. */
export const LLAMA_1B: RandomCheckpointOptions = {
  architecture: "LlamaForCausalLM",
  hiddenSize: 2048,
  intermediateSize: 8192,
  layers: 16,
  heads: 32,
  kvHeads: 8,
  vocabSize: 128256,
  dtype: "BF16",
  tied: true,
  seed: 1,
  ropeTheta: 500000,
  ropeScaling: { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  maxPositions: 131072,
};

/** A few-kilobyte stand-in of the same architecture for --quick (the smoke test). */
const TINY: RandomCheckpointOptions = {
  ...LLAMA_1B,
  hiddenSize: 64,
  intermediateSize: 160,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  vocabSize: 300,
  maxPositions: 64,
};

export const CONTEXT = 512;
const QUICK_CONTEXT = 16;
/** Logit rows per head product (a 128256-wide row is half a megabyte). */
const HEAD_ROWS = 64;

/** Weights multiplied per token: every projection of every layer and the head (the tied embedding counted once, as the head). */
export function matmulParams(o: RandomCheckpointOptions): number {
  const d = o.hiddenSize;
  const headDim = d / o.heads;
  const perLayer = d * (o.heads * headDim) * 2 + 2 * d * (o.kvHeads * headDim) + 3 * d * o.intermediateSize;
  return o.layers * perLayer + o.vocabSize * d;
}

/** The products of one layer, [outDim, inDim] (q, k, v, o, gate, up, down). */
function layerShapes(o: RandomCheckpointOptions): [string, number, number][] {
  const d = o.hiddenSize;
  const kv = o.kvHeads * (d / o.heads);
  return [
    ["q", d, d],
    ["k", kv, d],
    ["v", kv, d],
    ["o", d, d],
    ["gate", o.intermediateSize, d],
    ["up", o.intermediateSize, d],
    ["down", d, o.intermediateSize],
  ];
}

/** The cached random checkpoint folder, written (atomically: a temporary folder renamed) when absent. */
function checkpointFolder(o: RandomCheckpointOptions, quick: boolean, log: (line: string) => void): string {
  if (quick) {
    const dir = mkdtempSync(join(tmpdir(), "carvq-bench-hf-"));
    writeHfFolder(dir, randomHfFolder(o));
    return dir;
  }
  const dir = join(projectRoot(), ".cache", "bench", `llama1b-random-bf16-seed${o.seed}`);
  if (existsSync(join(dir, "model.safetensors"))) return dir;
  log(`forward: writing a random Llama-3.2-1B-shaped bf16 checkpoint to ${dir} (2.5 GB, once; reused by later runs)`);
  const started = performance.now();
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  writeHfFolder(partial, randomHfFolder(o));
  renameSync(partial, dir);
  log(
    `forward: wrote ${(statSync(join(dir, "model.safetensors")).size / 1e9).toFixed(2)} GB in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
  return dir;
}

/** GFLOP/s of one layer's seven products at `rows` rows on `backend`, each repetition after one warm-up. */
function kernelRate(
  backend: MatmulBackend,
  o: RandomCheckpointOptions,
  rows: number,
  repetitions: number,
  label: string,
): { wall: Timing; perCpu: Timing } {
  const random = createRandom(7);
  const shapes = layerShapes(o);
  const jobs: MatmulJob[] = shapes.map(([, outDim, inDim]) => {
    const weight = backend.allocWeight("bf16", outDim * inDim) as Uint16Array;
    for (let i = 0; i < weight.length; i++) weight[i] = 0x3c00 + Math.floor(random() * 0x200) + (random() < 0.5 ? 0x8000 : 0); // |w| in [2^-7, 2^-6)
    return {
      x: Float32Array.from({ length: rows * inDim }, () => random() - 0.5),
      rows,
      weight,
      dtype: "bf16",
      inDim,
      outDim,
      out: new Float32Array(rows * outDim),
    };
  });
  const flops = jobs.reduce((sum, j) => sum + 2 * j.rows * j.inDim * j.outDim, 0);
  const rates: number[] = [];
  const perCpu: number[] = [];
  for (let r = 0; r <= repetitions; r++) {
    const started = performance.now();
    const cpu = process.cpuUsage();
    for (const job of jobs) backend.matmul(job);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    if (r > 0) {
      rates.push(flops / seconds / 1e9);
      perCpu.push(flops / ((used.user + used.system) / 1e6) / 1e9);
    }
  }
  return {
    wall: summarize(label, rates, "GFLOP/s"),
    perCpu: summarize(`${label}, per CPU-second (a core's rate while it ran)`, perCpu, "GFLOP/s"),
  };
}

/** Resident set size sampled after every product: the peak of the forward (the products block the event loop). */
function sampling(backend: MatmulBackend): { backend: MatmulBackend; peak: () => number } {
  let peak = process.memoryUsage.rss();
  return {
    backend: {
      allocWeight: (dtype, count) => backend.allocWeight(dtype, count),
      matmul(job) {
        backend.matmul(job);
        peak = Math.max(peak, process.memoryUsage.rss());
      },
      get threads() {
        return backend.threads;
      },
      close: () => backend.close(),
    },
    peak: () => peak,
  };
}

/** One window's prefill and the logits of all its positions, in seconds. */
function prefillWithLogits(model: HfModel, tokens: Int32Array): number {
  const vocab = model.config.vocabSize;
  const logits = new Float32Array(HEAD_ROWS * vocab);
  const started = performance.now();
  const hidden = prefill(model, tokens);
  for (let from = 0; from < tokens.length; from += HEAD_ROWS) {
    const count = Math.min(HEAD_ROWS, tokens.length - from);
    headLogits(model, hidden, from, count, logits);
  }
  const seconds = (performance.now() - started) / 1000;
  if (!Number.isFinite(logits[0])) throw new Error("forward bench: the logits are not finite");
  return seconds;
}

export async function benchForward(o: BenchOptions): Promise<BenchGroup> {
  const started = performance.now();
  const shape = o.quick ? TINY : LLAMA_1B;
  const ctx = o.quick ? QUICK_CONTEXT : CONTEXT;
  const repetitions = Math.min(o.repetitions, 3);
  const params = matmulParams(shape);

  // The kernel alone: one layer's products at the window's row count, on 1 thread, then on all
  // (each on a pool of its own, closed after, so its test weights leave no trace in the forward's memory).
  const rate = async (threads: number, label: string): Promise<{ wall: Timing; perCpu: Timing }> => {
    const backend = await openMatmul({ threads });
    try {
      return kernelRate(backend, shape, ctx, repetitions, label);
    } finally {
      await backend.close();
    }
  };
  const one = await rate(1, `matmul kernel, one ${o.quick ? "tiny" : "1B"} layer's 7 products (bf16, ${ctx} rows), 1 thread`);
  const all = await rate(o.threads, `matmul kernel, the same products, ${o.threads} threads`);
  const rateOne = one.wall,
    rateAll = all.wall;
  o.log(
    `forward: kernel ${rateOne.median.toFixed(1)} GFLOP/s on 1 thread, ${rateAll.median.toFixed(1)} on ${o.threads} (per CPU-second: ${one.perCpu.median.toFixed(1)}, ${all.perCpu.median.toFixed(1)})`,
  );
  const folder = checkpointFolder(shape, o.quick, o.log);
  const pool = await openMatmul({ threads: o.threads });
  try {
    const loadStarted = performance.now();
    const sampled = sampling(pool);
    const model = await loadHfModel(folder, sampled.backend);
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    const random = createRandom(11);
    const tokens = Int32Array.from({ length: ctx }, () => Math.floor(random() * shape.vocabSize));
    const cpu = process.cpuUsage();
    const seconds = prefillWithLogits(model, tokens);
    const used = process.cpuUsage(cpu);
    const cores = (used.user + used.system) / 1e6 / seconds;
    const tokensPerSecond = ctx / seconds;
    const bound = (rateAll.median * 1e9) / (2 * params);
    const peakMiB = sampled.peak() / 2 ** 20;
    o.log(
      `forward: prefill of ${ctx} tokens with all logits in ${seconds.toFixed(1)} s = ${tokensPerSecond.toFixed(2)} tokens/s; bound ${bound.toFixed(2)} tokens/s; peak RSS ${peakMiB.toFixed(0)} MiB (load ${loadSeconds.toFixed(1)} s)`,
    );

    const speed = summarize(`prefill, ${ctx} tokens with every position's logits, ${pool.threads} threads`, [tokensPerSecond], "tokens/s");
    const boundTiming = summarize(
      `bound: kernel GFLOP/s on ${pool.threads} threads / (2 x ${(params / 1e9).toFixed(3)} G params)`,
      [bound],
      "tokens/s",
    );
    const rss = summarize("peak resident memory during the forward (sampled after every product)", [peakMiB], "MiB");
    const note = `random ${o.quick ? "tiny" : "Llama-3.2-1B-shaped"} bf16 checkpoint (${(params / 1e9).toFixed(3)} G weights multiplied per token, the tied embedding counted once as the head); one window, measured once after loading (${loadSeconds.toFixed(0)} s); the kernel: ${rateOne.median.toFixed(1)} GFLOP/s on 1 thread, ${rateAll.median.toFixed(1)} on ${pool.threads} (per CPU-second ${one.perCpu.median.toFixed(1)} and ${all.perCpu.median.toFixed(1)}); the forward had ${cores.toFixed(2)} cores of CPU time over its wall time (the machine's cores are shared); the rest of the time is attention, norms, RoPE and the copies in and out of the kernel's memory; peak RSS ${peakMiB.toFixed(0)} MiB; load average ${loadavg()[0].toFixed(1)}${o.quick ? "; quick: tiny shapes" : ""}`;
    const goals: BenchGoal[] = [
      goal(
        "forward.prefill-vs-bound.llama1b",
        "HF forward prefill --ctx 512 tokens/s vs the matmul kernel's bound (2 x params flops per token), goal >= 0.5",
        tokensPerSecond / bound,
        0.5,
        "min",
        [speed, boundTiming, rateAll],
        note,
      ),
    ];
    return {
      name: "forward",
      goals,
      extra: [rateOne, rateAll, one.perCpu, all.perCpu, rss],
      seconds: (performance.now() - started) / 1000,
      notes: NOTES,
    };
  } finally {
    await pool.close();
    if (o.quick) rmSync(folder, { recursive: true, force: true });
  }
}

const NOTES = [
  "Forward: the matrix kernel (assembly/hf/matmul.ts) multiplies bf16 weight rows widened in registers by f32 activations, each output element the eight-lane sum (docs/FORMAT.md), so any thread count gives the same bits. Its GFLOP/s is measured on one Llama-3.2-1B layer's seven products at 512 rows; the forward's bound is that rate over 2 x params flops per token. The checkpoint is random (seeded), written once to .cache/bench/ (2.5 GB).",
];
