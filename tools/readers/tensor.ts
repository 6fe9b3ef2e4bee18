import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { convertBf16ToF32, convertF16ToF32 } from "./halfFloat.ts";
import { checkRange, printable, readExactInto, type ModelFile } from "./modelFile.ts";

export type ModelFormat = "safetensors" | "gguf" | "npy" | "llama2c";

/** The float element types the readers widen to float32. */
export type FloatDtype = "F32" | "F16" | "BF16";

export const FLOAT_DTYPE_BYTES: Readonly<Record<FloatDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

/** One tensor a format's header describes, in terms every format shares. */
export interface TensorInfo {
  readonly name: string;
  /** The element type as the file names it ("F16", "I64", "Q4_K", "<f4" mapped to "F32", ...). */
  readonly dtype: string;
  /** Dimensions outermost first (row-major): a [rows, cols] matrix has rows = shape[0]. */
  readonly shape: readonly number[];
  /** Absolute byte offset of the first element in the file. */
  readonly offset: number;
  /** Byte length the header declares, when the format stores one (safetensors); checked against dtype x shape. */
  readonly declaredByteLength?: number;
  /** True for block-quantized types (GGUF Q4_0, Q8_0, Q4_K, ...), so the refusal can say so. */
  readonly quantized?: boolean;
}

/** What a format's header parser returns: the tensors it found, and the one to use by default if the format has one. */
export interface TensorCatalog {
  readonly format: ModelFormat;
  readonly tensors: readonly TensorInfo[];
  /** npy and llama2.c files hold one token embedding at a known place; other formats leave this unset. */
  readonly defaultTensor?: string;
}

/** Largest matrix the readers allocate (2^31 float32 values, 8 GiB), so a lying header cannot ask for more. */
export const MAX_MATRIX_ELEMENTS = 2 ** 31;

/** Values converted per step for F16/BF16, bounding the scratch buffer beside the output. */
const CONVERT_CHUNK_ELEMENTS = 1 << 22;

function isFloatDtype(dtype: string): dtype is FloatDtype {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

/**
 * Reads `info` from `file` as a float32 matrix: checks its type, that it is 2-D, that its byte range
 * fits in the file and matches dtype x shape, then reads only that range and refuses NaN or Inf.
 */
export function readFloatMatrix(file: ModelFile, info: TensorInfo): Matrix {
  const where = `${file.path}: tensor '${printable(info.name)}'`;
  const dtype = checkFloatDtype(where, info);
  const [rows, cols] = checkMatrixShape(where, info.shape);
  const elements = rows * cols;
  const byteLength = elements * FLOAT_DTYPE_BYTES[dtype];
  if (info.declaredByteLength !== undefined && info.declaredByteLength !== byteLength) {
    throw new CarvqError(`${where}: data_offsets span ${info.declaredByteLength} bytes; expected ${byteLength} (${rows} x ${cols} x ${FLOAT_DTYPE_BYTES[dtype]} bytes of ${dtype})`);
  }
  checkRange(file, info.offset, byteLength, `tensor '${printable(info.name)}' data`);
  const data = allocateFloats(where, elements);
  if (dtype === "F32") readExactInto(file, new Uint8Array(data.buffer), info.offset, `tensor '${printable(info.name)}' data`);
  else readHalfFloats(file, info, dtype, data);
  checkFinite(where, data, cols);
  return { rows, cols, data };
}

function checkFloatDtype(where: string, info: TensorInfo): FloatDtype {
  if (isFloatDtype(info.dtype)) return info.dtype;
  const why = info.quantized ? " (block-quantized types are not supported; use an F32, F16 or BF16 export of the model)" : "";
  throw new CarvqError(`${where} has dtype ${printable(info.dtype)}; expected F32, F16 or BF16${why}`);
}

/** Accepts exactly two positive dimensions whose product is a safe, allocatable size. */
function checkMatrixShape(where: string, shape: readonly number[]): [number, number] {
  const shown = `[${shape.join(", ")}]`;
  if (shape.length !== 2) throw new CarvqError(`${where} has shape ${shown} (${shape.length}-D); expected a 2-D [rows, cols] matrix`);
  const [rows, cols] = shape;
  if (!(rows > 0 && cols > 0)) throw new CarvqError(`${where} has shape ${shown}; expected both dimensions to be at least 1`);
  if (rows * cols > MAX_MATRIX_ELEMENTS) throw new CarvqError(`${where} has shape ${shown}, ${rows * cols} values; the readers accept at most ${MAX_MATRIX_ELEMENTS}`);
  return [rows, cols];
}

function allocateFloats(where: string, elements: number): Float32Array {
  try {
    return new Float32Array(elements);
  } catch {
    throw new CarvqError(`${where}: cannot allocate ${elements} float32 values (${(elements * 4 / 2 ** 30).toFixed(1)} GiB); not enough memory`);
  }
}

/** Reads F16/BF16 data chunk by chunk so the only large allocation is the float32 output. */
function readHalfFloats(file: ModelFile, info: TensorInfo, dtype: "F16" | "BF16", target: Float32Array): void {
  const convert = dtype === "F16" ? convertF16ToF32 : convertBf16ToF32;
  const scratch = new Uint16Array(Math.min(CONVERT_CHUNK_ELEMENTS, target.length));
  const scratchBytes = new Uint8Array(scratch.buffer);
  for (let start = 0; start < target.length; start += scratch.length) {
    const count = Math.min(scratch.length, target.length - start);
    readExactInto(file, scratchBytes.subarray(0, count * 2), info.offset + start * 2, `tensor '${printable(info.name)}' data`);
    convert(scratch.subarray(0, count), target.subarray(start, start + count));
  }
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
