import { CarvqError } from "../errors.ts";
import { describeFirstBytes, printable, readBytes, type ModelFile } from "./modelFile.ts";
import type { TensorCatalog, TensorInfo } from "./tensor.ts";

/**
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
 * { dtype, shape, data_offsets: [begin, end] } (offsets relative to the byte after the header), then
 * the data. Optional "__metadata__" holds string pairs.
 */

/** The format's own reference implementation refuses headers above 100 MB; so do we, before allocating. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/** Cheap content test used by format detection: a plausible header length followed by '{'. */
export function looksLikeSafetensors(firstBytes: Uint8Array, fileSize: number): boolean {
  if (firstBytes.length < 9) return false;
  const headerLength = new DataView(firstBytes.buffer, firstBytes.byteOffset, 8).getBigUint64(0, true);
  return (
    headerLength >= 2n &&
    headerLength <= BigInt(MAX_SAFETENSORS_HEADER_BYTES) &&
    8n + headerLength <= BigInt(fileSize) &&
    firstBytes[8] === 0x7b
  );
}

/** Parses the header of a safetensors file and checks every tensor's byte range against the file size. */
export function readSafetensorsCatalog(file: ModelFile): TensorCatalog {
  const headerLength = readHeaderLength(file);
  const headerText = new TextDecoder().decode(readBytes(file, 8, headerLength, "JSON header"));
  const header = parseHeaderJson(file, headerText);
  const dataStart = 8 + headerLength;
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    tensors.push(parseEntry(file, name, entry, dataStart));
  }
  checkNoOverlap(file, tensors);
  return { format: "safetensors", tensors };
}

/**
 * Tensors' byte ranges may not overlap (the format's own reader refuses such headers too): a
 * lying range would otherwise hand back another tensor's bytes as this one's values.
 */
function checkNoOverlap(file: ModelFile, tensors: readonly TensorInfo[]): void {
  const spans = tensors
    .map((t) => ({ name: t.name, begin: t.offset, end: t.offset + t.byteLength }))
    .filter((s) => s.end > s.begin)
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  let last: (typeof spans)[number] | undefined;
  for (const span of spans) {
    if (last !== undefined && span.begin < last.end) {
      const dataStart = (t: { begin: number; end: number }) => `[${t.begin}, ${t.end})`;
      throw new CarvqError(
        `${file.path}: tensor '${printable(span.name)}' data at bytes ${dataStart(span)} overlaps tensor '${printable(last.name)}' at bytes ${dataStart(last)}; the header is wrong`,
      );
    }
    if (last === undefined || span.end > last.end) last = span;
  }
}

function readHeaderLength(file: ModelFile): number {
  if (file.size < 8)
    throw new CarvqError(`${file.path}: file has ${file.size} bytes; a safetensors file starts with an 8-byte header length`);
  const lengthBytes = readBytes(file, 0, 8, "header length");
  const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
    throw new CarvqError(
      `${file.path}: not a safetensors file (first bytes ${describeFirstBytes(lengthBytes)}): its header length is ${headerLength} bytes; expected at most ${MAX_SAFETENSORS_HEADER_BYTES}`,
    );
  }
  if (8n + headerLength > BigInt(file.size)) {
    throw new CarvqError(
      `${file.path}: safetensors header length is ${headerLength} bytes but the file has only ${file.size - 8} after it; the file is truncated or not safetensors`,
    );
  }
  return Number(headerLength);
}

function parseHeaderJson(file: ModelFile, text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CarvqError(
      `${file.path}: safetensors header is not valid JSON (${printable(err instanceof Error ? err.message : String(err))})`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CarvqError(
      `${file.path}: safetensors header is ${Array.isArray(parsed) ? "an array" : typeof parsed}; expected a JSON object of tensors`,
    );
  }
  return parsed as Record<string, unknown>;
}

function parseEntry(file: ModelFile, name: string, entry: unknown, dataStart: number): TensorInfo {
  const where = `${file.path}: tensor '${printable(name)}'`;
  if (typeof entry !== "object" || entry === null) throw new CarvqError(`${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string")
    throw new CarvqError(`${where}: dtype is ${printable(JSON.stringify(dtype) ?? String(dtype))}; expected a string such as "F16"`);
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new CarvqError(`${where}: shape is ${JSON.stringify(shape)}; expected an array of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw new CarvqError(`${where}: data_offsets is ${JSON.stringify(offsets)}; expected [begin, end] with 0 <= begin <= end`);
  }
  const [begin, end] = offsets as number[];
  if (dataStart + end > file.size) {
    throw new CarvqError(
      `${where}: data_offsets [${begin}, ${end}] end at byte ${dataStart + end} but the file has ${file.size} bytes; the file is truncated or its header is wrong`,
    );
  }
  return {
    name,
    dtype,
    shape: shape as number[],
    file: file.path,
    offset: dataStart + begin,
    byteLength: end - begin,
    declaredBy: "data_offsets",
  };
}

/** A JSON number usable as a size or offset: a non-negative safe integer. */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
