// Bits per parameter: every byte of the blob counted, split by what it holds.
import * as F from "../../assembly/format.ts";
import type { Blob } from "../blob/reader.ts";

/** What a blob's bytes hold; padding is what no section claims (alignment between sections). */
export interface BppParts {
  header: number;
  codes: number;
  codebooks: number;
  rowScales: number;
  /** The corrective adaptor: its per-token table and its MLP (v1.2). */
  adaptor: number;
  metadata: number;
  padding: number;
}

export interface BppBreakdown {
  /** 8 · file size / (V · n). */
  bpp: number;
  /** Bits per parameter of each part; they add up to `bpp`. */
  parts: BppParts;
  bytes: BppParts & { total: number };
}

export function bitsPerParameter(blob: Blob): BppBreakdown {
  const length = (id: number) => blob.sections.filter((s) => s.id === id).reduce((sum, s) => sum + s.length, 0);
  const claimed: Omit<BppParts, "padding"> = {
    header: F.SECTION_TABLE_OFFSET + blob.sections.length * F.SECTION_ENTRY_BYTES,
    codes: length(F.SECTION_CODES),
    codebooks: length(F.SECTION_CODEBOOKS),
    rowScales: length(F.SECTION_ROW_SCALES),
    adaptor: length(F.SECTION_ADAPTOR_TABLE) + length(F.SECTION_ADAPTOR_MLP),
    metadata: length(F.SECTION_METADATA),
  };
  const padding = blob.byteLength - Object.values(claimed).reduce((sum, v) => sum + v, 0);
  const bytes = { total: blob.byteLength, ...claimed, padding };
  const perParam = 8 / (blob.header.rows * blob.header.cols);
  const parts = Object.fromEntries(Object.entries({ ...claimed, padding }).map(([k, v]) => [k, v * perParam])) as unknown as BppParts;
  return { bpp: bytes.total * perParam, parts, bytes };
}
