// carvq's Node API: read a table from a model file, compress it to a blob, parse a blob, decode it
// and evaluate it against the original; and open a blob in the WASM runtime to look tokens up. Every entry point is async and takes an options object;
// the CLI (tools/cli/) is built on these same functions. Bundled to dist/index.mjs, typed by
// dist/index.d.ts.
import { parseBlob as parseBlobBytes, readBlobFile, type Blob } from "./blob/reader.ts";
import {
  compressMatrix,
  type CompressEvents,
  type CompressOptions,
  type CompressResult,
  type CompressSource,
  type ProgressCallback,
} from "./compress.ts";
import { decodeAll, decodeTokens } from "./decoder.ts";
import { evaluateBlob, type Evaluation } from "./eval/evaluate.ts";
import type { Matrix } from "./matrix.ts";
import { loadMatrix, type LoadedMatrix } from "./readers/index.ts";

export type { Blob, CompressEvents, CompressOptions, CompressResult, Evaluation, LoadedMatrix, Matrix, ProgressCallback };
export type { BlobHeader } from "./blob/header.ts";
export type { BlobMetadata } from "./blob/metadata.ts";
export type { ModelFormat } from "./readers/index.ts";
export type { ReconstructionMetrics } from "./quant/metrics.ts";
export type { MethodName } from "./quant/methods.ts";
export type { LayoutName } from "./quant/layout.ts";
export type { AdaptorSpec } from "./adaptor/sizing.ts";
export type { TableObjective } from "./quant/objective.ts";
export { CarvqError } from "./errors.ts";
// The runtime as a library: open a blob once, look tokens up at every step (host/table.ts; browsers
// import it alone as "carvq/table").
export { openTable, RUNTIME_EXIT } from "../host/table.ts";
export type { OpenTableOptions, Table, TableBuild, TableMode } from "../host/table.ts";

export interface ReadTableOptions {
  /** The tensor to read; default: the token embedding, found by its usual names. */
  tensor?: string;
}

/** Reads a model file's token embedding (or `options.tensor`) as a float32 table: safetensors, GGUF, .npy or a llama2.c checkpoint. */
export async function readTable(path: string, options: ReadTableOptions = {}): Promise<LoadedMatrix> {
  return loadMatrix(path, options);
}

export interface CompressTableOptions extends Partial<CompressOptions>, CompressSource {
  /** Worker threads for fitting (default 1); the blob is the same for any number. */
  threads?: number;
  onProgress?: ProgressCallback;
  events?: CompressEvents;
}

/** Compresses a table into a blob's bytes (deterministic for the same table, options and seed), with its parsed form and measured error. */
export async function compress(table: Matrix, options: CompressTableOptions = {}): Promise<CompressResult> {
  const { threads, onProgress, events, source, tensor, sourceDtype, sourceBitsPerWeight, objective, ...compressOptions } = options;
  return compressMatrix(
    table,
    compressOptions,
    { source, tensor, sourceDtype, sourceBitsPerWeight, objective },
    { threads, onProgress, events },
  );
}

export interface ParseBlobOptions {
  /** The name errors give the blob (default "blob"). */
  name?: string;
}

/** Validates a blob (bytes, or a file path) against every rule of docs/FORMAT.md; a CarvqError names the first broken one. */
export async function parseBlob(source: Uint8Array | string, options: ParseBlobOptions = {}): Promise<Blob> {
  return typeof source === "string" ? readBlobFile(source) : parseBlobBytes(source, options.name ?? "blob");
}

export interface DecodeOptions {
  /** The tokens to decode, in this order (default: every row). */
  tokens?: ArrayLike<number>;
}

/** Decodes a blob's rows as the runtime does, bit for bit: the whole table, or `options.tokens`' rows in order. */
export async function decode(blob: Blob, options: DecodeOptions = {}): Promise<Matrix> {
  if (options.tokens === undefined) return decodeAll(blob);
  return { rows: options.tokens.length, cols: blob.header.cols, data: decodeTokens(blob, options.tokens) };
}

export interface EvaluateOptions {
  /** The original table the blob was made from. */
  reference: Matrix;
  /** Its name in messages (default "reference"). */
  referenceName?: string;
}

/** A blob's size (bits per parameter, every byte counted) and error against the original table: relMSE, cosine, nearest-neighbour overlap. */
export async function evaluate(blob: Blob, options: EvaluateOptions): Promise<Evaluation> {
  return evaluateBlob(blob, options.reference, options.referenceName ?? "reference");
}
