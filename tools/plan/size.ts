// The size of a blob before it is made: header, section table, alignment padding, codes,
// codebooks, row scales and metadata, for a table shape and compress options, without fitting
// anything. Used by auto-configuration to spend a bit budget to the byte.
//
// Every section but METADATA has a length fixed by the header (docs/FORMAT.md). The metadata is
// the compact JSON `compressMatrix` writes; to stay exact as that JSON evolves, it is made by the
// same function (blobMetadata) with placeholder metrics. Only the measured metrics
// (relMSE, cosine, rounded to 6 significant digits) cannot be known in advance; each takes 1 to
// 14 characters of JSON, so without them the prediction is a range of at most ~26 bytes
// ([minBytes, maxBytes]). Given the metrics, the prediction is exact.
import * as F from "../../assembly/format.ts";
import type { BlobHeader } from "../blob/header.ts";
import { encodeMetadata } from "../blob/metadata.ts";
import {
  blobMetadata,
  DEFAULT_COMPRESS_OPTIONS,
  headerFor,
  planCompression,
  type CompressOptions,
  type CompressSource,
} from "../compress.ts";
import type { Matrix } from "../matrix.ts";
import { RVQ_METHOD } from "../quant/methods.ts";

export interface TableShape {
  rows: number;
  cols: number;
}

export interface SizePrediction {
  /** The blob's size in bytes: exact when metrics were given, else the upper bound (`maxBytes`). */
  bytes: number;
  /** Smallest possible size (metrics of one character each). */
  minBytes: number;
  /** Largest possible size (metrics of the widest JSON form: 13 characters for relMSE < 1e6, 14 for cosine). */
  maxBytes: number;
  /** 8 · bytes / (rows · cols). */
  bpp: number;
  /** True when the metrics were given: `bytes` is then the exact size. */
  exact: boolean;
  header: BlobHeader;
  /** Bytes of each part; they add up to `bytes`. */
  parts: { header: number; codes: number; codebooks: number; rowScales: number; metadata: number; padding: number };
}

/** Metric values as they are stored (6 significant digits), or nothing for the bounds. */
export interface MetricValues {
  relMSE: number;
  cosine: number;
}

/** JSON characters of a metric, as `compressMatrix` rounds it. */
function metricChars(value: number): number {
  return JSON.stringify(Number(value.toPrecision(6))).length;
}
/** Widest JSON of a 6-digit number in [0, 1e6): "0.00000123457"; with a sign (cosine) one more. */
const MAX_METRIC_CHARS: Record<string, number> = { relMSE: 13, cosine: 14 };
const DEFAULT_MAX_METRIC_CHARS = 14;

interface StandIn {
  /** Section ids in the order the writer emits them. */
  ids: number[];
  /** Lengths of the sections whose size does not depend on the row count (ROW_SCALES). */
  fixed: Map<number, number>;
  /** The metadata JSON object (shape and metrics to be replaced). */
  metadata: Record<string, unknown>;
}

/** A few deterministic, distinct rows of the given width, to check the options against. */
function standInMatrix(rows: number, cols: number): Matrix {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.7 + 0.3) * (1 + (i % 7));
  return { rows, cols, data };
}

/**
 * The sections and metadata of a blob with these options, after the same checks compressMatrix
 * makes. The adaptor's sections are not predicted (auto-configuration does not choose one).
 */
function standIn(cols: number, o: CompressOptions, from: CompressSource): StandIn {
  const { weights, ...rest } = o;
  const rows = 2;
  // The stages that need a model (restarts, kl-encode, tune-kl) change values only: the check
  // runs without them, and the metadata records the options as the real blob's will.
  planCompression(
    standInMatrix(rows, cols),
    { ...rest, ...(weights ? { weights: new Float32Array(rows).fill(1) } : {}), restarts: 1, klEncode: 0, tuneKl: 0 },
    from,
  );
  const rowScaled = o.method === RVQ_METHOD && o.rowScaleCount > 0;
  const ids =
    o.method === RVQ_METHOD ? [F.SECTION_CODES, F.SECTION_CODEBOOKS, ...(rowScaled ? [F.SECTION_ROW_SCALES] : [])] : [F.SECTION_CODES];
  const fixed = new Map<number, number>(rowScaled ? [[F.SECTION_ROW_SCALES, 2 * o.rowScaleCount]] : []);
  const metadata = blobMetadata({ rows, cols }, o, from, { relMSE: 0, cosine: 0 }) as Record<string, unknown>;
  return { ids: [...ids, F.SECTION_METADATA], fixed, metadata };
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/**
 * Predicts the blob `compressMatrix(matrix, options, from)` writes for a `shape.rows x shape.cols`
 * matrix. `from` matters (source file name and tensor are in the metadata). With `metrics` (the
 * values compressMatrix measured) the size is exact; without, `bytes` is the upper bound.
 */
export function predictBlobSize(
  shape: TableShape,
  options: Partial<CompressOptions>,
  from: CompressSource = {},
  metrics?: MetricValues,
): SizePrediction {
  const o: CompressOptions = { ...DEFAULT_COMPRESS_OPTIONS, ...options };
  const header = headerFor(shape, o);
  const s = standIn(shape.cols, o, from);
  let metadataMin = 0;
  let metadataMax = 0;
  {
    const storedMetrics = (s.metadata.metrics ?? {}) as Record<string, number>;
    const placeholders: Record<string, number> = {};
    let given = 0;
    let most = 0;
    for (const name of Object.keys(storedMetrics)) {
      placeholders[name] = 0; // one character each in the base JSON
      const value = (metrics as Record<string, number | undefined> | undefined)?.[name];
      if (value !== undefined) {
        given += metricChars(value) - 1;
      } else {
        most += (MAX_METRIC_CHARS[name] ?? DEFAULT_MAX_METRIC_CHARS) - 1;
      }
    }
    const base = encodeMetadata({
      ...(s.metadata as { tool: string; version: string }),
      shape: [shape.rows, shape.cols],
      ...(s.metadata.metrics !== undefined ? { metrics: placeholders } : {}),
    }).length;
    metadataMin = base + given;
    metadataMax = base + given + most;
  }
  const lengthOf = (id: number, metadataBytes: number): number => {
    if (id === F.SECTION_CODES) return shape.rows * header.rowBytes;
    if (id === F.SECTION_CODEBOOKS) return header.groupCount * header.levels * header.codebookSize * header.subvec * 2;
    if (id === F.SECTION_METADATA) return metadataBytes;
    return s.fixed.get(id) ?? 0;
  };
  const layout = (metadataBytes: number) => {
    let cursor = F.SECTION_TABLE_OFFSET + s.ids.length * F.SECTION_ENTRY_BYTES;
    for (const id of s.ids) cursor = alignUp(cursor, F.SECTION_ALIGN) + lengthOf(id, metadataBytes);
    return cursor;
  };
  const minBytes = layout(metadataMin);
  const maxBytes = layout(metadataMax);
  const exact = metrics !== undefined || minBytes === maxBytes;
  const bytes = maxBytes;
  const headerBytes = F.SECTION_TABLE_OFFSET + s.ids.length * F.SECTION_ENTRY_BYTES;
  const codes = lengthOf(F.SECTION_CODES, 0);
  const codebooks = s.ids.includes(F.SECTION_CODEBOOKS) ? lengthOf(F.SECTION_CODEBOOKS, 0) : 0;
  const rowScales = s.fixed.get(F.SECTION_ROW_SCALES) ?? 0;
  const metadata = metadataMax;
  return {
    bytes,
    minBytes,
    maxBytes,
    bpp: (8 * bytes) / (shape.rows * shape.cols),
    exact,
    header,
    parts: {
      header: headerBytes,
      codes,
      codebooks,
      rowScales,
      metadata,
      padding: bytes - headerBytes - codes - codebooks - rowScales - metadata,
    },
  };
}
