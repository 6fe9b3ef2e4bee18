// The compressor's adaptor step (tools/compress.ts, after quantization): pick the widths, train on
// the residual of the quantized table's decode (row scales included), quantize, decode the adapted
// table in memory the way the decoder will, and keep the adaptor only if it lowers the table's
// error. Says what it decided (a note per stage) and returns a record for the blob's metadata.
import { CarvqError } from "../errors.ts";
import { reconstructionMetrics, type ReconstructionMetrics } from "../quant/metrics.ts";
import type { Matrix } from "../matrix.ts";
import { addAdaptorRows } from "./forward.ts";
import { storedAdaptorBytes, type AdaptorPrecision, type StoredAdaptor } from "./model.ts";
import { quantizeAdaptor } from "./quantize.ts";
import { adaptorBlobBytes, DEFAULT_ADAPTOR_BPP, parseAdaptorSpec, resolveWidths, specName, type AdaptorSpec } from "./sizing.ts";
import { DEFAULT_TRAIN_OPTIONS, epochFlops, trainAdaptor, trainPlan, type TrainProgress, type TrainResult } from "./train.ts";
import { RVQ_METHOD } from "../quant/methods.ts";

/** The compressor's adaptor options (CompressOptions carries them). */
export interface AdaptorOptions {
  /** none (default), paper, auto, or m0,hidden... widths (the output width n is the table's). */
  adaptor: AdaptorSpec;
  /** auto: the adaptor's budget in bits per parameter of the table. */
  adaptorBpp: number;
  /** int8 (per-row / per-output-channel FP16 scales) or fp16, for sigma0 and the MLP weights. */
  adaptorPrecision: AdaptorPrecision;
  /** Most training epochs; 0 = auto (about 3,000 steps, 16 to 3,000 epochs, at most 1.6e13 flops above 16), early stopping may end sooner. */
  adaptorEpochs: number;
}

export const DEFAULT_ADAPTOR_OPTIONS: AdaptorOptions = {
  adaptor: "none",
  adaptorBpp: DEFAULT_ADAPTOR_BPP,
  adaptorPrecision: "int8",
  adaptorEpochs: 0,
};

/** Callbacks of the adaptor step: one-line notes of what it decided, and training progress. */
export interface AdaptorEvents {
  note?: (message: string) => void;
  training?: (progress: TrainProgress) => void;
}

/** What the step is given: the table, its quantized decode, the options, the seed and threads for training. */
export interface AdaptorStepInput {
  matrix: Matrix;
  /** The quantized table as the decoder reads it, without an adaptor. */
  decoded: Matrix;
  options: AdaptorOptions;
  seed: number;
  /** Threads in all for training (the result does not depend on it). */
  threads: number;
  events?: AdaptorEvents;
}

/** What the step produced: the adaptor when kept, and the metrics of the decode with it (or without). */
export interface AdaptorOutcome {
  adaptor: StoredAdaptor | null;
  metrics: ReconstructionMetrics;
  /** The metadata's "adaptor" record. */
  record: Record<string, unknown>;
}

/** Refuses adaptor options that cannot work, naming the flag. */
export function checkAdaptorOptions(o: AdaptorOptions, method: string, name: string): void {
  const bad = (flag: string, value: unknown, expected: string) => new CarvqError(`${name}: --${flag} ${value} ${expected}`);
  if (typeof o.adaptor !== "string") {
    const parsed = parseAdaptorSpec(o.adaptor.join(","));
    if (typeof parsed === "object" && "error" in parsed) throw new CarvqError(`${name}: --adaptor ${parsed.error}`);
  } else if (!["none", "paper", "auto"].includes(o.adaptor))
    throw bad("adaptor", o.adaptor, "must be none, paper, auto or widths m0,m1,...");
  if (o.adaptor !== "none" && method !== RVQ_METHOD)
    throw new CarvqError(`${name}: --adaptor needs --method carvq (an adaptor corrects an RVQ table), got --method ${method}`);
  if (!(Number.isFinite(o.adaptorBpp) && o.adaptorBpp > 0 && o.adaptorBpp <= 64))
    throw bad("adaptor-bpp", o.adaptorBpp, "is out of range; expected a number above 0, at most 64");
  if (o.adaptorPrecision !== "int8" && o.adaptorPrecision !== "fp16")
    throw bad("adaptor-precision", o.adaptorPrecision, "must be int8 or fp16");
  if (!Number.isInteger(o.adaptorEpochs) || o.adaptorEpochs < 0 || o.adaptorEpochs > 100000)
    throw bad("adaptor-epochs", o.adaptorEpochs, "is out of range; expected 0 (auto) to 100000");
}

/** The options as recorded in metadata (only when an adaptor was asked for). */
export function recordedAdaptorOptions(o: AdaptorOptions): Record<string, unknown> {
  if (o.adaptor === "none") return {};
  return {
    adaptor: specName(o.adaptor),
    ...(o.adaptor === "auto" ? { adaptorBpp: o.adaptorBpp } : {}),
    adaptorPrecision: o.adaptorPrecision,
    adaptorEpochs: o.adaptorEpochs,
  };
}

function round(value: number): number {
  return Number(value.toPrecision(6));
}

/**
 * Trains an adaptor on the residual of `decoded`, when one is wanted and the budget holds one, and
 * keeps it only if the adapted decode has the lower relative MSE.
 */
export async function adaptorStep({ matrix, decoded, options: o, seed, threads, events = {} }: AdaptorStepInput): Promise<AdaptorOutcome> {
  const note = events.note ?? (() => {});
  const plain = reconstructionMetrics(matrix, decoded);
  const choice = resolveWidths(o.adaptor, matrix.rows, matrix.cols, o.adaptorBpp, o.adaptorPrecision);
  if (choice.widths === null) {
    note(`adaptor: ${choice.reason}`);
    // The metadata keeps it short: its bytes count in bpp like any others.
    return {
      adaptor: null,
      metrics: plain,
      record: { spec: specName(o.adaptor), kept: false, reason: `${o.adaptorBpp} bpp holds no adaptor` },
    };
  }
  const widths = choice.widths;
  const residual = new Float32Array(matrix.data.length);
  for (let i = 0; i < residual.length; i++) residual[i] = matrix.data[i] - decoded.data[i];
  const plannedBytes = adaptorBlobBytes(matrix.rows, widths, o.adaptorPrecision);
  const { batch, stepsPerEpoch, epochs } = trainPlan(matrix.rows, widths, { batch: DEFAULT_TRAIN_OPTIONS.batch, epochs: o.adaptorEpochs });
  note(
    `adaptor: ${choice.reason}; ${o.adaptorPrecision}, about ${round((8 * plannedBytes) / (matrix.rows * matrix.cols))} bpp; training up to ${epochs} epochs of ${stepsPerEpoch} steps (batch ${batch}, ${round(epochFlops(matrix.rows, widths) / 1e9)} GFLOP per epoch)`,
  );
  const trained = await trainAdaptor(
    { rows: matrix.rows, cols: matrix.cols, data: residual },
    widths,
    { epochs: o.adaptorEpochs, seed, threads },
    events.training,
  );
  return decide(matrix, decoded, o, widths, plain, trained, note);
}

/** Quantizes the trained adaptor, measures the adapted decode and keeps it only if it lowers the relative MSE. */
function decide(
  matrix: Matrix,
  decoded: Matrix,
  o: AdaptorOptions,
  widths: number[],
  plain: ReconstructionMetrics,
  trained: TrainResult,
  note: (m: string) => void,
): AdaptorOutcome {
  const first = trained.losses[0] ?? 1;
  const last = trained.losses[trained.losses.length - 1] ?? 1;
  note(
    `adaptor: trained ${trained.epochs} epoch${trained.epochs === 1 ? "" : "s"} (${trained.stopped === "plateau" ? "stopped on a plateau" : "all planned"}) in ${trained.seconds.toFixed(1)} s at ${(trained.flops / trained.seconds / 1e9).toFixed(1)} GFLOP/s; relative L1 ${first.toFixed(4)} -> ${last.toFixed(4)}`,
  );
  const stored = quantizeAdaptor(trained.adaptor, o.adaptorPrecision);
  const adaptedData = decoded.data.slice();
  addAdaptorRows(stored, adaptedData, matrix.rows);
  const adapted = reconstructionMetrics(matrix, { rows: matrix.rows, cols: matrix.cols, data: adaptedData });
  const bytes = storedAdaptorBytes(stored);
  const bpp = (8 * bytes) / (matrix.rows * matrix.cols);
  const kept = adapted.relMSE < plain.relMSE;
  const change = `relMSE ${round(plain.relMSE)} -> ${round(adapted.relMSE)}, cosine ${round(plain.cosine)} -> ${round(adapted.cosine)}`;
  note(
    kept
      ? `adaptor: kept (${widths.join("-")}, ${o.adaptorPrecision}, ${bytes} bytes, +${round(bpp)} bpp): ${change}`
      : `adaptor: dropped, it does not lower the error (${change}; it would add ${round(bpp)} bpp)`,
  );
  const record = {
    spec: specName(o.adaptor),
    widths,
    precision: o.adaptorPrecision,
    kept,
    bytes,
    epochs: trained.epochs,
    stopped: trained.stopped,
    loss: [round(first), round(last)],
    relMSE: [round(plain.relMSE), round(adapted.relMSE)],
  };
  return kept ? { adaptor: stored, metrics: adapted, record } : { adaptor: null, metrics: plain, record };
}
