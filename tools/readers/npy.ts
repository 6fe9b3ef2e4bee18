import { writeFileAtomic } from "../atomic.ts";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { printable, readBytes, type ModelFile } from "./modelFile.ts";
import type { FloatDtype, TensorCatalog } from "./tensor.ts";

/**
 * NumPy .npy: magic "\x93NUMPY", major and minor version bytes, a header length (u16 in v1, u32 in
 * v2/v3), then a Python dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, then the raw array.
 */

export const NPY_MAGIC = Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59); // "\x93NUMPY"

/** The one array of a .npy file is reported under this tensor name. */
export const NPY_TENSOR_NAME = "array";

/** NumPy's own reader caps headers at 10 kB by default; 1 MB leaves room while refusing absurd lengths. */
const MAX_NPY_HEADER_BYTES = 1 << 20;

const NPY_DTYPES: Readonly<Record<string, { dtype: FloatDtype; bytes: number }>> = {
  "<f4": { dtype: "F32", bytes: 4 },
  "<f2": { dtype: "F16", bytes: 2 },
};

export function hasNpyMagic(firstBytes: Uint8Array): boolean {
  return NPY_MAGIC.every((byte, i) => firstBytes[i] === byte);
}

interface NpyHeader {
  readonly descr: string;
  readonly fortranOrder: boolean;
  readonly shape: number[];
}

/** Parses a .npy header and checks that the file holds exactly the data it describes. */
export function readNpyCatalog(file: ModelFile): TensorCatalog {
  const { header, dataStart } = readNpyHeader(file);
  const where = `${file.path}:`;
  const known = NPY_DTYPES[header.descr];
  if (!known) {
    const why = /^>/.test(header.descr) ? " (big-endian arrays are not supported; save with dtype='<f4')" : "";
    throw new CarvqError(`${where} descr is '${printable(header.descr)}'; expected '<f4' (float32) or '<f2' (float16)${why}`);
  }
  if (header.fortranOrder) throw new CarvqError(`${where} fortran_order is True; expected False (C order; save np.ascontiguousarray(x))`);
  checkDataLength(file, header.shape, known.bytes, dataStart);
  return {
    format: "npy",
    tensors: [{ name: NPY_TENSOR_NAME, dtype: known.dtype, shape: header.shape, offset: dataStart }],
    defaultTensor: NPY_TENSOR_NAME,
  };
}

function readNpyHeader(file: ModelFile): { header: NpyHeader; dataStart: number } {
  if (file.size < 10) throw new CarvqError(`${file.path}: file has ${file.size} bytes; a .npy file needs at least a 10-byte preamble`);
  const preamble = readBytes(file, 0, 12 <= file.size ? 12 : 10, "npy preamble");
  if (!hasNpyMagic(preamble)) throw new CarvqError(`${file.path}: does not start with the .npy magic "\\x93NUMPY"`);
  const major = preamble[6];
  if (major < 1 || major > 3) throw new CarvqError(`${file.path}: npy version is ${major}.${preamble[7]}; expected 1.0, 2.0 or 3.0`);
  const view = new DataView(preamble.buffer);
  const lengthBytes = major === 1 ? 2 : 4;
  if (preamble.length < 8 + lengthBytes) throw new CarvqError(`${file.path}: npy preamble is truncated`);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (headerLength > MAX_NPY_HEADER_BYTES) throw new CarvqError(`${file.path}: npy header length is ${headerLength} bytes; expected at most ${MAX_NPY_HEADER_BYTES}`);
  const headerStart = 8 + lengthBytes;
  // v1/v2 headers are latin1 by the spec; v3 is UTF-8. The fields we read are ASCII either way.
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(readBytes(file, headerStart, headerLength, "npy header"));
  return { header: parseHeaderDict(file.path, text), dataStart: headerStart + headerLength };
}

/** Reads the three keys of the header dict; the dict is Python syntax, not JSON, so it is matched field by field. */
function parseHeaderDict(path: string, text: string): NpyHeader {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new CarvqError(`${path}: npy header ${printable(JSON.stringify(text.trim().slice(0, 120)))} lacks 'descr', 'fortran_order' or 'shape'`);
  }
  const parts = shapeText.split(",").map((part) => part.trim()).filter((part) => part !== "");
  if (!parts.every((part) => /^\d{1,15}$/.test(part))) throw new CarvqError(`${path}: npy shape is (${printable(shapeText)}); expected a tuple of non-negative integers`);
  return { descr, fortranOrder: fortran === "True", shape: parts.map(Number) };
}

/** The data must be exactly the header's shape x element size, no shorter (truncated) and no longer (lying shape). */
function checkDataLength(file: ModelFile, shape: readonly number[], elementBytes: number, dataStart: number): void {
  const expected = shape.reduce((product, dim) => product * BigInt(dim), 1n) * BigInt(elementBytes);
  const actual = BigInt(file.size - dataStart);
  if (actual !== expected) {
    const problem = actual < expected ? "the file is truncated" : "the file has extra bytes after the data";
    throw new CarvqError(`${file.path}: npy shape (${shape.join(", ")}) needs ${expected} data bytes but the file has ${actual} after the header; ${problem}`);
  }
}

/** Builds a v1 header for a C-order little-endian float32 array, padded so the data starts on a 64-byte boundary. */
export function npyHeaderF32(rows: number, cols: number): Uint8Array {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const unpadded = 10 + dict.length + 1; // magic + version + u16 length, dict, trailing newline
  const padded = Math.ceil(unpadded / 64) * 64;
  const headerText = dict + " ".repeat(padded - unpadded) + "\n";
  const bytes = new Uint8Array(10 + headerText.length);
  bytes.set(NPY_MAGIC, 0);
  bytes[6] = 1;
  bytes[7] = 0;
  new DataView(bytes.buffer).setUint16(8, headerText.length, true);
  bytes.set(new TextEncoder().encode(headerText), 10);
  return bytes;
}

/** Writes `matrix` as a `<f4` C-order .npy file, atomically (a temporary file renamed into place). */
export function writeNpy(path: string, matrix: Matrix, force: boolean): void {
  const data = new Uint8Array(matrix.data.buffer, matrix.data.byteOffset, matrix.rows * matrix.cols * 4);
  writeFileAtomic(path, [npyHeaderF32(matrix.rows, matrix.cols), data], force);
}
