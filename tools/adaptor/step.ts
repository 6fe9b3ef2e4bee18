// The compressor's adaptor step (called by tools/compress.ts after RVQ): pick the widths, train on
// the residual of the decoded RVQ blob (row scales included), quantize, measure the blob the
// decoder will read, and keep the adaptor only if it lowers the table's error. Says what it decided
// (a note per stage) and returns a record for the blob's metadata.
import * as F from "../../assembly/format.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "../blob/adaptor.ts";
import { deriveHeader, type BlobHeader } from "../blob/header.ts";
import { parseBlob } from "../blob/reader.ts";
import { assembleBlob, type SectionBytes } from "../blob/writer.ts";
import { CarvqError } from "../errors.ts";
import { decodeAll } from "../decoder.ts";
import { reconstructionMetrics, type ReconstructionMetrics } from "../eval/metrics.ts";
import type { Matrix } from "../matrix.ts";
import type { AdaptorPrecision } from "./model.ts";
import { quantizeAdaptor } from "./quantize.ts";
import { adaptorBlobBytes, DEFAULT_ADAPTOR_BPP, parseAdaptorSpec, resolveWidths, specName, type AdaptorSpec } from "./sizing.ts";
import { DEFAULT_TRAIN_OPTIONS, epochFlops, trainAdaptor, trainAdaptorSync, trainPlan, type TrainProgress, type TrainResult } from "./train.ts";

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

export const DEFAULT_ADAPTOR_OPTIONS: AdaptorOptions = { adaptor: "none", adaptorBpp: DEFAULT_ADAPTOR_BPP, adaptorPrecision: "int8", adaptorEpochs: 0 };

/** Callbacks of the adaptor step: one-line notes of what it decided, and training progress. */
export interface AdaptorEvents {
  note?: (message: string) => void;
  training?: (progress: TrainProgress) => void;
}

/** What the step produced: extra sections and the header to use (unchanged when not kept). */
export interface AdaptorOutcome {
  header: BlobHeader;
  sections: SectionBytes[];
  /** Metrics of the blob's decode (with the adaptor when kept). */
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
  } else if (!["none", "paper", "auto"].includes(o.adaptor)) throw bad("adaptor", o.adaptor, "must be none, paper, auto or widths m0,m1,...");
  if (o.adaptor !== "none" && method !== "carvq") throw new CarvqError(`${name}: --adaptor needs --method carvq (an adaptor corrects an RVQ table), got --method ${method}`);
  if (!(Number.isFinite(o.adaptorBpp) && o.adaptorBpp > 0 && o.adaptorBpp <= 64)) throw bad("adaptor-bpp", o.adaptorBpp, "is out of range; expected a number above 0, at most 64");
  if (o.adaptorPrecision !== "int8" && o.adaptorPrecision !== "fp16") throw bad("adaptor-precision", o.adaptorPrecision, "must be int8 or fp16");
  if (!Number.isInteger(o.adaptorEpochs) || o.adaptorEpochs < 0 || o.adaptorEpochs > 100000) throw bad("adaptor-epochs", o.adaptorEpochs, "is out of range; expected 0 (auto) to 100000");
}

/** The options as recorded in metadata (only when an adaptor was asked for). */
export function recordedAdaptorOptions(o: AdaptorOptions): Record<string, unknown> {
  if (o.adaptor === "none") return {};
  return { adaptor: specName(o.adaptor), ...(o.adaptor === "auto" ? { adaptorBpp: o.adaptorBpp } : {}), adaptorPrecision: o.adaptorPrecision, adaptorEpochs: o.adaptorEpochs };
}

function round(value: number): number {
  return Number(value.toPrecision(6));
}

interface Prepared {
  widths: number[];
  residual: Matrix;
  plain: ReconstructionMetrics;
}

/** Decodes the RVQ blob, measures it and turns the decode into the residual; null when no adaptor is wanted. */
function prepare(matrix: Matrix, header: BlobHeader, sections: SectionBytes[], name: string, o: AdaptorOptions, plainOutcome: (reason: string, metrics?: ReconstructionMetrics) => AdaptorOutcome, note: (m: string) => void): Prepared | AdaptorOutcome {
  const choice = resolveWidths(o.adaptor, matrix.rows, matrix.cols, o.adaptorBpp, o.adaptorPrecision);
  if (choice.widths === null) {
    note(`adaptor: ${choice.reason}`);
    // The metadata keeps it short: its bytes count in bpp like any others.
    return plainOutcome(`${o.adaptorBpp} bpp holds no adaptor`);
  }
  const decoded = decodeAll(parseBlob(assembleBlob(header, sections), name));
  const plain = reconstructionMetrics(matrix, decoded);
  const residual = decoded.data;
  for (let i = 0; i < residual.length; i++) residual[i] = matrix.data[i] - residual[i];
  const bytes = adaptorBlobBytes(matrix.rows, choice.widths, o.adaptorPrecision);
  const { batch, stepsPerEpoch, epochs } = trainPlan(matrix.rows, choice.widths, { batch: DEFAULT_TRAIN_OPTIONS.batch, epochs: o.adaptorEpochs });
  note(`adaptor: ${choice.reason}; ${o.adaptorPrecision}, about ${round((8 * bytes) / (matrix.rows * matrix.cols))} bpp; training up to ${epochs} epochs of ${stepsPerEpoch} steps (batch ${batch}, ${round(epochFlops(matrix.rows, choice.widths) / 1e9)} GFLOP per epoch)`);
  return { widths: choice.widths, residual: { rows: matrix.rows, cols: matrix.cols, data: residual }, plain };
}

/** Quantizes the trained adaptor, measures the adapted blob and keeps it only if it lowers the relative MSE. */
function decide(matrix: Matrix, header: BlobHeader, sections: SectionBytes[], name: string, o: AdaptorOptions, prepared: Prepared, trained: TrainResult, note: (m: string) => void): AdaptorOutcome {
  const first = trained.losses[0] ?? 1;
  const last = trained.losses[trained.losses.length - 1] ?? 1;
  note(`adaptor: trained ${trained.epochs} epoch${trained.epochs === 1 ? "" : "s"} (${trained.stopped === "plateau" ? "stopped on a plateau" : "all planned"}) in ${trained.seconds.toFixed(1)} s at ${(trained.flops / trained.seconds / 1e9).toFixed(1)} GFLOP/s; relative L1 ${first.toFixed(4)} -> ${last.toFixed(4)}`);
  const stored = quantizeAdaptor(trained.adaptor, o.adaptorPrecision);
  const adaptorSections = [
    { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(stored) },
    { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(stored) },
  ];
  const adaptedHeader = deriveHeader({ ...header, adapted: true });
  const adapted = reconstructionMetrics(matrix, decodeAll(parseBlob(assembleBlob(adaptedHeader, [...sections, ...adaptorSections]), name)));
  const bytes = adaptorSections.reduce((sum, s) => sum + s.bytes.length, 0);
  const bpp = (8 * bytes) / (matrix.rows * matrix.cols);
  const kept = adapted.relMSE < prepared.plain.relMSE;
  const change = `relMSE ${round(prepared.plain.relMSE)} -> ${round(adapted.relMSE)}, cosine ${round(prepared.plain.cosine)} -> ${round(adapted.cosine)}`;
  note(kept ? `adaptor: kept (${prepared.widths.join("-")}, ${o.adaptorPrecision}, ${bytes} bytes, +${round(bpp)} bpp): ${change}` : `adaptor: dropped, it does not lower the error (${change}; it would add ${round(bpp)} bpp)`);
  const record = {
    spec: specName(o.adaptor),
    widths: prepared.widths,
    precision: o.adaptorPrecision,
    kept,
    bytes,
    epochs: trained.epochs,
    stopped: trained.stopped,
    loss: [round(first), round(last)],
    relMSE: [round(prepared.plain.relMSE), round(adapted.relMSE)],
  };
  return kept ? { header: adaptedHeader, sections: adaptorSections, metrics: adapted, record } : { header, sections: [], metrics: prepared.plain, record };
}

function outcomeWithout(matrix: Matrix, header: BlobHeader, sections: SectionBytes[], name: string, o: AdaptorOptions) {
  return (reason: string): AdaptorOutcome => ({
    header,
    sections: [],
    metrics: reconstructionMetrics(matrix, decodeAll(parseBlob(assembleBlob(header, sections), name))),
    record: { spec: specName(o.adaptor), kept: false, reason },
  });
}

/** The adaptor step on the calling thread (synchronous compressMatrix). */
export function adaptorStepSync(matrix: Matrix, header: BlobHeader, sections: SectionBytes[], name: string, o: AdaptorOptions, seed: number, events: AdaptorEvents = {}): AdaptorOutcome {
  const note = events.note ?? (() => {});
  const p = prepare(matrix, header, sections, name, o, outcomeWithout(matrix, header, sections, name, o), note);
  if (!("widths" in p)) return p;
  const trained = trainAdaptorSync(p.residual, p.widths, { epochs: o.adaptorEpochs, seed }, events.training);
  return decide(matrix, header, sections, name, o, p, trained, note);
}

/** The adaptor step with training spread over `threads` threads (the same bytes). */
export async function adaptorStep(matrix: Matrix, header: BlobHeader, sections: SectionBytes[], name: string, o: AdaptorOptions, seed: number, threads: number, events: AdaptorEvents = {}): Promise<AdaptorOutcome> {
  const note = events.note ?? (() => {});
  const p = prepare(matrix, header, sections, name, o, outcomeWithout(matrix, header, sections, name, o), note);
  if (!("widths" in p)) return p;
  const trained = await trainAdaptor(p.residual, p.widths, { epochs: o.adaptorEpochs, seed, threads }, events.training);
  return decide(matrix, header, sections, name, o, p, trained, note);
}
