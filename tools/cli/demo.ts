import { bitsPerParameter } from "../eval/bpp.ts";
import { compressMatrix, DEFAULT_COMPRESS_OPTIONS } from "../compress.ts";
import { defaultThreads } from "../quant/parallel.ts";
import { decodeAll } from "../decoder.ts";
import { neighbourOverlap, neighbourSets } from "../quant/metrics.ts";
import { startProgress } from "../progress.ts";
import { synthMatrix } from "../synth.ts";
import { parseCommandArgs } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, note, printResult } from "./output.ts";

const DEMO_SHAPE = { rows: 32000, cols: 288, seed: 1 };

const help = `carvq demo [--json]

The quick start (npm start): makes a seeded synthetic ${DEMO_SHAPE.rows} x ${DEMO_SHAPE.cols} embedding table (the shape
of stories15M's), compresses it with the default CARVQ settings and with the int4 and int2 baselines,
decodes each blob and prints its size and error. Needs no files and writes none.

Options:
  --json       print one JSON object
  -h, --help   this text`;

export const demoCommand: Command = {
  name: "demo",
  summary: "compress a built-in synthetic table and print size and error (npm start)",
  help,
  async run(argv) {
    const { values } = parseCommandArgs("demo", argv, { json: { type: "boolean" } });
    if (values.help) return void process.stdout.write(`${help}\n`);
    note(`synthetic table ${DEMO_SHAPE.rows} x ${DEMO_SHAPE.cols}, seed ${DEMO_SHAPE.seed} (synthetic data shows speed and mechanics, not quality)`);
    const matrix = synthMatrix(DEMO_SHAPE);
    const reference = neighbourSets(matrix);
    const results = [];
    for (const method of ["carvq", "int4", "int2"] as const) {
      const started = performance.now();
      const progress = startProgress(`${method.padEnd(5)}`);
      let result;
      try {
        result = await compressMatrix(matrix, { method }, { source: "synthetic" }, { threads: defaultThreads(), onProgress: progress.update });
      } finally {
        progress.stop();
      }
      const seconds = (performance.now() - started) / 1000;
      const nn10 = neighbourOverlap(matrix, decodeAll(result.blob), 10, reference);
      results.push({ method, bytes: result.bytes.length, bpp: bitsPerParameter(result.blob).bpp, relMSE: result.metrics.relMSE, cosine: result.metrics.cosine, nn10, seconds });
    }
    const o = DEFAULT_COMPRESS_OPTIONS;
    printResult(values.json === true, { shape: [DEMO_SHAPE.rows, DEMO_SHAPE.cols], seed: DEMO_SHAPE.seed, results }, [
      `carvq options: h ${o.h}, L ${o.levels}, g ${o.group}, layout ${o.layout}, ${o.iters} iterations; baselines with FP16 scale per ${o.block} values`,
      "method       bytes     bpp   relMSE   cosine    nn10   seconds",
      ...results.map((r) => `${r.method.padEnd(6)} ${String(r.bytes).padStart(11)} ${fmt(r.bpp).padStart(7)} ${fmt(r.relMSE).padStart(8)} ${fmt(r.cosine).padStart(8)} ${fmt(r.nn10).padStart(7)} ${fmt(r.seconds).padStart(9)}`),
    ]);
  },
};
