import { CarvqError } from "../errors.ts";
import { GGML_REMOVED_TYPES, GGML_TYPES } from "./gguf-blocks.ts";
import { describeFirstBytes, printable, readBytes, readExactInto, type ModelFile } from "./modelFile.ts";
import type { TensorCatalog, TensorInfo } from "./tensor.ts";

/**
 * GGUF v2/v3 (llama.cpp): magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the
 * metadata key/value pairs, the tensor infos (name, n_dims, ne[] fastest-varying first, ggml type,
 * u64 offset relative to the data section), then the data section, aligned to general.alignment.
 *
 * The header is parsed by a cursor that reads the file in small windows: metadata values we do not
 * need (tokenizer vocabularies can be megabytes) are skipped by length without being read, and
 * every length and count is checked against the bytes left in the file before anything is
 * allocated or looped over, so a hostile header cannot make the reader allocate or spin.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Caps on what the parser materializes; skipped values are bounded by the file size instead. */
const MAX_KEY_BYTES = 65_536;
const MAX_TENSOR_NAME_BYTES = 65_536;
const MAX_TENSOR_COUNT = 1_000_000;
const MAX_METADATA_COUNT = 1_000_000;
const MAX_DIMS = 4; // GGML_MAX_DIMS
const MAX_ARRAY_NESTING = 8;
const MAX_ALIGNMENT = 1 << 24;

const UNQUANTIZED_TYPES = new Set(["F32", "F16", "BF16", "I8", "I16", "I32", "I64", "F64"]);

/** Metadata value types (gguf_type) and the byte size of the fixed-size ones. */
const ValueType = { U32: 4, I32: 5, STRING: 8, ARRAY: 9, U64: 10, I64: 11 } as const;
const FIXED_VALUE_BYTES: Readonly<Record<number, number>> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** One tensor info as the file states it, before conversion to the shared TensorInfo. */
export interface GgufTensorInfo {
  readonly name: string;
  /** ne[] as stored: fastest-varying dimension first (a [n_embd, n_vocab] ne is n_vocab rows of n_embd). */
  readonly ne: readonly number[];
  readonly typeId: number;
  readonly typeName: string;
  /** Absolute byte offset of the tensor's data in the file. */
  readonly offset: number;
  /** Bytes the data takes (whole blocks for block types); undefined for a type id ggml does not define. */
  readonly byteLength?: number;
}

export interface GgufHeader {
  readonly version: number;
  readonly alignment: number;
  readonly architecture?: string;
  readonly dataStart: number;
  readonly tensors: readonly GgufTensorInfo[];
}

/** Reads a GGUF file's header: version, alignment, architecture and tensor infos (metadata otherwise skipped). */
export function readGgufHeader(file: ModelFile): GgufHeader {
  const cursor = new Cursor(file);
  const magic = cursor.u32("magic");
  if (magic !== GGUF_MAGIC)
    throw new CarvqError(
      `${file.path}: not a GGUF file (first bytes ${describeFirstBytes(readBytes(file, 0, Math.min(8, file.size), "first bytes"))}); expected the magic "GGUF"`,
    );
  const version = readVersion(cursor);
  const tensorCount = cursor.count("tensor count", MAX_TENSOR_COUNT, 32);
  const metadataCount = cursor.count("metadata count", MAX_METADATA_COUNT, 13);
  const metadata = readMetadata(cursor, metadataCount);
  const infos = [];
  for (let i = 0; i < tensorCount; i++) infos.push(readTensorInfo(cursor, i));
  const dataStart = alignUp(cursor.position, metadata.alignment);
  const tensors = infos.map((info) => locateTensor(file, info, dataStart, metadata.alignment));
  checkNoOverlap(file, tensors);
  return { version, alignment: metadata.alignment, architecture: metadata.architecture, dataStart, tensors };
}

/**
 * No tensor may run into another tensor's data (ggml's own loader requires the tensors to be laid
 * out one after another): a lying dimension would otherwise hand back the next tensor's bytes as
 * rows of this one. A tensor of an unknown type counts by its start only.
 */
function checkNoOverlap(file: ModelFile, tensors: readonly GgufTensorInfo[]): void {
  const ordered = [...tensors].sort((a, b) => a.offset - b.offset);
  let end = -1;
  let owner: GgufTensorInfo | undefined;
  for (const t of ordered) {
    if (owner !== undefined && t.offset < end) {
      throw new CarvqError(
        `${file.path}: tensor '${printable(owner.name)}' (${owner.typeName} [${owner.ne.join(", ")}] at byte ${owner.offset}) runs into tensor '${printable(t.name)}' at byte ${t.offset}; the header is wrong`,
      );
    }
    if (t.byteLength !== undefined && t.offset + t.byteLength > end) {
      end = t.offset + t.byteLength;
      owner = t;
    }
  }
}

/** The tensors of a GGUF file in the shape every format shares (outermost dimension first). */
export function readGgufCatalog(file: ModelFile): TensorCatalog {
  const header = readGgufHeader(file);
  const tensors: TensorInfo[] = header.tensors.map((t) => ({
    name: t.name,
    dtype: t.typeName,
    shape: [...t.ne].reverse(),
    file: file.path,
    offset: t.offset,
    byteLength: t.byteLength ?? 0,
    quantized: !UNQUANTIZED_TYPES.has(t.typeName),
  }));
  return { format: "gguf", tensors };
}

function readVersion(cursor: Cursor): number {
  const version = cursor.u32("version");
  if (version === 2 || version === 3) return version;
  const hint =
    version === 1
      ? " (GGUF v1 used 32-bit lengths; re-convert the model with a current llama.cpp)"
      : (version & 0xffff) === 0
        ? " (this looks like a big-endian GGUF, which is not supported)"
        : "";
  throw new CarvqError(`${cursor.file.path}: GGUF version is ${version}; expected 2 or 3${hint}`);
}

interface NeededMetadata {
  alignment: number;
  architecture?: string;
}

function readMetadata(cursor: Cursor, count: number): NeededMetadata {
  const needed: NeededMetadata = { alignment: GGUF_DEFAULT_ALIGNMENT };
  for (let i = 0; i < count; i++) {
    const key = cursor.string(`metadata key #${i}`, MAX_KEY_BYTES);
    const type = cursor.u32(`metadata '${printable(key)}' type`);
    if (key === "general.alignment") needed.alignment = readAlignment(cursor, type);
    else if (key === "general.architecture" && type === ValueType.STRING)
      needed.architecture = cursor.string(`metadata '${printable(key)}'`, MAX_KEY_BYTES);
    else skipValue(cursor, type, `metadata '${printable(key)}'`, 0);
  }
  return needed;
}

function readAlignment(cursor: Cursor, type: number): number {
  const where = `${cursor.file.path}: metadata 'general.alignment'`;
  // llama.cpp writes a u32; accept the other 32- and 64-bit integer types too.
  let alignment: bigint;
  if (type === ValueType.U32 || type === ValueType.I32) alignment = BigInt(cursor.u32("general.alignment"));
  else if (type === ValueType.U64 || type === ValueType.I64) alignment = cursor.u64("general.alignment");
  else throw new CarvqError(`${where} has value type ${type}; expected an integer (u32)`);
  if (alignment < 1n || alignment > BigInt(MAX_ALIGNMENT) || (alignment & (alignment - 1n)) !== 0n) {
    throw new CarvqError(`${where} is ${alignment}; expected a power of two between 1 and ${MAX_ALIGNMENT}`);
  }
  return Number(alignment);
}

/** Skips one metadata value of `type` without reading it when its size is known up front. */
function skipValue(cursor: Cursor, type: number, what: string, depth: number): void {
  const fixed = FIXED_VALUE_BYTES[type];
  if (fixed !== undefined) return cursor.skip(fixed, what);
  if (type === ValueType.STRING) return cursor.skip(cursor.u64Length(what), what);
  if (type !== ValueType.ARRAY) throw new CarvqError(`${cursor.file.path}: ${what} has value type ${type}; expected 0..12`);
  if (depth >= MAX_ARRAY_NESTING)
    throw new CarvqError(`${cursor.file.path}: ${what} nests arrays ${depth + 1} deep; expected at most ${MAX_ARRAY_NESTING}`);
  const elementType = cursor.u32(`${what} element type`);
  const elementFixed = FIXED_VALUE_BYTES[elementType];
  // Every element takes at least this many bytes, so the count can be checked against the file size.
  const minElementBytes = elementFixed ?? (elementType === ValueType.STRING ? 8 : 12);
  const length = cursor.count(`${what} array length`, Number.MAX_SAFE_INTEGER, minElementBytes);
  if (elementFixed !== undefined) return cursor.skip(length * elementFixed, what);
  for (let i = 0; i < length; i++) skipValue(cursor, elementType, `${what}[${i}]`, depth + 1);
}

/** A tensor info as read, its offset still relative to the data section. */
interface RawTensorInfo {
  readonly name: string;
  readonly ne: readonly number[];
  readonly typeId: number;
  readonly typeName: string;
  readonly relativeOffset: bigint;
}

function readTensorInfo(cursor: Cursor, index: number): RawTensorInfo {
  const name = cursor.string(`tensor info #${index} name`, MAX_TENSOR_NAME_BYTES);
  const where = `tensor '${printable(name)}'`;
  const nDims = cursor.u32(`${where} n_dims`);
  if (nDims < 1 || nDims > MAX_DIMS) throw new CarvqError(`${cursor.file.path}: ${where} has n_dims ${nDims}; expected 1..${MAX_DIMS}`);
  const ne: number[] = [];
  for (let d = 0; d < nDims; d++) ne.push(cursor.dimension(`${where} ne[${d}]`));
  const typeId = cursor.u32(`${where} type`);
  const typeName = GGML_TYPES[typeId]?.name ?? GGML_REMOVED_TYPES[typeId] ?? `unknown ggml type ${typeId}`;
  const relativeOffset = cursor.u64(`${where} offset`);
  return { name, ne, typeId, typeName, relativeOffset };
}

/**
 * Turns a tensor's relative offset into an absolute one and checks that all of its data lies in the
 * file, as the safetensors reader checks every tensor's data_offsets: a file cut short anywhere in
 * its data section is refused, not only when the cut reaches the tensor being read.
 */
function locateTensor(file: ModelFile, info: RawTensorInfo, dataStart: number, alignment: number): GgufTensorInfo {
  const where = `${file.path}: tensor '${printable(info.name)}'`;
  if (info.relativeOffset % BigInt(alignment) !== 0n)
    throw new CarvqError(`${where} has offset ${info.relativeOffset}; expected a multiple of general.alignment ${alignment}`);
  const absolute = BigInt(dataStart) + info.relativeOffset;
  if (absolute > BigInt(file.size))
    throw new CarvqError(
      `${where} has offset ${info.relativeOffset}, past the end of the file (data section starts at ${dataStart}, file has ${file.size} bytes)`,
    );
  const byteLength = tensorByteLength(where, info);
  const end = absolute + BigInt(byteLength ?? 0);
  if (end > BigInt(file.size))
    throw new CarvqError(
      `${where} data spans bytes ${absolute}..${end} but the file has ${file.size} bytes; the file is truncated or its header is wrong`,
    );
  return { name: info.name, ne: info.ne, typeId: info.typeId, typeName: info.typeName, offset: Number(absolute), byteLength };
}

/** The bytes a tensor's data takes: whole rows of whole blocks, as ggml requires. */
function tensorByteLength(where: string, info: RawTensorInfo): number | undefined {
  const type = GGML_TYPES[info.typeId];
  if (type === undefined) return undefined;
  if (info.ne[0] % type.blockElements !== 0)
    throw new CarvqError(`${where} has ne[0] ${info.ne[0]}; ${type.name} stores whole blocks of ${type.blockElements} values`);
  const blocks = info.ne.reduce((product, d) => product * BigInt(d), 1n) / BigInt(type.blockElements);
  const bytes = blocks * BigInt(type.blockBytes);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER))
    throw new CarvqError(`${where} has shape [${info.ne.join(", ")}], ${bytes} bytes of ${type.name}; too large`);
  return Number(bytes);
}

function alignUp(position: number, alignment: number): number {
  return Math.ceil(position / alignment) * alignment;
}

/** A forward-only reader over the file with a small window, so the header costs a few reads, not one per field. */
class Cursor {
  position = 0;
  private window = new Uint8Array(0);
  private windowStart = 0;
  private static readonly WINDOW_BYTES = 1 << 16;

  constructor(readonly file: ModelFile) {}

  /** Throws unless `length` more bytes exist after the cursor. */
  require(length: number | bigint, what: string): void {
    const left = this.file.size - this.position;
    if (BigInt(length) > BigInt(left)) {
      throw new CarvqError(
        `${this.file.path}: ${what} needs ${length} bytes at offset ${this.position} but only ${left} remain; the file is truncated or its header is wrong`,
      );
    }
  }

  skip(length: number, what: string): void {
    this.require(length, what);
    this.position += length;
  }

  /** Returns a view of the next `length` bytes (length small, or already capped by the caller). */
  take(length: number, what: string): Uint8Array {
    this.require(length, what);
    const offsetInWindow = this.position - this.windowStart;
    if (offsetInWindow < 0 || offsetInWindow + length > this.window.length) {
      const size = Math.min(Math.max(length, Cursor.WINDOW_BYTES), this.file.size - this.position);
      this.window = new Uint8Array(size);
      readExactInto(this.file, this.window, this.position, what);
      this.windowStart = this.position;
    }
    const start = this.position - this.windowStart;
    this.position += length;
    return this.window.subarray(start, start + length);
  }

  u32(what: string): number {
    const bytes = this.take(4, what);
    return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  }

  u64(what: string): bigint {
    const bytes = this.take(8, what);
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  }

  /** A u64 byte length that must fit in what is left of the file. */
  u64Length(what: string): number {
    const length = this.u64(`${what} length`);
    this.require(length, what);
    return Number(length);
  }

  /** A u64 element count, capped by `max` and by the file size given each element's minimum byte size. */
  count(what: string, max: number, minBytesEach: number): number {
    const value = this.u64(what);
    const left = BigInt(this.file.size - this.position);
    if (value > BigInt(max) || value * BigInt(minBytesEach) > left) {
      throw new CarvqError(
        `${this.file.path}: ${what} is ${value}; expected at most ${Math.min(max, Number(left / BigInt(minBytesEach)))} (limit ${max}, and what fits in the ${left} bytes left)`,
      );
    }
    return Number(value);
  }

  /** A tensor dimension: a u64 that must be a safe integer of at least 1. */
  dimension(what: string): number {
    const value = this.u64(what);
    if (value < 1n || value > BigInt(Number.MAX_SAFE_INTEGER))
      throw new CarvqError(`${this.file.path}: ${what} is ${value}; expected 1..${Number.MAX_SAFE_INTEGER}`);
    return Number(value);
  }

  /** A gguf_string (u64 length + UTF-8 bytes) that we keep, so its length is capped. */
  string(what: string, maxBytes: number): string {
    const length = this.u64(`${what} length`);
    if (length > BigInt(maxBytes))
      throw new CarvqError(`${this.file.path}: ${what} length is ${length} bytes; expected at most ${maxBytes}`);
    return new TextDecoder().decode(this.take(Number(length), what));
  }
}
