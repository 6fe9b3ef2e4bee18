import { readFileSync, statSync } from "node:fs";
import * as F from "../../assembly/format.ts";
import { crc32 } from "../crc32.ts";
import { F16_TO_F32 } from "../fp16.ts";
import { CarvqError } from "../errors.ts";
import type { StoredAdaptor } from "../adaptor/model.ts";
import { decodeAdaptor } from "./adaptor.ts";
import { decodeCodebooks } from "./codebooks.ts";
import { checkMagicAndVersion, decodeHeader, type BlobHeader } from "./header.ts";
import { decodeMetadata, MAX_METADATA_BYTES, type BlobMetadata } from "./metadata.ts";
import { headerCrc } from "./writer.ts";
import { RVQ_METHOD } from "../quant/methods.ts";

export interface SectionEntry {
  id: number;
  crc: number;
  offset: number;
  length: number;
}

/** A validated blob, its sections as views into the file's bytes. */
export interface Blob {
  name: string;
  byteLength: number;
  header: BlobHeader;
  sections: SectionEntry[];
  /** The CODES section: `rows` records of `rowBytes`. */
  codes: Uint8Array;
  /** RVQ: every centroid value as an FP16 bit pattern (FORMAT.md order); null for scalar methods. */
  codebooks: Uint16Array | null;
  metadata: BlobMetadata | null;
  /** v1.1 gain-shape: the f32 values of the ROW_SCALES section; null when absent. */
  rowScales: Float32Array | null;
  /** v1.2 corrective adaptor; null when absent. */
  adaptor: StoredAdaptor | null;
}

export const SECTION_NAMES: Record<number, string> = {
  [F.SECTION_CODES]: "CODES",
  [F.SECTION_CODEBOOKS]: "CODEBOOKS",
  [F.SECTION_METADATA]: "METADATA",
  [F.SECTION_ROW_SCALES]: "ROW_SCALES",
  [F.SECTION_ADAPTOR_TABLE]: "ADAPTOR_TABLE",
  [F.SECTION_ADAPTOR_MLP]: "ADAPTOR_MLP",
};

/** "1 (CODES), 2 (CODEBOOKS), ... or 6 (ADAPTOR_MLP)", for messages. */
const KNOWN_SECTIONS = Object.entries(SECTION_NAMES)
  .map(([id, label]) => `${id} (${label})`)
  .join(", ")
  .replace(/, ([^,]*)$/, " or $1");

function readSectionTable(bytes: Uint8Array, view: DataView, name: string): SectionEntry[] {
  const count = view.getUint32(F.H_SECTION_COUNT, true);
  if (count < 1 || count > F.MAX_SECTIONS)
    throw new CarvqError(`${name}: header field section_count is ${count}; expected 1 to ${F.MAX_SECTIONS}`);
  const tableEnd = F.SECTION_TABLE_OFFSET + count * F.SECTION_ENTRY_BYTES;
  if (tableEnd > bytes.length) throw new CarvqError(`${name}: truncated: section table needs ${tableEnd} bytes, file has ${bytes.length}`);
  const storedCrc = view.getUint32(F.H_HEADER_CRC, true);
  const actualCrc = headerCrc(bytes, count);
  if (storedCrc !== actualCrc)
    throw new CarvqError(
      `${name}: header checksum mismatch (stored 0x${storedCrc.toString(16)}, computed 0x${actualCrc.toString(16)}): the blob is corrupted`,
    );
  const entries: SectionEntry[] = [];
  let previousEnd = tableEnd;
  for (let i = 0; i < count; i++) {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    const id = view.getUint32(at + F.S_ID, true);
    const offset = view.getBigUint64(at + F.S_OFFSET, true);
    const length = view.getBigUint64(at + F.S_LENGTH, true);
    const label = `section ${i} (${SECTION_NAMES[id] ?? `id ${id}`})`;
    if (!(id in SECTION_NAMES)) throw new CarvqError(`${name}: ${label}: unknown section id ${id}; expected ${KNOWN_SECTIONS}`);
    if (entries.some((e) => e.id === id)) throw new CarvqError(`${name}: ${label}: section id ${id} appears twice`);
    // BigInt arithmetic: a lying u64 offset cannot wrap around.
    if (offset % BigInt(F.SECTION_ALIGN) !== 0n)
      throw new CarvqError(`${name}: ${label}: offset ${offset} is not a multiple of ${F.SECTION_ALIGN}`);
    if (offset < BigInt(previousEnd))
      throw new CarvqError(`${name}: ${label}: offset ${offset} overlaps the header, table or previous section (ends at ${previousEnd})`);
    if (offset + length > BigInt(bytes.length))
      throw new CarvqError(`${name}: ${label}: offset ${offset} + length ${length} runs past the end of the file (${bytes.length} bytes)`);
    for (let gap = previousEnd; gap < Number(offset); gap++) {
      if (bytes[gap] !== 0)
        throw new CarvqError(`${name}: ${label}: byte ${gap} in the padding before it is ${bytes[gap]}; padding must be zero`);
    }
    entries.push({ id, crc: view.getUint32(at + F.S_CRC, true), offset: Number(offset), length: Number(length) });
    previousEnd = Number(offset + length);
  }
  if (previousEnd !== bytes.length)
    throw new CarvqError(`${name}: file is ${bytes.length} bytes but its last section ends at ${previousEnd}: trailing bytes`);
  return entries;
}

function expectedLength(id: number, header: BlobHeader): number | null {
  if (id === F.SECTION_CODES) return header.rows * header.rowBytes;
  if (id === F.SECTION_CODEBOOKS) return header.groupCount * header.levels * header.codebookSize * header.subvec * 2;
  return null;
}

/** Validates a whole blob held in memory (FORMAT.md, every rule) and returns its parts. */
export function parseBlob(bytes: Uint8Array, name: string): Blob {
  if (bytes.length < F.HEADER_BYTES)
    throw new CarvqError(`${name}: truncated: ${bytes.length} bytes, a blob header alone is ${F.HEADER_BYTES}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  checkMagicAndVersion(view, name);
  const sections = readSectionTable(bytes, view, name);
  const has = (id: number) => sections.some((s) => s.id === id);
  if (has(F.SECTION_ADAPTOR_TABLE) !== has(F.SECTION_ADAPTOR_MLP))
    throw new CarvqError(`${name}: ADAPTOR_TABLE and ADAPTOR_MLP sections must come together; only one is present`);
  const header = decodeHeader(view, name, has(F.SECTION_ROW_SCALES), has(F.SECTION_ADAPTOR_MLP));
  const byId = new Map<number, Uint8Array>();
  for (const entry of sections) {
    const label = SECTION_NAMES[entry.id];
    const expected = expectedLength(entry.id, header);
    if (expected !== null && entry.length !== expected)
      throw new CarvqError(`${name}: ${label} section is ${entry.length} bytes; expected ${expected} for this header`);
    if (entry.id === F.SECTION_ROW_SCALES && (entry.length < 2 || entry.length > 2 * F.MAX_ROW_SCALES || entry.length % 2 !== 0)) {
      throw new CarvqError(
        `${name}: ROW_SCALES section is ${entry.length} bytes; expected an even number from 2 to ${2 * F.MAX_ROW_SCALES}`,
      );
    }
    if (entry.id === F.SECTION_METADATA && entry.length > MAX_METADATA_BYTES)
      throw new CarvqError(`${name}: METADATA section is ${entry.length} bytes; at most ${MAX_METADATA_BYTES} allowed`);
    const data = bytes.subarray(entry.offset, entry.offset + entry.length);
    const actual = crc32(data);
    if (actual !== entry.crc)
      throw new CarvqError(
        `${name}: ${label} section checksum mismatch (stored 0x${entry.crc.toString(16)}, computed 0x${actual.toString(16)}): the blob is corrupted`,
      );
    byId.set(entry.id, data);
  }
  const codes = byId.get(F.SECTION_CODES);
  if (codes === undefined) throw new CarvqError(`${name}: CODES section is missing`);
  const codebookBytes = byId.get(F.SECTION_CODEBOOKS);
  if (header.method === RVQ_METHOD && codebookBytes === undefined)
    throw new CarvqError(`${name}: CODEBOOKS section is missing (required for an RVQ blob)`);
  if (header.method !== RVQ_METHOD && codebookBytes !== undefined)
    throw new CarvqError(`${name}: CODEBOOKS section present in a ${header.method} blob`);
  const rowScaleBytes = byId.get(F.SECTION_ROW_SCALES);
  if (header.method !== RVQ_METHOD && rowScaleBytes !== undefined)
    throw new CarvqError(`${name}: ROW_SCALES section present in a ${header.method} blob`);
  const rowScales = rowScaleBytes ? Float32Array.from(decodeCodebooks(rowScaleBytes), (half) => F16_TO_F32[half]) : null;
  if (rowScales !== null) checkRowScaleIndices(codes, header, rowScales.length, name);
  const adaptorTable = byId.get(F.SECTION_ADAPTOR_TABLE);
  const adaptorMlp = byId.get(F.SECTION_ADAPTOR_MLP);
  if (header.method !== RVQ_METHOD && adaptorMlp !== undefined)
    throw new CarvqError(`${name}: adaptor sections present in a ${header.method} blob`);
  const adaptor = adaptorTable && adaptorMlp ? decodeAdaptor(adaptorTable, adaptorMlp, header.rows, header.cols, name) : null;
  const metadataBytes = byId.get(F.SECTION_METADATA);
  return {
    name,
    byteLength: bytes.length,
    header,
    sections,
    codes,
    codebooks: codebookBytes ? decodeCodebooks(codebookBytes) : null,
    metadata: metadataBytes ? decodeMetadata(metadataBytes, name) : null,
    rowScales,
    adaptor,
  };
}

/** Every record's row-scale index (its first byte) must name one of the `count` scales. */
function checkRowScaleIndices(codes: Uint8Array, header: BlobHeader, count: number, name: string): void {
  for (let t = 0; t < header.rows; t++) {
    const index = codes[t * header.rowBytes];
    if (index >= count) throw new CarvqError(`${name}: token ${t} has row-scale index ${index}; the ROW_SCALES section holds ${count}`);
  }
}

/** Largest blob file `readBlobFile` loads into memory. */
const MAX_BLOB_FILE_BYTES = 4 * 1024 ** 3;

/** Reads and validates a blob file; every failure is a CarvqError naming the file. */
export function readBlobFile(path: string): Blob {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new CarvqError(`${path}: not a file`);
    size = stat.size;
  } catch (err) {
    if (err instanceof CarvqError) throw err;
    throw new CarvqError(`${path}: cannot read blob (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (size > MAX_BLOB_FILE_BYTES)
    throw new CarvqError(`${path}: ${size} bytes is larger than the ${MAX_BLOB_FILE_BYTES}-byte limit for a blob`);
  return parseBlob(new Uint8Array(readFileSync(path)), path);
}
