import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { checkOutputFolder, checkOverwrite, writeFileAtomic } from "../atomic.ts";
import { openMatmulBackend } from "../hf/backend.ts";
import type { MatmulBackend } from "../hf/matmul.ts";
import { loadHfModel, matrixEmbedding, withHfInputEmbedding } from "../hf/model.ts";
import { comparePerplexity, hfLogitsModel, readTextWindows, readTokenWindows, type Window } from "../hf/perplexity.ts";
import { loadLlama2cModel } from "../llama2c/model.ts";
import { runReport, renderMarkdown, renderReportSvg, type ReportRequest } from "../plan/report.ts";
import { startProgress, type Progress } from "../progress.ts";
import { defaultThreads } from "../quant/parallel.ts";
import { loadMatrix } from "../readers/index.ts";
import { intOption, parseCommandArgs, quoted, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { note, noteLoaded, printResult } from "./output.ts";
import { count } from "../text.ts";

const DEFAULT_BUDGETS = [1.5, 2, 3];

const help = `carvq report <input> -o <dir> [--budgets 1.5,2,3] [--text FILE | --tokens FILE.json] [--json]

Compresses one model's embedding table at several sizes with every method and writes a
rate–distortion report: <dir>/report.md (a Markdown table and the command that made it),
<dir>/report.svg (bits per parameter against relMSE and NN@10, and perplexity for a llama2.c
model, or for a Hugging Face folder with --text or --tokens) and <dir>/report.json (every run's
figures). Every blob is decoded and measured on the whole table.

Runs: the scalar baselines int4, int3, int2 (block 32); the paper's recipe (row layout, h 8,
g 1024, greedy) with 1 to 4 levels; and, for each budget, the auto-configured choice of
carvq compress --target-bpp <budget>, fitted on the whole table. Budgets take minutes each on a
large table (the search, then the full fit).

Options:
  -o, --output DIR     the folder to write report.md, report.svg and report.json into (created if missing);
                       existing reports are refused unless --force
  --budgets LIST       comma-separated bits-per-parameter budgets for the auto runs (default ${DEFAULT_BUDGETS.join(",")})
  --tune-kl STEPS      llama2.c input: also each budget's choice with its codebooks tuned on the
                       model's KL for STEPS steps (carvq compress --tune-kl; default 0 = no such runs)
  --kl-encode ROUNDS   llama2.c input: those runs (also made when --tune-kl is 0) choose their codes
                       for the model's curvature first (carvq compress --kl-encode; default 0)
  --text FILE          Hugging Face folder input: also perplexity and KL of the model with each blob as
                       its input embedding, on this text (tokenized with the folder's tokenizer.json,
                       windows of --ctx tokens every --stride tokens; see carvq ppl --help)
  --tokens FILE        the same on token-id windows instead (a JSON array of arrays, carvq ppl --tokens)
  --ctx N              window length for --text (default 512); --stride N: between window starts (default --ctx)
  --tensor NAME        the tensor to compress (default: the token embedding)
  --seed N             random seed of every fit and of the search (default 0)
  --threads N          worker threads (default: the machine's cores, here ${defaultThreads()})
  --force              overwrite an existing report
  --json               print every run as one JSON object on stdout
  -h, --help           this text`;

function parseBudgets(raw: string | undefined): number[] {
  if (raw === undefined) return DEFAULT_BUDGETS;
  const parts = raw.split(",").map((s) => s.trim());
  const budgets = parts.map(Number);
  const bad = parts.findIndex((p, i) => p === "" || !/^\d*\.?\d+$/.test(p) || !(budgets[i] > 0));
  if (bad >= 0 || parts.length === 0)
    throw usageError("report", `--budgets must be positive numbers separated by commas, got ${quoted(raw)}`);
  return [...new Set(budgets)].sort((a, b) => a - b);
}

/** The command line as a person would retype it (the input and folder as given). */
function commandLine(argv: string[]): string {
  const quoted = argv
    .filter((a) => a !== "--force" && a !== "--json")
    .map((a) => (/^[\w./,:=+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`));
  return `carvq report ${quoted.join(" ")}`;
}

/** Perplexity and KL of a Hugging Face folder's model with a decoded table as its input embedding, on --text or --tokens. */
async function hfPerplexity(
  folder: string,
  backend: MatmulBackend,
  values: { text?: string; tokens?: string; ctx?: string; stride?: string },
): Promise<NonNullable<ReportRequest["perplexity"]>> {
  let windows: Window[] = [];
  let describe = "";
  // The evaluation text is read (and refused if wrong) before the weights are.
  const model = await loadHfModel(folder, backend, ({ vocabSize, maxPositions }) => {
    if (values.text !== undefined) {
      const ctx = intOption("report", "ctx", values.ctx, Math.min(512, maxPositions), 2, maxPositions);
      const stride = intOption("report", "stride", values.stride, ctx, 1, ctx);
      note(`${values.text}: tokenizing with ${folder}/tokenizer.json`);
      const read = readTextWindows(values.text, folder, ctx, stride);
      windows = read.windows;
      describe = `${read.tokens} tokens of ${values.text} (windows of ${ctx} tokens every ${stride})`;
    } else {
      windows = readTokenWindows(values.tokens as string, vocabSize, maxPositions);
      describe = `the ${windows.length} token-id windows of ${values.tokens}`;
    }
  });
  const original = hfLogitsModel(model, { remember: true });
  return {
    describe,
    measure: (decoded) =>
      comparePerplexity({ original, modified: hfLogitsModel(withHfInputEmbedding(model, matrixEmbedding(decoded))), windows }),
  };
}

export const reportCommand: Command = {
  name: "report",
  summary: "rate–distortion report: every method at several budgets, Markdown table and SVG plot",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("report", argv, {
      output: { type: "string", short: "o" },
      budgets: { type: "string" },
      tensor: { type: "string" },
      seed: { type: "string" },
      "tune-kl": { type: "string" },
      "kl-encode": { type: "string" },
      text: { type: "string" },
      tokens: { type: "string" },
      ctx: { type: "string" },
      stride: { type: "string" },
      threads: { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1)
      throw usageError("report", `expected one input file, got ${positionals.length} (see carvq report --help)`);
    if (values.output === undefined) throw usageError("report", "-o/--output (a folder) is required (see carvq report --help)");
    const budgets = parseBudgets(values.budgets);
    const seed = intOption("report", "seed", values.seed, 0, 0, 0xffffffff);
    const tune = intOption("report", "tune-kl", values["tune-kl"], 0, 0, 10000);
    const klEncode = intOption("report", "kl-encode", values["kl-encode"], 0, 0, 100);
    const threads = intOption("report", "threads", values.threads, defaultThreads(), 1, 256);
    const dir = values.output;
    const force = values.force === true;
    checkOutputFolder(dir);
    const mdPath = join(dir, "report.md");
    const svgPath = join(dir, "report.svg");
    const jsonPath = join(dir, "report.json");
    if (existsSync(dir)) for (const path of [mdPath, svgPath, jsonPath]) checkOverwrite(path, force);
    const input = positionals[0];
    const loaded = loadMatrix(input, { tensor: values.tensor });
    const { rows, cols } = loaded.matrix;
    noteLoaded(input, loaded);
    const model = loaded.format === "llama2c" ? loadLlama2cModel(input) : null;
    if (tune > 0 && model === null)
      throw usageError(
        "report",
        `--tune-kl needs a llama2.c checkpoint as input (it tunes on the model's KL); ${input} is ${loaded.format}`,
      );
    if (klEncode > 0 && model === null)
      throw usageError(
        "report",
        `--kl-encode needs a llama2.c checkpoint as input (it encodes for the model's KL); ${input} is ${loaded.format}`,
      );
    const folder = statSync(input).isDirectory();
    const evaluation = values.text ?? values.tokens;
    if (evaluation !== undefined && !folder)
      throw usageError(
        "report",
        `--text and --tokens are for a Hugging Face folder input; ${input} is ${loaded.format}${model ? " (a llama2.c model is measured on text sampled from it)" : ""}`,
      );
    if (values.text !== undefined && values.tokens !== undefined) throw usageError("report", "give --text or --tokens, not both");
    if ((values.ctx !== undefined || values.stride !== undefined) && values.text === undefined)
      throw usageError("report", "--ctx and --stride cut a --text into windows; they need --text");
    const backend = evaluation === undefined ? null : await openMatmulBackend(threads);
    let perplexity: ReportRequest["perplexity"] = null;
    try {
      if (backend !== null) perplexity = await hfPerplexity(input, backend, values);
    } catch (err) {
      await backend?.close(); // its worker threads would keep the process alive
      throw err;
    }
    let progress: Progress | null = null;
    let stage = "";
    const request: ReportRequest = {
      budgets,
      seed,
      threads,
      from: { source: input, tensor: loaded.tensor },
      model,
      perplexity,
      tuneKl: tune,
      klEncode,
      onRun: (i, total, what) => {
        progress?.stop();
        progress = null;
        note(`[${i}/${total}] ${what}`);
      },
      onProgress: (s, done, total) => {
        if (s !== stage || progress === null) {
          progress?.stop();
          progress = startProgress(s === "search" ? "  searching configurations" : "  fitting");
          stage = s;
        }
        progress.update(done, total);
      },
    };
    let result;
    try {
      result = await runReport(loaded.matrix, request);
    } finally {
      (progress as Progress | null)?.stop();
      await backend?.close();
    }
    mkdirSync(dir, { recursive: true });
    const command = commandLine(argv);
    writeFileAtomic(mdPath, new TextEncoder().encode(renderMarkdown(result, command)), force);
    writeFileAtomic(svgPath, new TextEncoder().encode(renderReportSvg(result)), force);
    writeFileAtomic(jsonPath, new TextEncoder().encode(`${JSON.stringify({ command, ...result }, null, 2)}\n`), force);
    printResult(values.json === true, { ...result, command, markdown: mdPath, svg: svgPath, json: jsonPath }, [
      `wrote ${mdPath}, ${svgPath} and ${jsonPath}: ${count(result.runs.length, "run")}`,
      ...[...result.runs]
        .sort((a, b) => a.bpp - b.bpp)
        .map(
          (r) =>
            `${r.method.padEnd(26)} ${r.bpp.toFixed(3)} bpp  relMSE ${r.relMSE.toFixed(4)}  nn10 ${r.nn10.toFixed(3)}${r.ppl !== undefined ? `  ppl ${r.ppl.toFixed(3)}  kl ${r.kl!.toFixed(4)}` : ""}`,
        ),
    ]);
  },
};
