// The rate–distortion report (`carvq report`): one table compressed at several sizes by every
// method, each blob decoded and measured the same way, written as a Markdown table and an SVG plot.
//
// Runs, in this order:
//   - scalar baselines int4, int3, int2 (one FP16 scale per block of 32 values);
//   - the paper's recipe (row layout, h 8, g 1024, greedy encoding) with L = 1, 2, 3, 4 levels
//     (L = 2 is the paper's configuration; more levels are how the recipe buys quality with bits);
//   - auto-configuration at each budget (tools/plan/autoconfig.ts), then the full fit of its choice.
// Every blob is measured on its own decode of the whole table: bpp (every byte), relMSE, mean
// cosine, NN@10 and, for a llama2.c model, perplexity and KL of the model using it as its input
// embedding (tools/eval/perplexity.ts).
import { RVQ_METHOD, SCALAR_METHODS, type ScalarMethodName } from "../quant/methods.ts";
import { compressMatrix, DEFAULT_COMPRESS_OPTIONS, type CompressOptions, type CompressSource } from "../compress.ts";
import { TOOL_VERSION } from "../version.ts";
import { decodeAll } from "../decoder.ts";
import { bitsPerParameter } from "../eval/bpp.ts";
import { neighbourOverlap, neighbourSets, reconstructionMetrics, type NeighbourSets } from "../quant/metrics.ts";
import { evaluatePerplexity } from "../eval/perplexity.ts";
import type { Llama2cModel } from "../llama2c/model.ts";
import type { Matrix } from "../matrix.ts";
import { autoConfigure, describeOptions, optionFlags } from "./autoconfig.ts";
import { calibrationKlObjective } from "../eval/kl-objective.ts";
import { klScore } from "./model-score.ts";
import { renderPlot, type PlotPanel, type PlotPoint, type PlotSeries } from "./svg.ts";

export type ReportSeries = "auto" | "tuned" | "paper" | "scalar";

export interface ReportRun {
  series: ReportSeries;
  /** e.g. "carvq auto ≤ 1.6 bpp", "carvq paper recipe, L 2", "int3". */
  method: string;
  /** Short label for the plot. */
  label: string;
  options: string;
  /** `carvq compress` flags that make the same blob. */
  flags: string;
  /** The bit budget of an auto run. */
  budget?: number;
  bytes: number;
  bpp: number;
  relMSE: number;
  cosine: number;
  nn10: number;
  ppl?: number;
  pplOrig?: number;
  kl?: number;
  /** Wall time of the full fit (and of the search, for auto runs), seconds. */
  seconds: number;
  searchSeconds?: number;
  /** Auto runs: the proxy's relMSE for the choice (to compare with the full fit's). */
  proxyRelMSE?: number;
  /** Auto runs: what ranked the search's finalists ("relMSE", or "kl" for a small llama2.c model). */
  rankedBy?: string;
}

export interface ReportRequest {
  budgets: number[];
  seed: number;
  threads: number;
  from: CompressSource;
  /** For a llama2.c input: the model, to measure perplexity and KL. */
  model?: Llama2cModel | null;
  /**
   * For any other model (e.g. a Hugging Face folder with an evaluation text): perplexity and KL of
   * the model using a decoded table as its input embedding, and a sentence saying what it was measured on.
   */
  perplexity?: { measure(decoded: Matrix): { ppl: number; ppl_orig: number; kl: number }; describe: string } | null;
  /** For a llama2.c input: also each auto run with its codebooks tuned on the model's KL for this many steps (`--tune-kl`)... */
  tuneKl?: number;
  /** ...and / or its codes chosen for the model's curvature for this many rounds (`--kl-encode`). */
  klEncode?: number;
  /** Paper-recipe level counts (default 1 to 4). */
  paperLevels?: number[];
  /** Scalar methods (default int4, int3, int2) and their block. */
  scalars?: ScalarMethodName[];
  scalarBlock?: number;
  /** Announces each run before it starts (index from 1, total). */
  onRun?: (index: number, total: number, what: string) => void;
  /** Progress of the long step of the current run (search or fit). */
  onProgress?: (stage: "search" | "fit", done: number, total: number) => void;
}

export interface ReportResult {
  input: string;
  tensor?: string;
  shape: [number, number];
  version: string;
  seed: number;
  threads: number;
  budgets: number[];
  runs: ReportRun[];
  /** Original model's perplexity, for llama2.c inputs. */
  pplOrig?: number;
  /** What ppl and kl were measured on, when not the llama2.c evaluation text. */
  pplText?: string;
}

interface Planned {
  series: ReportSeries;
  method: string;
  label: string;
  options?: CompressOptions;
  budget?: number;
  /** Auto runs: tune the chosen configuration's codebooks on the model's KL for this many steps, after `klEncode` rounds of KL-aware encoding. */
  tuneKl?: number;
  klEncode?: number;
}

/** The runs a report makes, in order (auto runs get their options from the search). */
export function plannedRuns(shape: { rows: number; cols: number }, request: ReportRequest): Planned[] {
  const d = { ...DEFAULT_COMPRESS_OPTIONS, seed: request.seed };
  const planned: Planned[] = [];
  for (const method of request.scalars ?? SCALAR_METHODS) {
    planned.push({
      series: "scalar",
      method,
      label: method,
      options: { ...d, method, block: Math.min(request.scalarBlock ?? 32, shape.cols) },
    });
  }
  const h = Math.min(8, shape.cols);
  for (const L of request.paperLevels ?? [1, 2, 3, 4]) {
    planned.push({
      series: "paper",
      method: `carvq paper recipe, L ${L}`,
      label: `L${L}`,
      options: { ...d, method: "carvq", layout: "row", h, levels: L, group: 1024, beam: 1, refine: 0, rowScaleCount: 0 },
    });
  }
  for (const budget of request.budgets) {
    planned.push({ series: "auto", method: `carvq auto ≤ ${budget} bpp`, label: `≤${budget}`, budget });
    if (request.model && (request.tuneKl || request.klEncode)) {
      const flags = [request.klEncode ? `kl-encode ${request.klEncode}` : "", request.tuneKl ? `tune-kl ${request.tuneKl}` : ""]
        .filter(Boolean)
        .join(" + ");
      planned.push({
        series: "tuned",
        method: `carvq auto ≤ ${budget} bpp + ${flags}`,
        label: `≤${budget} tuned`,
        budget,
        tuneKl: request.tuneKl ?? 0,
        klEncode: request.klEncode ?? 0,
      });
    }
  }
  return planned;
}

/** Compresses and measures every planned run. */
export async function runReport(matrix: Matrix, request: ReportRequest): Promise<ReportResult> {
  const planned = plannedRuns(matrix, request);
  const reference: NeighbourSets = neighbourSets(matrix);
  const runs: ReportRun[] = [];
  let pplOrig: number | undefined;
  const from: CompressSource =
    request.model && (request.tuneKl || request.klEncode)
      ? { ...request.from, objective: calibrationKlObjective(request.model) }
      : request.from;
  /**
   * The search's choice per budget and post-fit options: each auto run is what `carvq compress
   * --target-bpp b [--kl-encode r --tune-kl n]` gives. The post-fit options are recorded in the
   * metadata, so near the budget the search may choose differently with them.
   */
  const chosenFor = new Map<string, { options: CompressOptions; searchSeconds: number; proxyRelMSE: number; rankedBy: string }>();
  for (const [i, plan] of planned.entries()) {
    request.onRun?.(i + 1, planned.length, plan.method);
    let options = plan.options;
    let searchSeconds: number | undefined;
    let proxyRelMSE: number | undefined;
    let rankedBy: string | undefined;
    if (options === undefined) {
      const after = { tuneKl: plan.tuneKl ?? 0, klEncode: plan.klEncode ?? 0 };
      const key = JSON.stringify([plan.budget, after]);
      let chosen = chosenFor.get(key);
      if (chosen === undefined) {
        const score = request.model ? klScore(request.model) : undefined;
        const result = await autoConfigure(matrix, {
          targetBpp: plan.budget,
          seed: request.seed,
          threads: request.threads,
          from: request.from,
          score,
          after,
          onProgress: (done, total) => request.onProgress?.("search", done, total),
        });
        chosen = {
          options: result.chosen.options,
          searchSeconds: result.seconds,
          proxyRelMSE: result.chosen.proxy.relMSE,
          rankedBy: result.rankedBy,
        };
        chosenFor.set(key, chosen);
      }
      options = { ...chosen.options, ...after };
      ({ searchSeconds, proxyRelMSE, rankedBy } = chosen);
    }
    const started = performance.now();
    const compressed = await compressMatrix(matrix, options, from, {
      threads: request.threads,
      onProgress: (done, total) => request.onProgress?.("fit", done, total),
    });
    const seconds = (performance.now() - started) / 1000;
    const decoded = decodeAll(compressed.blob);
    const metrics = reconstructionMetrics(matrix, decoded);
    const run: ReportRun = {
      series: plan.series,
      method: plan.method,
      label:
        plan.series === "auto" || plan.series === "tuned"
          ? options.method === RVQ_METHOD
            ? `h${options.h} L${options.levels}${options.layout === "row" ? " row" : ""}`
            : options.method
          : plan.label,
      options: describeOptions(options),
      flags: optionFlags(options),
      ...(plan.budget !== undefined ? { budget: plan.budget } : {}),
      bytes: compressed.bytes.length,
      bpp: bitsPerParameter(compressed.blob).bpp,
      relMSE: metrics.relMSE,
      cosine: metrics.cosine,
      nn10: neighbourOverlap(matrix, decoded, 10, reference),
      seconds,
      ...(searchSeconds !== undefined ? { searchSeconds, proxyRelMSE, rankedBy } : {}),
    };
    const measure = request.model ? (m: Matrix) => evaluatePerplexity(request.model as Llama2cModel, m) : request.perplexity?.measure;
    if (measure !== undefined) {
      const p = measure(decoded);
      run.ppl = p.ppl;
      run.pplOrig = p.ppl_orig;
      run.kl = p.kl;
      pplOrig = p.ppl_orig;
    }
    runs.push(run);
  }
  return {
    input: request.from.source ?? "input",
    ...(request.from.tensor !== undefined ? { tensor: request.from.tensor } : {}),
    shape: [matrix.rows, matrix.cols],
    version: TOOL_VERSION,
    seed: request.seed,
    threads: request.threads,
    budgets: request.budgets,
    runs,
    ...(pplOrig !== undefined ? { pplOrig } : {}),
    ...(request.perplexity && !request.model ? { pplText: request.perplexity.describe } : {}),
  };
}

function f(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits);
}

function mdEscape(text: string): string {
  return text.replace(/\|/g, "\\|");
}

/** The Markdown page: what was run, the command, the plot and the table. */
export function renderMarkdown(r: ReportResult, command: string, svgName = "report.svg"): string {
  const llm = r.runs.some((run) => run.ppl !== undefined);
  const name = r.input.split(/[\\/]/).pop();
  const lines: string[] = [];
  lines.push(
    `# Rate–distortion report: ${name} (${r.shape[0]} x ${r.shape[1]}${r.tensor && r.tensor !== "array" ? `, tensor \`${r.tensor}\`` : ""})`,
  );
  lines.push("");
  lines.push("Made by:");
  lines.push("");
  lines.push("```sh");
  lines.push(command);
  lines.push("```");
  lines.push("");
  lines.push(
    `carvq ${r.version}, seed ${r.seed}, ${r.threads} worker thread${r.threads === 1 ? "" : "s"}. Same input, options and seed give the same blobs and figures; the times are wall-clock on the machine that ran it and only comparable with each other.`,
  );
  lines.push("");
  lines.push(`![bits per parameter against error${llm ? ", neighbours and perplexity" : " and neighbours"}](${svgName})`);
  lines.push("");
  const head = ["method", "options", "bpp", "relMSE", "cosine", "nn10", ...(llm ? ["ppl", "ppl / orig", "kl"] : []), "fit s", "search s"];
  lines.push(`| ${head.join(" | ")} |`);
  lines.push(`| ${head.map((_h, i) => (i < 2 ? "---" : "---:")).join(" | ")} |`);
  const sorted = [...r.runs].sort((a, b) => a.bpp - b.bpp);
  for (const run of sorted) {
    const cells = [
      mdEscape(run.method),
      mdEscape(run.options),
      f(run.bpp, 3),
      f(run.relMSE, 4),
      f(run.cosine, 4),
      f(run.nn10, 3),
      ...(llm
        ? [f(run.ppl, 3), f(run.ppl !== undefined && run.pplOrig !== undefined ? run.ppl / run.pplOrig : undefined, 3), f(run.kl, 4)]
        : []),
      f(run.seconds, 1),
      run.searchSeconds === undefined ? "" : f(run.searchSeconds, 1),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  lines.push("Columns:");
  lines.push("");
  lines.push(
    "- **bpp**: 8 × file size / (rows × columns), every byte of the blob counted (header, table, padding, codes, codebooks, row scales, metadata).",
  );
  lines.push(
    "- **relMSE**: sum of squared errors / sum of squares; **cosine**: mean over rows of the cosine between original and decoded row.",
  );
  lines.push(
    "- **nn10**: for query rows 0, 20, 40, … (below 20,000), the share of their 10 nearest rows by cosine (among the first 50,000) that are still among the 10 nearest after compression.",
  );
  if (llm && r.pplText !== undefined) {
    lines.push(
      `- **ppl**, **kl**: the model with its input embedding replaced by the blob's decode (the output head keeps its original weights), on ${r.pplText}; original perplexity ${f(r.pplOrig, 3)}; kl is the mean KL(original ‖ compressed) of the next-token distributions, in nats.`,
    );
  } else if (llm) {
    lines.push(
      `- **ppl**, **kl**: the llama2.c model with its input embedding replaced by the blob's decode, on the evaluation text sampled from the original model (8 sequences × 300 tokens, fixed seeds; nothing is chosen or tuned on it: the search, --kl-encode and --tune-kl use a calibration text sampled with other seeds); original perplexity ${f(r.pplOrig, 3)}; kl is the mean KL(original ‖ compressed) of the next-token distributions, in nats.`,
    );
  }
  lines.push(
    "- **fit s**: wall time of the full compression; **search s**: the auto-configuration's search before it (a proxy on a sample of whole codebook groups; the whole table when it is small).",
  );
  lines.push("");
  lines.push("Methods:");
  lines.push("");
  lines.push("- **int4 / int3 / int2**: symmetric scalar quantization, one FP16 scale per block of values.");
  lines.push(
    "- **carvq paper recipe, L n**: the paper's group RVQ (row layout, h 8, g 1024, greedy encoding, one k-means per level) with n levels; L 2 is the paper's configuration.",
  );
  lines.push(
    "- **carvq auto ≤ b bpp**: `carvq compress --target-bpp b`: the configuration the search chose for that budget (h, L, g, layout, beam, refinement, row scales, scalar baselines; screened on a sample of whole codebook groups, the finalists ranked by relMSE, or by the model's KL on the calibration text for a llama2.c model small enough to search whole), fitted on the whole table.",
  );
  if (r.runs.some((x) => x.series === "tuned")) {
    const cols = r.shape[1];
    lines.push(
      `- **+ kl-encode r**: \`carvq compress --target-bpp b --kl-encode r\`: after the fit, r rounds of choosing every row's codes, then all codebooks, for the model's curvature (its Fisher on the calibration text, a ${cols} × ${cols} matrix per token) instead of squared error; the round with the lowest KL on the calibration text is kept (or the fitted codes). The options are recorded in the blob's metadata, so near a budget the search may choose another configuration than the plain run's.`,
    );
    lines.push(
      "- **+ tune-kl n**: `--tune-kl n` (after any kl-encode): the codebooks, codes fixed, tuned for n Adam steps on the model's KL over the calibration text (19,200 tokens, gradient by backpropagation through the model), kept only if that KL falls.",
    );
  }
  lines.push("");
  lines.push("The flags of each auto run:");
  lines.push("");
  for (const run of r.runs.filter((x) => x.series === "auto" || x.series === "tuned")) {
    lines.push(
      `  - ≤ ${run.budget} bpp: \`${run.flags}\` (finalists ranked by ${run.rankedBy ?? "relMSE"}; search proxy relMSE ${f(run.proxyRelMSE, 4)}, full fit ${f(run.relMSE, 4)})`,
    );
  }
  lines.push("");
  return `${lines.join("\n")}`;
}

const SERIES: PlotSeries[] = [
  { id: "auto", name: "carvq auto (--target-bpp)", color: "#1f5fbf", marker: "circle" },
  { id: "tuned", name: "carvq auto + --kl-encode / --tune-kl (fitted for the model's KL)", color: "#2a9d4b", marker: "diamond" },
  { id: "paper", name: "carvq paper recipe (row, h 8, g 1024, greedy; L levels)", color: "#e07b00", marker: "square", dash: "6,4" },
  { id: "scalar", name: "scalar int4 / int3 / int2", color: "#6b6b6b", marker: "triangle", dash: "2,3" },
];

/** The SVG plot: relMSE (log scale) and nn10 against bpp, and perplexity for llama2.c models. */
export function renderReportSvg(r: ReportResult): string {
  const llm = r.runs.some((run) => run.ppl !== undefined);
  const panels: PlotPanel[] = [
    { key: "relMSE", title: "Reconstruction error", yLabel: "relative MSE (log scale)", scale: "log", better: "lower" },
    { key: "nn10", title: "Nearest neighbours kept", yLabel: "NN@10 overlap", scale: "linear", better: "higher" },
  ];
  // Perplexity as its increase over the original model's, in percent on a log scale: the small
  // increases that matter stay apart from the large ones (an increase under 0.01 % is drawn at 0.01 %).
  if (llm)
    panels.push({
      key: "pplIncrease",
      title: "Model perplexity",
      yLabel: `perplexity increase vs ${f(r.pplOrig, 2)}, % (log scale)`,
      scale: "log",
      better: "lower",
      clip: 300,
    });
  const points: PlotPoint[] = r.runs.map((run) => ({
    series: run.series,
    label: run.label,
    x: run.bpp,
    y: {
      relMSE: run.relMSE,
      nn10: run.nn10,
      ...(run.ppl !== undefined && run.pplOrig !== undefined ? { pplIncrease: Math.max(1e-2, (run.ppl / run.pplOrig - 1) * 100) } : {}),
    },
  }));
  const name = r.input.split(/[\\/]/).pop();
  return renderPlot(
    `carvq rate–distortion: ${name} (${r.shape[0]} x ${r.shape[1]})`,
    `one point per blob; bpp counts every byte; carvq ${r.version}, seed ${r.seed}`,
    SERIES,
    panels,
    points,
  );
}
