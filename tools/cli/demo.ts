import { bitsPerParameter } from "../eval/bpp.ts";
import { compressMatrix, DEFAULT_COMPRESS_OPTIONS } from "../compress.ts";
import { defaultThreads } from "../quant/parallel.ts";
import { decodeAll } from "../decoder.ts";
import { neighbourSetOverlap, neighbourSets } from "../quant/metrics.ts";
import { startProgress } from "../progress.ts";
import { synthMatrix } from "../synth.ts";
import { intOption, parseCommandArgs, quoted, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, note, printResult } from "./output.ts";

const DEMO_SHAPE = { rows: 32000, cols: 288, seed: 1 };

const help = `carvq demo [--rows N] [--json]

The quick start (npm start): makes a seeded synthetic ${DEMO_SHAPE.rows} x ${DEMO_SHAPE.cols} embedding table (the shape
of stories15M's), compresses it with the default CARVQ settings and with the int4 and int2 baselines,
decodes each blob and prints its size and error. Needs no files and writes none. The seconds
column is each method's compression, decoding and NN@10 search; the last line the whole run.

Options:
  --rows N     rows of the synthetic table (default ${DEMO_SHAPE.rows}; fewer for a quicker look)
  --json       print one JSON object
  -h, --help   this text`;

export const demoCommand: Command = {
  name: "demo",
  summary: "compress a built-in synthetic table and print size and error (npm start)",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("demo", argv, { rows: { type: "string" }, json: { type: "boolean" } });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length > 0) throw usageError("demo", `unexpected argument ${quoted(positionals[0])} (see carvq demo --help)`);
    const shape = { ...DEMO_SHAPE, rows: intOption("demo", "rows", values.rows, DEMO_SHAPE.rows, 16, 1_000_000) };
    const started = performance.now();
    note(`synthetic table ${shape.rows} x ${shape.cols}, seed ${shape.seed} (synthetic data shows speed and mechanics, not quality)`);
    const matrix = synthMatrix(shape);
    const reference = withProgress("table  nearest neighbours (for nn10)", (update) => neighbourSets(matrix, 10, update));
    const results = [];
    for (const method of ["carvq", "int4", "int2"] as const) {
      const methodStarted = performance.now();
      const progress = startProgress(`${method.padEnd(5)}  compressing`);
      let result;
      try {
        result = await compressMatrix(
          matrix,
          { method },
          { source: "synthetic" },
          { threads: defaultThreads(), onProgress: progress.update },
        );
      } finally {
        progress.stop();
      }
      const decoded = decodeAll(result.blob);
      const nn10 = neighbourSetOverlap(
        reference,
        withProgress(`${method.padEnd(5)}  nearest neighbours (nn10)`, (update) => neighbourSets(decoded, 10, update)),
      );
      const seconds = (performance.now() - methodStarted) / 1000;
      results.push({
        method,
        bytes: result.bytes.length,
        bpp: bitsPerParameter(result.blob).bpp,
        relMSE: result.metrics.relMSE,
        cosine: result.metrics.cosine,
        nn10,
        seconds,
      });
    }
    const totalSeconds = (performance.now() - started) / 1000;
    const o = DEFAULT_COMPRESS_OPTIONS;
    printResult(values.json === true, { shape: [shape.rows, shape.cols], seed: shape.seed, results, totalSeconds }, [
      `carvq options: h ${o.h}, L ${o.levels}, g ${o.group}, layout ${o.layout}, ${o.iters} iterations; baselines with FP16 scale per ${o.block} values`,
      "method       bytes     bpp   relMSE   cosine    nn10   seconds",
      ...results.map(
        (r) =>
          `${r.method.padEnd(6)} ${String(r.bytes).padStart(11)} ${fmt(r.bpp).padStart(7)} ${fmt(r.relMSE).padStart(8)} ${fmt(r.cosine).padStart(8)} ${fmt(r.nn10).padStart(7)} ${r.seconds.toFixed(1).padStart(9)}`,
      ),
      `seconds: compressing, decoding and the nn10 search of each method; ${totalSeconds.toFixed(1)} s in all (with the original table's neighbours)`,
    ]);
  },
};

/** Runs `work` with a progress bar on stderr that it updates. */
function withProgress<T>(label: string, work: (update: (done: number, total: number) => void) => T): T {
  const progress = startProgress(label);
  try {
    return work(progress.update);
  } finally {
    progress.stop();
  }
}
