// One entry point from a float matrix to a finished blob: validate, quantize (RVQ or a scalar
// baseline), pack the sections, measure the reconstruction the decoder will produce, and attach it
// as metadata.
import * as F from "../assembly/format.ts";
import pkg from "../package.json" with { type: "json" };
import { encodeCodebooks } from "./blob/codebooks.ts";
import { packNibbleRecords, packScalarRecords } from "./blob/codes.ts";
import { deriveHeader, SCALAR_BITS, type BlobHeader, type LayoutName, type MethodName } from "./blob/header.ts";
import { encodeMetadata, type BlobMetadata } from "./blob/metadata.ts";
import { parseBlob, type Blob } from "./blob/reader.ts";
import { assembleBlob, type SectionBytes } from "./blob/writer.ts";
import { decodeAll } from "./decoder.ts";
import { CarvqError } from "./errors.ts";
import { reconstructionMetrics, type ReconstructionMetrics } from "./eval/metrics.ts";
import type { Matrix } from "./matrix.ts";
import { encodeRvqParallel } from "./quant/parallel.ts";
import { encodeRvq, type RvqEncoding } from "./quant/rvq.ts";
import { encodeScalar } from "./quant/scalar.ts";

export const TOOL_VERSION: string = pkg.version;

export interface CompressOptions {
  method: MethodName;
  /** RVQ sub-vector length. */
  h: number;
  /** RVQ residual levels. */
  levels: number;
  /** RVQ sub-vectors per group. */
  group: number;
  layout: LayoutName;
  /** Lloyd iterations per k-means. */
  iters: number;
  seed: number;
  /** RVQ: beam width for encoding (1 = greedy, the paper's). */
  beam: number;
  /** RVQ: rounds of joint least-squares codebook refinement. */
  refine: number;
  /** Scalar methods: values per FP16 scale. */
  block: number;
}

export const DEFAULT_COMPRESS_OPTIONS: CompressOptions = { method: "carvq", h: 8, levels: 2, group: 1024, layout: "row", iters: 25, seed: 0, beam: 1, refine: 0, block: 32 };

/** Where the matrix came from, recorded in the metadata (file name only, so paths don't change bytes). */
export interface CompressSource {
  source?: string;
  tensor?: string;
}

/** Progress of the long stage: `done` of `total` units (RVQ groups or rows). */
export type ProgressCallback = (done: number, total: number) => void;

export interface CompressResult {
  bytes: Uint8Array;
  blob: Blob;
  metrics: ReconstructionMetrics;
}

/** Refuses NaN and Inf, naming the first offending position. */
export function checkFinite(matrix: Matrix, name: string): void {
  const { data, cols } = matrix;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new CarvqError(`${name}: value at row ${Math.floor(i / cols)}, column ${i % cols} is ${data[i]}; the table must be finite`);
  }
}

function checkOptions(matrix: Matrix, o: CompressOptions, name: string): void {
  const bad = (flag: string, value: number, expected: string) => new CarvqError(`${name}: --${flag} ${value} ${expected}`);
  if (matrix.rows < 1 || matrix.rows > F.MAX_ROWS) throw new CarvqError(`${name}: ${matrix.rows} rows; a blob holds 1 to ${F.MAX_ROWS}`);
  if (matrix.cols < 1 || matrix.cols > F.MAX_COLS) throw new CarvqError(`${name}: ${matrix.cols} columns; a blob holds 1 to ${F.MAX_COLS}`);
  if (o.method === "carvq") {
    if (!Number.isInteger(o.h) || o.h < 1 || o.h > F.MAX_SUBVEC) throw bad("h", o.h, `is out of range; expected 1 to ${F.MAX_SUBVEC}`);
    if (o.h > matrix.cols) throw bad("h", o.h, `is larger than the table's ${matrix.cols} columns`);
    if (!Number.isInteger(o.levels) || o.levels < 1 || o.levels > F.MAX_LEVELS) throw bad("levels", o.levels, `is out of range; expected 1 to ${F.MAX_LEVELS}`);
    if (!Number.isInteger(o.group) || o.group < 1 || o.group > 0xffffffff) throw bad("group", o.group, "is out of range; expected a positive whole number");
    if (!Number.isInteger(o.iters) || o.iters < 0) throw bad("iters", o.iters, "is out of range; expected 0 or more");
    if (!Number.isInteger(o.beam) || o.beam < 1 || o.beam > 256) throw bad("beam", o.beam, "is out of range; expected 1 to 256");
    if (!Number.isInteger(o.refine) || o.refine < 0) throw bad("refine", o.refine, "is out of range; expected 0 or more");
  } else if (!Number.isInteger(o.block) || o.block < 1 || o.block > F.MAX_SCALE_BLOCK) {
    throw bad("block", o.block, `is out of range; expected 1 to ${F.MAX_SCALE_BLOCK}`);
  }
}

function headerFor(matrix: Matrix, o: CompressOptions): BlobHeader {
  const common = { method: o.method, rows: matrix.rows, cols: matrix.cols };
  return o.method === "carvq"
    ? deriveHeader({ ...common, subvec: o.h, levels: o.levels, group: o.group, layout: o.layout })
    : deriveHeader({ ...common, subvec: 0, levels: 0, group: o.block, layout: "row" });
}

function rvqSections(matrix: Matrix, header: BlobHeader, o: CompressOptions, encoding: RvqEncoding): SectionBytes[] {
  const S = Math.ceil(matrix.cols / o.h);
  return [
    { id: F.SECTION_CODES, bytes: packNibbleRecords(encoding.codes, matrix.rows, S * o.levels, header.rowBytes) },
    { id: F.SECTION_CODEBOOKS, bytes: encodeCodebooks(encoding.codebooks) },
  ];
}

function scalarSections(matrix: Matrix, header: BlobHeader, o: CompressOptions, onProgress?: ProgressCallback): SectionBytes[] {
  const encoding = encodeScalar(matrix, SCALAR_BITS[o.method as keyof typeof SCALAR_BITS], o.block);
  onProgress?.(matrix.rows, matrix.rows);
  return [{ id: F.SECTION_CODES, bytes: packScalarRecords(encoding.scales, encoding.codes, matrix.rows, matrix.cols, encoding.blocks, header.codeBits, header.rowBytes) }];
}

/** The options that shaped the blob, as recorded in its metadata. */
function recordedOptions(o: CompressOptions): Record<string, unknown> {
  return o.method === "carvq" ? { method: o.method, h: o.h, levels: o.levels, group: o.group, layout: o.layout, iters: o.iters, seed: o.seed, beam: o.beam, refine: o.refine } : { method: o.method, block: o.block };
}

function roundMetric(value: number): number {
  return Number(value.toPrecision(6));
}

interface Plan {
  o: CompressOptions;
  header: BlobHeader;
  name: string;
}

function plan(matrix: Matrix, options: Partial<CompressOptions>, from: CompressSource): Plan {
  const o: CompressOptions = { ...DEFAULT_COMPRESS_OPTIONS, ...options };
  const name = from.source ?? "input";
  checkOptions(matrix, o, name);
  checkFinite(matrix, name);
  return { o, header: headerFor(matrix, o), name };
}

/** Measures the decode of the quantized sections, then seals the blob with its metadata. */
function finish(matrix: Matrix, { o, header, name }: Plan, sections: SectionBytes[], from: CompressSource): CompressResult {
  const metrics = reconstructionMetrics(matrix, decodeAll(parseBlob(assembleBlob(header, sections), name)));
  const metadata: BlobMetadata = {
    tool: "carvq",
    version: TOOL_VERSION,
    ...(from.source !== undefined ? { source: from.source.split(/[\\/]/).pop() } : {}),
    ...(from.tensor !== undefined ? { tensor: from.tensor } : {}),
    shape: [matrix.rows, matrix.cols],
    options: recordedOptions(o),
    metrics: { relMSE: roundMetric(metrics.relMSE), cosine: roundMetric(metrics.cosine) },
  };
  const bytes = assembleBlob(header, [...sections, { id: F.SECTION_METADATA, bytes: encodeMetadata(metadata) }]);
  return { bytes, blob: parseBlob(bytes, name), metrics };
}

/**
 * Compresses `matrix` into a complete blob on this thread. Deterministic: the same matrix, options
 * and seed give the same bytes. The metrics are measured on the blob's own decode, so `carvq eval`
 * reproduces them.
 */
export function compressMatrix(matrix: Matrix, options: Partial<CompressOptions> = {}, from: CompressSource = {}, onProgress?: ProgressCallback): CompressResult {
  const p = plan(matrix, options, from);
  const sections = p.o.method === "carvq" ? rvqSections(matrix, p.header, p.o, encodeRvq(matrix, p.o, p.header.groupCount, (done) => onProgress?.(done, p.header.groupCount))) : scalarSections(matrix, p.header, p.o, onProgress);
  return finish(matrix, p, sections, from);
}

/** `compressMatrix` with RVQ group fitting spread over `threads` worker threads; the same bytes. */
export async function compressMatrixParallel(matrix: Matrix, options: Partial<CompressOptions>, from: CompressSource, threads: number, onProgress?: ProgressCallback): Promise<CompressResult> {
  const p = plan(matrix, options, from);
  if (p.o.method !== "carvq") return finish(matrix, p, scalarSections(matrix, p.header, p.o, onProgress), from);
  const encoding = await encodeRvqParallel(matrix, p.o, p.header.groupCount, threads, (done) => onProgress?.(done, p.header.groupCount));
  return finish(matrix, p, rvqSections(matrix, p.header, p.o, encoding), from);
}
