// Bits per parameter: every byte of the blob counted, split by what it holds.
import * as F from "../../assembly/format.ts";
import type { Blob } from "../blob/reader.ts";

export interface BppBreakdown {
  /** 8 · file size / (V · n). */
  bpp: number;
  /** Bits per parameter of each part; they add up to `bpp`. */
  parts: { header: number; codes: number; codebooks: number; metadata: number; padding: number };
  bytes: { total: number; header: number; codes: number; codebooks: number; metadata: number; padding: number };
}

export function bitsPerParameter(blob: Blob): BppBreakdown {
  const length = (id: number) => blob.sections.find((s) => s.id === id)?.length ?? 0;
  const header = F.SECTION_TABLE_OFFSET + blob.sections.length * F.SECTION_ENTRY_BYTES;
  const codes = length(F.SECTION_CODES);
  const codebooks = length(F.SECTION_CODEBOOKS);
  const metadata = length(F.SECTION_METADATA);
  const bytes = { total: blob.byteLength, header, codes, codebooks, metadata, padding: blob.byteLength - header - codes - codebooks - metadata };
  const perParam = 8 / (blob.header.rows * blob.header.cols);
  return {
    bpp: bytes.total * perParam,
    parts: { header: header * perParam, codes: codes * perParam, codebooks: codebooks * perParam, metadata: metadata * perParam, padding: bytes.padding * perParam },
    bytes,
  };
}
