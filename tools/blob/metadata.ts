// The METADATA section: UTF-8 JSON that describes where a blob came from. Informative only.
import { CarvqError } from "../errors.ts";

/** Largest metadata section a reader accepts (FORMAT.md). */
export const MAX_METADATA_BYTES = 1 << 20;

export interface BlobMetadata {
  tool: string;
  version: string;
  source?: string;
  tensor?: string;
  /** The table's stored type in the source and its bits per weight, when not float32 (e.g. "Q4_K", 4.5). */
  sourceDtype?: string;
  sourceBpw?: number;
  shape?: [number, number];
  options?: Record<string, unknown>;
  metrics?: Record<string, number>;
  [key: string]: unknown;
}

/** Compact JSON: metadata bytes count toward bits per parameter like any others. */
export function encodeMetadata(metadata: BlobMetadata): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(metadata));
}

export function decodeMetadata(bytes: Uint8Array, name: string): BlobMetadata {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new CarvqError(`${name}: METADATA section is not valid UTF-8 JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new CarvqError(`${name}: METADATA section is not a JSON object`);
  return parsed as BlobMetadata;
}
