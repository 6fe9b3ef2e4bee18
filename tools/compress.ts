// One entry point from a float matrix to a finished blob: validate, quantize (RVQ or a scalar
// baseline), pack the sections, measure the reconstruction the decoder will produce, and attach it
// as metadata.
import { TOOL_VERSION } from "./version.ts";
import * as F from "../assembly/format.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "./blob/adaptor.ts";
import { deriveHeader, type BlobHeader } from "./blob/header.ts";
import { encodeMetadata, type BlobMetadata } from "./blob/metadata.ts";
import { parseBlob, type Blob } from "./blob/reader.ts";
import { rvqSections, scalarSections } from "./blob/table.ts";
import { assembleBlob, type SectionBytes } from "./blob/writer.ts";
import { CarvqError } from "./errors.ts";
import { F16_MAX } from "./fp16.ts";
import { reconstructionMetrics, type ReconstructionMetrics } from "./quant/metrics.ts";
import type { Matrix } from "./matrix.ts";
import { fitRowScales, unitRows } from "./quant/gain.ts";
import type { RvqShape } from "./quant/layout.ts";
import { RVQ_METHOD, isScalarMethod, METHOD_NAMES, type MethodName } from "./quant/methods.ts";
import { checkMetricSize, metricRound } from "./quant/metric.ts";
import type { TableObjective } from "./quant/objective.ts";
import { rvqQuantizer, rvqShape, scalarQuantizer } from "./quant/quantizer.ts";
import type { RvqEncoding, RvqParams } from "./quant/rvq.ts";
import type { ScalarEncoding } from "./quant/scalar.ts";
import { tuneCodebooks } from "./quant/tune.ts";
import {
  adaptorStep,
  checkAdaptorOptions,
  DEFAULT_ADAPTOR_OPTIONS,
  recordedAdaptorOptions,
  type AdaptorEvents,
  type AdaptorOptions,
  type AdaptorOutcome,
} from "./adaptor/step.ts";

export { TOOL_VERSION };

/** Everything that shapes a blob: the RVQ parameters (tools/quant/rvq.ts), the adaptor's (tools/adaptor/step.ts) plus the method's own. */
export interface CompressOptions extends RvqParams, AdaptorOptions {
  method: MethodName;
  /** RVQ gain-shape: how many FP16 row scales (`--row-scale`, up to 256, a u8 index per row); 0 = off. Metadata records it as "rowScale". */
  rowScaleCount: number;
  /** Scalar methods: values per FP16 scale. */
  block: number;
  /** RVQ: steps of end-to-end codebook tuning on the source's objective (`--tune-kl`); 0 = off. Metadata records it as "tune". */
  tuneKl: number;
  /** RVQ: fits with seeds seed, seed + 1, ...; the best on the source's objective (else relMSE) is kept. */
  restarts: number;
  /** RVQ: rounds of re-encoding and codebook fitting for the source objective's curvature (`--kl-encode`); 0 = off. */
  klEncode: number;
}

export const DEFAULT_COMPRESS_OPTIONS: CompressOptions = {
  method: RVQ_METHOD,
  h: 8,
  levels: 2,
  group: 1024,
  layout: "row",
  iters: 25,
  seed: 0,
  beam: 1,
  refine: 0,
  rowScaleCount: 0,
  block: 32,
  tuneKl: 0,
  restarts: 1,
  klEncode: 0,
  ...DEFAULT_ADAPTOR_OPTIONS,
};

/** Where the matrix came from, recorded in the metadata (file name only, so paths don't change bytes). */
export interface CompressSource {
  source?: string;
  tensor?: string;
  /**
   * The table's stored type in the source and its bits per weight ("Q4_K", 4.5), recorded when it is
   * not float32 so inspect can say what the blob was made from; float32 sources record nothing.
   */
  sourceDtype?: string;
  sourceBitsPerWeight?: number;
  /** An end-to-end objective of the table in its model (a llama2.c model's KL), for `tuneKl`. */
  objective?: TableObjective;
}

/** Callbacks of the long stages after RVQ: the curvature's estimate and KL-aware rounds, codebook tuning's steps, then the adaptor's. */
export interface CompressEvents extends AdaptorEvents {
  curvature?: (done: number, total: number) => void;
  klEncoding?: (round: number, rounds: number, loss: number) => void;
  tuning?: (step: number, steps: number, loss: number) => void;
}

/** Progress of the long stage: `done` of `total` units (RVQ groups or rows). */
export type ProgressCallback = (done: number, total: number) => void;

/** How a compression runs: worker threads (the bytes do not depend on them), progress and stage events. */
export interface CompressRun {
  /** Threads for RVQ fitting, the curvature and adaptor training (default 1). */
  threads?: number;
  onProgress?: ProgressCallback;
  events?: CompressEvents;
}

export interface CompressResult {
  bytes: Uint8Array;
  blob: Blob;
  metrics: ReconstructionMetrics;
}

/**
 * Refuses NaN and Inf, and magnitudes above 65504 (the largest FP16 value: codebooks, scales and
 * row scales are stored as FP16, so such a value could only be clamped, silently), naming the first
 * offending position.
 */
export function checkFinite(matrix: Matrix, name: string): void {
  const { data, cols } = matrix;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v))
      throw new CarvqError(`${name}: value at row ${Math.floor(i / cols)}, column ${i % cols} is ${v}; the table must be finite`);
    if (v > F16_MAX || v < -F16_MAX)
      throw new CarvqError(
        `${name}: value at row ${Math.floor(i / cols)}, column ${i % cols} is ${v}; a blob stores FP16 values, whose largest magnitude is ${F16_MAX}`,
      );
  }
}

function checkOptions(matrix: Matrix, o: CompressOptions, name: string): void {
  const bad = (flag: string, value: number, expected: string) => new CarvqError(`${name}: --${flag} ${value} ${expected}`);
  if (matrix.rows < 1 || matrix.rows > F.MAX_ROWS) throw new CarvqError(`${name}: ${matrix.rows} rows; a blob holds 1 to ${F.MAX_ROWS}`);
  if (matrix.cols < 1 || matrix.cols > F.MAX_COLS) throw new CarvqError(`${name}: ${matrix.cols} columns; a blob holds 1 to ${F.MAX_COLS}`);
  if (!Number.isInteger(matrix.rows) || !Number.isInteger(matrix.cols) || matrix.data.length !== matrix.rows * matrix.cols) {
    throw new CarvqError(
      `${name}: a ${matrix.rows} x ${matrix.cols} matrix must hold ${matrix.rows * matrix.cols} values, not ${matrix.data.length}`,
    );
  }
  if (!METHOD_NAMES.includes(o.method))
    throw new CarvqError(`${name}: --method ${String(o.method)} is not one of ${METHOD_NAMES.join(", ")}`);
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff)
    throw bad("seed", o.seed, "is out of range; expected a whole number from 0 to 4294967295");
  if (o.method === RVQ_METHOD) {
    if (o.layout !== "row" && o.layout !== "col") throw new CarvqError(`${name}: --layout ${String(o.layout)} is not one of row, col`);
    if (!Number.isInteger(o.h) || o.h < 1 || o.h > F.MAX_SUBVEC) throw bad("h", o.h, `is out of range; expected 1 to ${F.MAX_SUBVEC}`);
    if (o.h > matrix.cols) throw bad("h", o.h, `is larger than the table's ${matrix.cols} columns`);
    if (!Number.isInteger(o.levels) || o.levels < 1 || o.levels > F.MAX_LEVELS)
      throw bad("levels", o.levels, `is out of range; expected 1 to ${F.MAX_LEVELS}`);
    if (!Number.isInteger(o.group) || o.group < 1 || o.group > 0xffffffff)
      throw bad("group", o.group, "is out of range; expected a positive whole number");
    if (!Number.isInteger(o.iters) || o.iters < 0) throw bad("iters", o.iters, "is out of range; expected 0 or more");
    if (!Number.isInteger(o.beam) || o.beam < 1 || o.beam > 256) throw bad("beam", o.beam, "is out of range; expected 1 to 256");
    if (!Number.isInteger(o.refine) || o.refine < 0) throw bad("refine", o.refine, "is out of range; expected 0 or more");
    if (!Number.isInteger(o.rowScaleCount) || o.rowScaleCount < 0 || o.rowScaleCount > F.MAX_ROW_SCALES)
      throw bad("row-scale", o.rowScaleCount, `is out of range; expected 0 (off) to ${F.MAX_ROW_SCALES}`);
    if (o.weights && (o.weights.length !== matrix.rows || !o.weights.every((w) => Number.isFinite(w) && w >= 0))) {
      throw new CarvqError(`${name}: weights must be ${matrix.rows} finite values >= 0 (one per row), got ${o.weights.length}`);
    }
  } else if (!Number.isInteger(o.block) || o.block < 1 || o.block > F.MAX_SCALE_BLOCK) {
    throw bad("block", o.block, `is out of range; expected 1 to ${F.MAX_SCALE_BLOCK}`);
  }
  if (!Number.isInteger(o.restarts) || o.restarts < 1 || o.restarts > 1000)
    throw bad("restarts", o.restarts, "is out of range; expected 1 to 1000 fits");
  if (o.restarts > 1 && o.method !== RVQ_METHOD)
    throw new CarvqError(`${name}: --restarts repeats RVQ fits; it needs --method carvq, got --method ${o.method}`);
  if (!Number.isInteger(o.tuneKl) || o.tuneKl < 0 || o.tuneKl > 10000)
    throw bad("tune-kl", o.tuneKl, "is out of range; expected 0 (off) to 10000 steps");
  if (o.tuneKl > 0 && o.method !== RVQ_METHOD)
    throw new CarvqError(`${name}: --tune-kl tunes RVQ codebooks; it needs --method carvq, got --method ${o.method}`);
  if (o.tuneKl > 0 && o.rowScaleCount > 0)
    throw new CarvqError(`${name}: --tune-kl does not combine with --row-scale (the scales are fitted after the codebooks)`);
  if (!Number.isInteger(o.klEncode) || o.klEncode < 0 || o.klEncode > 100)
    throw bad("kl-encode", o.klEncode, "is out of range; expected 0 (off) to 100 rounds");
  if (o.klEncode > 0 && o.method !== RVQ_METHOD)
    throw new CarvqError(`${name}: --kl-encode chooses RVQ codes; it needs --method carvq, got --method ${o.method}`);
  if (o.klEncode > 0 && o.rowScaleCount > 0)
    throw new CarvqError(
      `${name}: --kl-encode does not combine with --row-scale (the model's curvature is of the rows, not of their directions)`,
    );
  checkAdaptorOptions(o, o.method, name);
}

/** The header a blob of this shape and these options has (before any adaptor). */
export function headerFor(matrix: { rows: number; cols: number }, o: CompressOptions): BlobHeader {
  const common = { method: o.method, rows: matrix.rows, cols: matrix.cols };
  return o.method === RVQ_METHOD
    ? deriveHeader({ ...common, subvec: o.h, levels: o.levels, group: o.group, layout: o.layout, rowScaled: o.rowScaleCount > 0 })
    : deriveHeader({ ...common, subvec: 0, levels: 0, group: o.block, layout: "row" });
}

/**
 * What RVQ fits: the rows themselves, or with gain-shape their directions, each weighted by its
 * squared length (times any importance weight) so the shapes are fitted for the same squared error
 * the full rows would be.
 */
function rvqInput(matrix: Matrix, o: CompressOptions): { input: Matrix; params: CompressOptions } {
  if (o.rowScaleCount === 0) return { input: matrix, params: o };
  const input = unitRows(matrix);
  const weights = new Float32Array(matrix.rows);
  for (let r = 0; r < matrix.rows; r++) {
    let norm2 = 0;
    for (let i = r * matrix.cols; i < (r + 1) * matrix.cols; i++) norm2 += matrix.data[i] * matrix.data[i];
    weights[r] = norm2 * (o.weights ? o.weights[r] : 1);
  }
  return { input, params: { ...o, weights } };
}

/** The options that shaped the blob, as recorded in its metadata (tools/plan/size.ts predicts its length from them). */
export function recordedOptions(o: CompressOptions): Record<string, unknown> {
  if (o.method !== RVQ_METHOD) return { method: o.method, block: o.block };
  return {
    method: o.method,
    h: o.h,
    levels: o.levels,
    group: o.group,
    layout: o.layout,
    iters: o.iters,
    seed: o.seed,
    beam: o.beam,
    refine: o.refine,
    rowScale: o.rowScaleCount,
    weighted: Boolean(o.weights),
    ...(o.restarts > 1 ? { restarts: o.restarts } : {}),
    ...(o.klEncode > 0 ? { klEncode: o.klEncode } : {}),
    ...(o.tuneKl > 0 ? { tune: o.tuneKl } : {}),
    ...recordedAdaptorOptions(o),
  };
}

function roundMetric(value: number): number {
  return Number(value.toPrecision(6));
}

/** A checked compression: the options with their defaults, the header they give and the source's name for messages. */
export interface Plan {
  o: CompressOptions;
  header: BlobHeader;
  name: string;
}

/** Checks the options against the table (refusing what cannot work before any fitting) and derives the header. */
export function planCompression(matrix: Matrix, options: Partial<CompressOptions>, from: CompressSource): Plan {
  const o: CompressOptions = { ...DEFAULT_COMPRESS_OPTIONS, ...options };
  const name = from.source ?? "input";
  checkOptions(matrix, o, name);
  // Before any fitting: a long fit should not end in this refusal.
  if (o.tuneKl > 0 && from.objective === undefined)
    throw new CarvqError(
      `${name}: --tune-kl needs a model to measure the table in (a llama2.c checkpoint as input); this input is a bare table`,
    );
  if (o.klEncode > 0) {
    if (from.objective?.curvature === undefined)
      throw new CarvqError(
        `${name}: --kl-encode needs a model whose curvature it can estimate (a llama2.c checkpoint as input); this input is a bare table`,
      );
    checkMetricSize(matrix.rows, matrix.cols, name);
  }
  checkFinite(matrix, name);
  return { o, header: headerFor(matrix, o), name };
}

/** The metadata a blob of these options records, with its measured metrics and the adaptor step's record. */
export function blobMetadata(
  shape: { rows: number; cols: number },
  o: CompressOptions,
  from: CompressSource,
  metrics: ReconstructionMetrics,
  adaptorRecord?: Record<string, unknown>,
): BlobMetadata {
  return {
    tool: "carvq",
    version: TOOL_VERSION,
    ...(from.source !== undefined ? { source: from.source.split(/[\\/]/).pop() } : {}),
    ...(from.tensor !== undefined ? { tensor: from.tensor } : {}),
    ...(from.sourceDtype !== undefined && from.sourceDtype !== "F32"
      ? { sourceDtype: from.sourceDtype, ...(from.sourceBitsPerWeight !== undefined ? { sourceBpw: from.sourceBitsPerWeight } : {}) }
      : {}),
    shape: [shape.rows, shape.cols],
    options: recordedOptions(o),
    metrics: { relMSE: roundMetric(metrics.relMSE), cosine: roundMetric(metrics.cosine) },
    ...(adaptorRecord ? { adaptor: adaptorRecord } : {}),
  };
}

/** Seals the quantized sections, the adaptor's when it was kept, and the metadata into one blob. */
export function sealBlob(
  matrix: Matrix,
  { o, header: plainHeader, name }: Plan,
  sections: SectionBytes[],
  from: CompressSource,
  metrics: ReconstructionMetrics,
  adaptor?: AdaptorOutcome,
): CompressResult {
  const stored = adaptor?.adaptor ?? null;
  const header = stored === null ? plainHeader : deriveHeader({ ...plainHeader, adapted: true });
  const adaptorSections =
    stored === null
      ? []
      : [
          { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(stored) },
          { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(stored) },
        ];
  const metadata = blobMetadata(matrix, o, from, metrics, adaptor?.record);
  const bytes = assembleBlob(header, [...sections, ...adaptorSections, { id: F.SECTION_METADATA, bytes: encodeMetadata(metadata) }]);
  return { bytes, blob: parseBlob(bytes, name), metrics };
}

/** The seed of restart r: seed, seed + 1, ... (mod 2^32). */
function restartSeed(seed: number, r: number): number {
  return (seed + r) >>> 0;
}

/**
 * The best of the restarts' fits: on the source's objective (a llama2.c model's KL on its
 * calibration text) when there is one and the rows are fitted as they are, else on the squared
 * error of what was fitted. The first wins ties, so one restart is the plain fit.
 */
function bestOfRestarts(fits: RvqEncoding[], input: Matrix, { o }: Plan, from: CompressSource, events?: CompressEvents): Scored {
  if (fits.length === 1) return { encoding: fits[0] };
  const shape = shapeOf(input, o);
  const objective = o.rowScaleCount === 0 ? from.objective : undefined;
  const score = (e: RvqEncoding) =>
    objective ? objective.loss(rvqQuantizer.decode(e, shape, o)) : reconstructionMetrics(input, rvqQuantizer.decode(e, shape, o)).relMSE;
  const scores = fits.map(score);
  const best = scores.reduce((b, v, i) => (v < scores[b] ? i : b), 0);
  events?.note?.(
    `restarts: ${objective ? objective.name : "relMSE"} of the ${fits.length} fits (seeds ${o.seed} to ${restartSeed(o.seed, fits.length - 1)}): ${scores.map((v) => v.toPrecision(4)).join(", ")}; kept seed ${restartSeed(o.seed, best)}`,
  );
  return { encoding: fits[best], ...(objective ? { loss: scores[best] } : {}) };
}

/** An encoding between the model-aware stages, with its value of the source's objective once a stage has measured it. */
interface Scored {
  encoding: RvqEncoding;
  loss?: number;
}

/** The RVQ shape of the table under these options. */
function shapeOf(matrix: Matrix, o: CompressOptions): RvqShape {
  return rvqShape(matrix, o);
}

/**
 * The encoding after `klEncode` rounds of re-encoding and codebook fitting for the source objective's
 * curvature (tools/quant/metric.ts), when asked: each round is measured on the objective itself and
 * the best encoding, the fitted one included, is kept.
 */
function klEncoded(fitted: Scored, matrix: Matrix, { o }: Plan, from: CompressSource, events?: CompressEvents): Scored {
  const objective = from.objective;
  if (o.klEncode === 0 || objective?.curvature === undefined) return fitted;
  const shape = shapeOf(matrix, o);
  const metric = objective.curvature(events?.curvature);
  const losses = [fitted.loss ?? objective.loss(rvqQuantizer.decode(fitted.encoding, shape, o))];
  let best: Scored = { encoding: fitted.encoding, loss: losses[0] };
  let current = fitted.encoding;
  for (let round = 1; round <= o.klEncode; round++) {
    current = metricRound(matrix, current, shape, metric);
    losses.push(objective.loss(rvqQuantizer.decode(current, shape, o)));
    events?.klEncoding?.(round, o.klEncode, losses[round]);
    if (losses[round] < best.loss!) best = { encoding: current, loss: losses[round] };
  }
  const kept = losses.indexOf(best.loss!);
  events?.note?.(
    `kl-encode: ${objective.name} on the calibration text ${losses.map((v) => v.toPrecision(4)).join(" -> ")}; kept ${kept === 0 ? "the fitted codes" : `round ${kept}`}`,
  );
  return best;
}

/** The encoding with its codebooks tuned on the source's objective, when `tuneKl` asks for it. */
function tuned({ encoding, loss }: Scored, matrix: Matrix, { o, name }: Plan, from: CompressSource, events?: CompressEvents): RvqEncoding {
  if (o.tuneKl === 0 || from.objective === undefined) return encoding;
  const shape = shapeOf(matrix, o);
  const result = tuneCodebooks(encoding, shape, from.objective, o.tuneKl, {
    before: loss,
    onStep: (step, value) => events?.tuning?.(step, o.tuneKl, value),
  });
  events?.note?.(
    result.kept
      ? `tuning: ${from.objective.name} ${result.before.toPrecision(4)} -> ${result.after.toPrecision(4)} on the calibration text (${o.tuneKl} steps)`
      : `tuning: kept the fitted codebooks (${from.objective.name} ${result.before.toPrecision(4)}; ${o.tuneKl} steps did not improve on it after FP16 rounding)`,
  );
  return result.encoding;
}

/**
 * With gain-shape, the row scales fitted to the decoded directions: the encoding then codes the
 * rows themselves (directions times their scales).
 */
function withRowScales(matrix: Matrix, { o }: Plan, encoding: RvqEncoding): RvqEncoding {
  if (o.rowScaleCount === 0) return encoding;
  const shapes = rvqQuantizer.decode(encoding, matrix, o);
  return { ...encoding, rowScales: fitRowScales(matrix, shapes, o.rowScaleCount) };
}

/** RVQ: the fits (restarts), then the model-aware stages and the row scales. */
async function rvqStages(matrix: Matrix, p: Plan, from: CompressSource, run: CompressRun): Promise<RvqEncoding> {
  const { input, params } = rvqInput(matrix, p.o);
  const threads = run.threads ?? 1;
  const fits: RvqEncoding[] = [];
  const G = p.header.groupCount;
  const restarts = p.o.restarts;
  for (let r = 0; r < restarts; r++) {
    const options = { ...params, seed: restartSeed(p.o.seed, r) };
    fits.push(await rvqQuantizer.train(input, options, { threads, onProgress: (done) => run.onProgress?.(r * G + done, restarts * G) }));
  }
  if (p.o.klEncode > 0) await from.objective?.prepareCurvature?.(threads, run.events?.curvature);
  const events = run.events;
  const encoding = tuned(klEncoded(bestOfRestarts(fits, input, p, from, events), matrix, p, from, events), matrix, p, from, events);
  return withRowScales(matrix, p, encoding);
}

/**
 * Compresses `matrix` into a complete blob. Deterministic: the same matrix, options and seed give
 * the same bytes, on any number of threads. The metrics are measured on the table the decoder will
 * produce (decoded in memory by the same quantizer and adaptor code), so `carvq eval` reproduces them.
 */
export async function compressMatrix(
  matrix: Matrix,
  options: Partial<CompressOptions> = {},
  from: CompressSource = {},
  run: CompressRun = {},
): Promise<CompressResult> {
  const p = planCompression(matrix, options, from);
  const o = p.o;
  if (isScalarMethod(o.method)) {
    const scalar = { method: o.method, block: o.block };
    const encoding: ScalarEncoding = await scalarQuantizer.train(matrix, scalar, { onProgress: run.onProgress });
    return sealBlob(
      matrix,
      p,
      scalarSections(p.header, encoding),
      from,
      reconstructionMetrics(matrix, scalarQuantizer.decode(encoding, matrix, scalar)),
    );
  }
  const encoding = await rvqStages(matrix, p, from, run);
  const sections = rvqSections(p.header, encoding);
  const decoded = rvqQuantizer.decode(encoding, matrix, o);
  if (o.adaptor === "none") return sealBlob(matrix, p, sections, from, reconstructionMetrics(matrix, decoded));
  const adaptor = await adaptorStep({ matrix, decoded, options: o, seed: o.seed, threads: run.threads ?? 1, events: run.events });
  return sealBlob(matrix, p, sections, from, adaptor.metrics, adaptor);
}
