import { checkOverwrite, writeFileAtomic } from "../atomic.ts";
import { bitsPerParameter } from "../eval/bpp.ts";
import { DEFAULT_COMPRESS_OPTIONS as D } from "../compress.ts";
import { compress, readTable } from "../index.ts";
import { RVQ_METHOD, METHOD_NAMES } from "../quant/methods.ts";
import { defaultThreads } from "../quant/parallel.ts";
import { CarvqError } from "../errors.ts";
import { startProgress } from "../progress.ts";
import { loadMatrix } from "../readers/index.ts";
import { calibrationKlObjective } from "../eval/kl-objective.ts";
import { loadLlama2cModel } from "../llama2c/model.ts";
import { choiceOption, intOption, parseCommandArgs, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, note, noteLoaded, printResult } from "./output.ts";
import { ADAPTOR_FLAGS, ADAPTOR_HELP, adaptorEvents, parseAdaptorFlags } from "./adaptor-flags.ts";
import { AUTO_HELP, checkAutoConflicts, chooseOptions, parseTargetBpp, searchJson } from "./auto-config.ts";
import { modelScore } from "../plan/model-score.ts";

const help = `carvq compress <input> -o <blob> [options]

Compresses the token-embedding table of a model (safetensors, GGUF including its block types, .npy,
.npz, PyTorch .bin, a llama2.c checkpoint, or a Hugging Face folder or shard index; see carvq
tensors) into one carvq blob. Progress goes to stderr; the summary to stdout.

Options:
  -o, --output FILE    the blob to write (required); refused if it exists, unless --force
  --tensor NAME        the tensor to compress (default: the token embedding, found by its usual names)
  --method M           carvq (group RVQ, default), or a scalar baseline: int4, int3, int2
  --h N                carvq: sub-vector length (default ${D.h}); rows are zero-padded to a multiple
  --levels N           carvq: residual levels L, 1 to 8 (default ${D.levels})
  --group N            carvq: sub-vectors per codebook group g (default ${D.group})
  --layout L           carvq: group layout: row (default, the paper's: g consecutive sub-vectors) or
                       col (column-block: one sub-vector column of g consecutive tokens)
  --iters N            carvq: Lloyd iterations per k-means (default ${D.iters})
  --beam B             carvq: beam-search encoding, keeping B partial code sequences (default ${D.beam}: greedy)
  --refine R           carvq: rounds of joint least-squares codebook refinement (default ${D.refine})
  --row-scale N        carvq: gain-shape: code each row's direction and pick its length from N FP16
                       scales (u8 index per row; 256 is typical; default 0 = off; blob format v1.1)
  --weights FILE       carvq: importance of each row in codebook fitting (e.g. token frequencies): a
                       .npy of V non-negative values, shape (V, 1) or (1, V); default: all equal
  --restarts N         carvq: fit N times with seeds seed, seed + 1, ... and keep the best: by the
                       model's KL on its calibration text for a llama2.c input, else by relMSE
                       (default 1; each restart costs a full fit)
  --tune-kl STEPS      carvq, llama2.c input: after fitting, tune the codebooks (codes fixed) for
                       STEPS Adam steps on the model's KL over a calibration text sampled from
                       it (not the text carvq ppl measures); keeps the result only if it lowers
                       that KL (default 0 = off; 40 is typical; about 3 s a step for stories260K)
  --kl-encode ROUNDS   carvq, llama2.c input: after fitting (and before --tune-kl), choose the codes
                       and refit the codebooks ROUNDS times for the model's curvature (its Fisher
                       on the calibration text) instead of squared error; keeps the round with
                       the lowest calibration KL, or the fitted codes (default 0 = off; 4 is
                       typical; for stories260K about 75 s for the curvature on 2 threads, then
                       15 s a round)
  --seed N             random seed (default ${D.seed}); same input, options and seed give the same bytes
  --block N            int4/int3/int2: values per FP16 scale (default ${D.block})
${ADAPTOR_HELP}
${AUTO_HELP}
  --threads N          worker threads for fitting (default: the machine's cores, here ${defaultThreads()});
                       the blob is the same for any number of threads
  --force              overwrite an existing output file
  --json               print the summary as one JSON object
  -h, --help           this text`;

/** The options as `--json` prints them: under the metadata's names "rowScale" and "tune" for rowScaleCount and tuneKl. */
function optionsJson(o: object): Record<string, unknown> {
  const recorded: Record<string, string> = { rowScaleCount: "rowScale", tuneKl: "tune" };
  return Object.fromEntries(Object.entries(o).map(([key, value]) => [recorded[key] ?? key, value]));
}

/** Reads per-row importance weights: V finite values >= 0 in any 2-D float file of V elements. */
function loadWeights(path: string, rows: number): Float32Array {
  const { matrix } = loadMatrix(path, {});
  if (matrix.rows * matrix.cols !== rows || (matrix.rows !== 1 && matrix.cols !== 1)) {
    throw new CarvqError(
      `${path}: weights have shape ${matrix.rows} x ${matrix.cols}; expected ${rows} x 1 or 1 x ${rows} (one per row of the table)`,
    );
  }
  const negative = matrix.data.findIndex((w) => w < 0);
  if (negative >= 0) throw new CarvqError(`${path}: weight ${negative} is ${matrix.data[negative]}; weights must be >= 0`);
  return matrix.data;
}

/** A progress bar started on its first update, after stopping the one before it. */
function lazyProgress(label: string, before: { stop(): void }): { update(done: number, total: number): void; stop(): void } {
  let bar: ReturnType<typeof startProgress> | null = null;
  return {
    update(done, total) {
      if (bar === null) {
        before.stop();
        bar = startProgress(label);
      }
      bar.update(done, total);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

export const compressCommand: Command = {
  name: "compress",
  summary: "compress a model's embedding table into a blob",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("compress", argv, {
      output: { type: "string", short: "o" },
      tensor: { type: "string" },
      method: { type: "string" },
      h: { type: "string" },
      levels: { type: "string" },
      group: { type: "string" },
      layout: { type: "string" },
      iters: { type: "string" },
      beam: { type: "string" },
      refine: { type: "string" },
      "row-scale": { type: "string" },
      "tune-kl": { type: "string" },
      "kl-encode": { type: "string" },
      restarts: { type: "string" },
      weights: { type: "string" },
      seed: { type: "string" },
      block: { type: "string" },
      threads: { type: "string" },
      ...ADAPTOR_FLAGS,
      "target-bpp": { type: "string" },
      target: { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1)
      throw usageError("compress", `expected one input file, got ${positionals.length} (see carvq compress --help)`);
    if (values.output === undefined) throw usageError("compress", "-o/--output is required (see carvq compress --help)");
    const c = "compress";
    const targetBpp = parseTargetBpp(c, values["target-bpp"]);
    const auto = targetBpp !== undefined || values.target !== undefined;
    if (auto) checkAutoConflicts(c, values, targetBpp !== undefined ? "--target-bpp" : "--target");
    let options = {
      method: choiceOption(c, "method", values.method, D.method, METHOD_NAMES),
      h: intOption(c, "h", values.h, D.h, 1, 256),
      levels: intOption(c, "levels", values.levels, D.levels, 1, 8),
      group: intOption(c, "group", values.group, D.group, 1, 0xffffffff),
      layout: choiceOption(c, "layout", values.layout, D.layout, ["row", "col"] as const),
      iters: intOption(c, "iters", values.iters, D.iters, 0, 10000),
      beam: intOption(c, "beam", values.beam, D.beam, 1, 256),
      refine: intOption(c, "refine", values.refine, D.refine, 0, 1000),
      rowScaleCount: intOption(c, "row-scale", values["row-scale"], D.rowScaleCount, 0, 256),
      seed: intOption(c, "seed", values.seed, D.seed, 0, 0xffffffff),
      block: intOption(c, "block", values.block, D.block, 1, 65536),
      tuneKl: intOption(c, "tune-kl", values["tune-kl"], D.tuneKl, 0, 10000),
      restarts: intOption(c, "restarts", values.restarts, D.restarts, 1, 1000),
      klEncode: intOption(c, "kl-encode", values["kl-encode"], D.klEncode, 0, 100),
    };
    const adaptorOptions = parseAdaptorFlags(c, values, options.method, auto);
    const threads = intOption(c, "threads", values.threads, defaultThreads(), 1, 256);
    const input = positionals[0];
    const force = values.force === true;
    checkOverwrite(values.output, force);
    const loaded = await readTable(input, { tensor: values.tensor });
    const { rows, cols } = loaded.matrix;
    noteLoaded(input, loaded);
    if (options.tuneKl > 0 && loaded.format !== "llama2c")
      throw usageError(
        "compress",
        `--tune-kl needs a llama2.c checkpoint as input (it tunes on the model's KL); ${input} is ${loaded.format}`,
      );
    if (options.klEncode > 0 && loaded.format !== "llama2c")
      throw usageError(
        "compress",
        `--kl-encode needs a llama2.c checkpoint as input (it encodes for the model's KL); ${input} is ${loaded.format}`,
      );
    const weights = values.weights === undefined ? undefined : loadWeights(values.weights, rows);
    // One description of the source for the search and the fit, so the search sizes the metadata the blob will carry.
    const from = { source: input, tensor: loaded.tensor, sourceDtype: loaded.dtype, sourceBitsPerWeight: loaded.bitsPerWeight };
    const started = performance.now();
    let search;
    if (auto) {
      const chosen = await chooseOptions(
        loaded.matrix,
        {
          targetBpp,
          target: values.target,
          seed: options.seed,
          weights,
          threads,
          from,
          score: modelScore(loaded.format, input),
          after: { tuneKl: options.tuneKl, restarts: options.restarts, klEncode: options.klEncode },
        },
        note,
      );
      const { weights: _w, ...picked } = chosen.options;
      options = { ...picked, tuneKl: options.tuneKl, restarts: options.restarts, klEncode: options.klEncode };
      search = searchJson(chosen.result);
    }
    const progress = startProgress(options.method === RVQ_METHOD ? "fitting groups" : "quantizing rows");
    const curvatureBar = options.klEncode > 0 ? lazyProgress("estimating the model's curvature (calibration sequences)", progress) : null;
    const roundBar = curvatureBar ? lazyProgress("KL-aware encoding rounds", curvatureBar) : null;
    const tuneBar = options.tuneKl > 0 ? lazyProgress("tuning codebooks on the model's KL", roundBar ?? progress) : null;
    const bars = [curvatureBar, roundBar, tuneBar];
    const events = {
      ...adaptorEvents(note, tuneBar ?? roundBar ?? progress),
      ...(curvatureBar && roundBar
        ? { curvature: curvatureBar.update, klEncoding: (round: number, rounds: number) => roundBar.update(round, rounds) }
        : {}),
      ...(tuneBar ? { tuning: (step: number, steps: number) => tuneBar.update(step, steps) } : {}),
    };
    const needsModel = options.tuneKl > 0 || options.restarts > 1 || options.klEncode > 0;
    const objective = needsModel && loaded.format === "llama2c" ? calibrationKlObjective(loadLlama2cModel(input)) : undefined;
    let result;
    try {
      result = await compress(loaded.matrix, {
        ...options,
        ...adaptorOptions,
        weights,
        ...from,
        objective,
        threads,
        onProgress: progress.update,
        events,
      });
    } finally {
      progress.stop();
      for (const bar of bars) bar?.stop();
      events.stop();
    }
    writeFileAtomic(values.output, result.bytes, force);
    const seconds = (performance.now() - started) / 1000;
    const size = bitsPerParameter(result.blob);
    printResult(
      values.json === true,
      {
        output: values.output,
        input,
        tensor: loaded.tensor,
        shape: [rows, cols],
        options: optionsJson(options),
        bytes: result.bytes.length,
        bpp: size.bpp,
        relMSE: result.metrics.relMSE,
        cosine: result.metrics.cosine,
        seconds,
        ...(search ? { search } : {}),
        ...(result.blob.metadata?.adaptor ? { adaptor: result.blob.metadata.adaptor } : {}),
      },
      [
        `wrote ${values.output}: ${result.bytes.length} bytes, ${fmt(size.bpp)} bits per parameter`,
        `relMSE ${fmt(result.metrics.relMSE)}, mean cosine ${fmt(result.metrics.cosine)} (${fmt(seconds)} s)`,
      ],
    );
  },
};
