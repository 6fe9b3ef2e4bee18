import { inflateRawSync } from "node:zlib";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { DEQUANTIZERS, GGML_TYPES_BY_NAME, bitsPerWeight } from "./gguf-blocks.ts";
import { convertBf16ToF32, convertF16ToF32 } from "./halfFloat.ts";
import { checkRange, printable, readExactInto, withModelFile, type ModelFile } from "./modelFile.ts";

export type ModelFormat = "safetensors" | "gguf" | "npy" | "npz" | "pytorch" | "llama2c";

/** One tensor a checkpoint holds, in terms every format shares. */
export interface TensorInfo {
  readonly name: string;
  /** The element type: "F32", "F16", "BF16", "F64", "I64", a ggml block type such as "Q4_K", ... */
  readonly dtype: string;
  /** Dimensions outermost first (row-major): a [rows, cols] matrix has rows = shape[0]. */
  readonly shape: readonly number[];
  /** The file that holds the data: the input itself, or the shard of a sharded checkpoint. */
  readonly file: string;
  /** Absolute byte offset of the stored data in `file` (for a deflated zip member: of its compressed stream). */
  readonly offset: number;
  /**
   * Bytes of the data as stored, after any decompression: what the header declares (safetensors'
   * data_offsets) or what dtype x shape takes (elements x element size, or blocks x block size).
   */
  readonly byteLength: number;
  /** True for block-quantized types (GGUF Q4_0, Q8_0, Q4_K, ...). */
  readonly quantized?: boolean;
  /** Elements are stored big-endian (npy '>f4'). */
  readonly bigEndian?: boolean;
  /**
   * Element strides, outermost first, when the stored order is not row-major (Fortran-order npy, a
   * transposed PyTorch view); the stored data then starts at the element [0, 0, ...].
   */
  readonly strides?: readonly number[];
  /**
   * Set when the data sits inside a raw deflate stream of `length` bytes at `offset` (a compressed
   * zip member) that inflates to `inflatedLength` bytes: the data is the inflated stream after its
   * first `skip` bytes (an npz member's npy header, a PyTorch view's storage offset).
   */
  readonly deflated?: { readonly length: number; readonly skip: number; readonly inflatedLength: number };
  /** The format names `byteLength` itself (safetensors' data_offsets), so a mismatch is the header's fault. */
  readonly declaredBy?: string;
}

/** What a format's header parser returns: the tensors it found, and the one to use by default if the format has one. */
export interface TensorCatalog {
  readonly format: ModelFormat;
  readonly tensors: readonly TensorInfo[];
  /** npy and llama2.c files hold one token embedding at a known place; other formats leave this unset. */
  readonly defaultTensor?: string;
}

/** Called after each chunk of a tensor's stored bytes is read and converted: bytes done of the total. */
export type ReadProgress = (doneBytes: number, totalBytes: number) => void;

/** Largest tensor the readers widen to float32 (2^31 values, 8 GiB), so a lying header cannot ask for more. */
export const MAX_MATRIX_ELEMENTS = 2 ** 31;

/** Bytes per element of the plain (not block-quantized) element types, by the names the catalogs use. */
export const ELEMENT_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  C64: 8,
  C128: 16,
};

/** The element types widened to float32, with the bytes each takes. */
const FLOAT_DTYPES: ReadonlySet<string> = new Set(["F32", "F16", "BF16", "F64"]);

/** Bytes read and converted per step, bounding the scratch buffer beside the float32 output. */
const CHUNK_BYTES = 1 << 23;

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((product, d) => product * d, 1);
}

/**
 * Bytes `dtype` x `shape` take as stored, or undefined when the type has no known size. A block
 * type's rows must hold whole blocks (ggml requires ne[0] to be a multiple of the block size).
 */
export function storedByteLength(dtype: string, shape: readonly number[]): number | undefined {
  const element = ELEMENT_BYTES[dtype];
  if (element !== undefined) return elementCount(shape) * element;
  const block = GGML_TYPES_BY_NAME.get(dtype);
  if (block === undefined) return undefined;
  return (elementCount(shape) / block.blockElements) * block.blockBytes;
}

/** Bits per weight `dtype` stores (32 for F32, 4.5 for Q4_K), or undefined for a type we cannot size. */
export function dtypeBitsPerWeight(dtype: string): number | undefined {
  const element = ELEMENT_BYTES[dtype];
  if (element !== undefined) return element * 8;
  const block = GGML_TYPES_BY_NAME.get(dtype);
  return block === undefined ? undefined : bitsPerWeight(block);
}

/** True when readTensorF32 can widen this dtype. */
export function isReadableDtype(dtype: string): boolean {
  return FLOAT_DTYPES.has(dtype) || DEQUANTIZERS.has(dtype);
}

/** Where a message about `info` starts: the file that holds it and its name. */
export function tensorWhere(info: TensorInfo): string {
  return `${info.file}: tensor '${printable(info.name)}'`;
}

/**
 * The tensor's bytes exactly as stored (decompressed when the container compressed them), read
 * from the one file that holds them.
 */
export function readTensorBytes(info: TensorInfo): Uint8Array {
  if (info.declaredBy === undefined && storedByteLength(info.dtype, info.shape) === undefined) {
    throw new CarvqError(`${tensorWhere(info)} has dtype ${printable(info.dtype)}, whose stored size carvq does not know`);
  }
  return withModelFile(info.file, (file) => storedSource(file, info).read(0, info.byteLength));
}

/**
 * Reads `info` as float32 values in row-major order, whatever the stored type, byte order and
 * layout: checks the type, the size against dtype x shape and the file, and refuses NaN or Inf.
 */
export function readTensorF32(info: TensorInfo, onProgress?: ReadProgress): Float32Array {
  const where = tensorWhere(info);
  checkReadable(where, info);
  const elements = elementCount(info.shape);
  if (elements > MAX_MATRIX_ELEMENTS)
    throw new CarvqError(
      `${where} has shape [${info.shape.join(", ")}], ${elements} values; the readers accept at most ${MAX_MATRIX_ELEMENTS}`,
    );
  checkByteLength(where, info);
  const stored = withModelFile(info.file, (file) => decode(file, info, elements, onProgress));
  const values = info.strides === undefined ? stored : gather(stored, info.shape, info.strides, where);
  checkFinite(where, values, info.shape.length >= 2 ? info.shape[info.shape.length - 1] : values.length);
  return values;
}

/** Reads a 2-D tensor as a float32 matrix (see readTensorF32). */
export function readTensorMatrix(info: TensorInfo, onProgress?: ReadProgress): Matrix {
  const [rows, cols] = checkMatrixShape(tensorWhere(info), info.shape);
  return { rows, cols, data: readTensorF32(info, onProgress) };
}

function checkReadable(where: string, info: TensorInfo): void {
  if (isReadableDtype(info.dtype)) return;
  const why = info.quantized
    ? `; of the block-quantized types carvq reads ${[...DEQUANTIZERS.keys()].join(", ")} (use one of those or an F16/F32 export of the model)`
    : "";
  throw new CarvqError(
    `${where} has dtype ${printable(info.dtype)}; expected F32, F16, BF16, F64${info.quantized ? " or a supported block type" : ""}${why}`,
  );
}

/** The stored bytes must be exactly what dtype x shape needs (for block types: whole rows of whole blocks). */
function checkByteLength(where: string, info: TensorInfo): void {
  const block = GGML_TYPES_BY_NAME.get(info.dtype);
  if (block !== undefined && block.blockElements > 1) {
    const rowLength = info.shape[info.shape.length - 1] ?? 1;
    if (rowLength % block.blockElements !== 0)
      throw new CarvqError(`${where} has rows of ${rowLength} values; ${info.dtype} stores whole blocks of ${block.blockElements}`);
  }
  // A strided tensor's span is sized by its reader from the strides; only row-major data has a fixed size.
  if (info.strides !== undefined) return;
  const expected = storedByteLength(info.dtype, info.shape);
  if (expected === undefined || expected === info.byteLength) return;
  throw new CarvqError(
    `${where}: ${info.declaredBy ?? "stored data"} span ${info.byteLength} bytes; expected ${expected} ([${info.shape.join(" x ")}] of ${info.dtype})`,
  );
}

/** Accepts exactly two positive dimensions. */
export function checkMatrixShape(where: string, shape: readonly number[]): [number, number] {
  const shown = `[${shape.join(", ")}]`;
  if (shape.length !== 2) throw new CarvqError(`${where} has shape ${shown} (${shape.length}-D); expected a 2-D [rows, cols] matrix`);
  const [rows, cols] = shape;
  if (!(rows > 0 && cols > 0)) throw new CarvqError(`${where} has shape ${shown}; expected both dimensions to be at least 1`);
  if (rows * cols > MAX_MATRIX_ELEMENTS)
    throw new CarvqError(`${where} has shape ${shown}, ${rows * cols} values; the readers accept at most ${MAX_MATRIX_ELEMENTS}`);
  return [rows, cols];
}

function allocateFloats(where: string, elements: number): Float32Array {
  try {
    return new Float32Array(elements);
  } catch {
    throw new CarvqError(
      `${where}: cannot allocate ${elements} float32 values (${((elements * 4) / 2 ** 30).toFixed(1)} GiB); not enough memory`,
    );
  }
}

/** Reads ranges of a tensor's stored bytes: straight from the file, or from its inflated zip member. */
interface StoredSource {
  read(start: number, length: number): Uint8Array;
}

function storedSource(file: ModelFile, info: TensorInfo): StoredSource {
  const what = `tensor '${printable(info.name)}' data`;
  if (info.deflated === undefined) {
    checkRange(file, info.offset, info.byteLength, what);
    return {
      read(start, length) {
        const bytes = new Uint8Array(length);
        readExactInto(file, bytes, info.offset + start, what);
        return bytes;
      },
    };
  }
  const { length: compressedLength, skip, inflatedLength } = info.deflated;
  checkRange(file, info.offset, compressedLength, `${what} (deflated)`);
  const compressed = new Uint8Array(compressedLength);
  readExactInto(file, compressed, info.offset, `${what} (deflated)`);
  let inflated: Uint8Array;
  try {
    inflated = inflateRawSync(compressed, { maxOutputLength: Math.max(1, inflatedLength) });
  } catch (err) {
    throw new CarvqError(`${file.path}: ${what} does not inflate (${printable((err as Error).message, 80)}); the archive is damaged`);
  }
  if (inflated.length !== inflatedLength || skip + info.byteLength > inflatedLength)
    throw new CarvqError(`${file.path}: ${what} inflates to ${inflated.length} bytes; its zip entry says ${inflatedLength}`);
  return { read: (start, length) => inflated.subarray(skip + start, skip + start + length) };
}

/** Widens the stored elements to float32 in stored order, a chunk at a time. */
function decode(file: ModelFile, info: TensorInfo, elements: number, onProgress: ReadProgress | undefined): Float32Array {
  const where = tensorWhere(info);
  const source = storedSource(file, info);
  const count = info.strides === undefined ? elements : info.byteLength / ELEMENT_BYTES[info.dtype];
  const target = allocateFloats(where, count);
  const dequantize = DEQUANTIZERS.get(info.dtype);
  if (dequantize !== undefined) {
    const block = GGML_TYPES_BY_NAME.get(info.dtype)!;
    const blocksPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / block.blockBytes));
    const blocks = count / block.blockElements;
    for (let first = 0; first < blocks; first += blocksPerChunk) {
      const n = Math.min(blocksPerChunk, blocks - first);
      const bytes = source.read(first * block.blockBytes, n * block.blockBytes);
      dequantize(bytes, target.subarray(first * block.blockElements, (first + n) * block.blockElements));
      onProgress?.((first + n) * block.blockBytes, info.byteLength);
    }
    return target;
  }
  const size = ELEMENT_BYTES[info.dtype];
  const perChunk = Math.floor(CHUNK_BYTES / size);
  for (let first = 0; first < count; first += perChunk) {
    const n = Math.min(perChunk, count - first);
    const bytes = source.read(first * size, n * size);
    if (info.bigEndian) swapBytes(bytes, size);
    widen(info.dtype, bytes, target.subarray(first, first + n));
    onProgress?.((first + n) * size, info.byteLength);
  }
  return target;
}

/** Converts little-endian F32/F16/BF16/F64 bytes to float32 (F64 rounds to nearest). */
function widen(dtype: string, bytes: Uint8Array, target: Float32Array): void {
  // Copy when unaligned: typed-array views need an offset that is a multiple of the element size.
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  if (dtype === "F32") target.set(new Float32Array(aligned.buffer, aligned.byteOffset, target.length));
  else if (dtype === "F64") target.set(new Float64Array(aligned.buffer, aligned.byteOffset, target.length));
  else if (dtype === "F16") convertF16ToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, target.length), target);
  else convertBf16ToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, target.length), target);
}

function swapBytes(bytes: Uint8Array, size: number): void {
  for (let at = 0; at < bytes.length; at += size) {
    for (let i = 0, j = size - 1; i < j; i++, j--) {
      const t = bytes[at + i];
      bytes[at + i] = bytes[at + j];
      bytes[at + j] = t;
    }
  }
}

/** Reorders values stored with element `strides` into row-major order of `shape`. */
function gather(stored: Float32Array, shape: readonly number[], strides: readonly number[], where: string): Float32Array {
  const total = elementCount(shape);
  const out = allocateFloats(where, total);
  const index = new Array<number>(shape.length).fill(0);
  let position = 0;
  for (let i = 0; i < total; i++) {
    out[i] = stored[position];
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d]++;
      position += strides[d];
      if (index[d] < shape[d]) break;
      position -= strides[d] * shape[d];
      index[d] = 0;
    }
  }
  return out;
}

/** Refuses NaN and +/-Inf, naming the first offending row and column (0-based). */
export function checkFinite(where: string, data: Float32Array, cols: number): void {
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    // value - value is 0 for finite numbers and NaN for NaN and +/-Inf; one comparison in the hot loop.
    if (value - value !== 0) {
      const row = Math.floor(i / cols);
      throw new CarvqError(`${where} has ${value} at row ${row}, column ${i - row * cols}; expected finite values`);
    }
  }
}
