import { writeFileAtomic } from "../atomic.ts";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { printable, readBytes, type ModelFile } from "./modelFile.ts";
import type { TensorCatalog } from "./tensor.ts";

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

/** NumPy kind letters to the catalogs' dtype names by element size; only the float kinds are read as values. */
const NPY_KINDS: Readonly<Record<string, Readonly<Record<number, string>>>> = {
  f: { 2: "F16", 4: "F32", 8: "F64" },
  i: { 1: "I8", 2: "I16", 4: "I32", 8: "I64" },
  u: { 1: "U8", 2: "U16", 4: "U32", 8: "U64" },
  b: { 1: "BOOL" },
};

export function hasNpyMagic(firstBytes: Uint8Array): boolean {
  return NPY_MAGIC.every((byte, i) => firstBytes[i] === byte);
}

interface NpyHeader {
  readonly descr: string;
  readonly fortranOrder: boolean;
  readonly shape: number[];
}

/** What an npy header says about its array, in the catalogs' terms. */
export interface NpyLayout {
  readonly dtype: string;
  readonly shape: number[];
  readonly bigEndian: boolean;
  /** Element strides for Fortran (column-major) order; undefined for C order. */
  readonly strides?: number[];
  /** Bytes from the start of the npy data to the array. */
  readonly dataStart: number;
  readonly byteLength: number;
}

/** Parses a .npy file's header and checks that the file holds exactly the data it describes. */
export function readNpyCatalog(file: ModelFile): TensorCatalog {
  const head = readBytes(file, 0, Math.min(file.size, MAX_NPY_PREAMBLE_READ), "npy header");
  const layout = parseNpyLayout(file.path, head, (length) => readBytes(file, 0, length, "npy header"));
  checkDataLength(file.path, layout, file.size - layout.dataStart);
  const { dtype, shape, bigEndian, strides, dataStart, byteLength } = layout;
  return {
    format: "npy",
    tensors: [
      {
        name: NPY_TENSOR_NAME,
        dtype,
        shape,
        file: file.path,
        offset: dataStart,
        byteLength,
        ...(bigEndian ? { bigEndian } : {}),
        ...(strides ? { strides } : {}),
      },
    ],
    defaultTensor: NPY_TENSOR_NAME,
  };
}

/** Bytes read up front, enough for every header NumPy writes (it pads them to 64 bytes, usually 128 in all). */
export const MAX_NPY_PREAMBLE_READ = 4096;

/**
 * Parses the preamble and header at the start of `head` (the first bytes of an npy stream); `more`
 * fetches the first `length` bytes when the header is longer than `head`. `where` names the file
 * (or "archive.npz: member.npy") in messages.
 */
export function parseNpyLayout(where: string, head: Uint8Array, more: (length: number) => Uint8Array): NpyLayout {
  const shown = Array.from(head.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
  if (head.length < 10) throw new CarvqError(`${where}: has ${head.length} bytes; a .npy file needs at least a 10-byte preamble`);
  if (!hasNpyMagic(head)) throw new CarvqError(`${where}: not a .npy file (first bytes ${shown}); expected the magic "\\x93NUMPY"`);
  const major = head[6];
  if (major < 1 || major > 3) throw new CarvqError(`${where}: npy version is ${major}.${head[7]}; expected 1.0, 2.0 or 3.0`);
  const lengthBytes = major === 1 ? 2 : 4;
  if (head.length < 8 + lengthBytes) throw new CarvqError(`${where}: npy preamble is truncated`);
  const view = new DataView(head.buffer, head.byteOffset, head.length);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (headerLength > MAX_NPY_HEADER_BYTES)
    throw new CarvqError(`${where}: npy header length is ${headerLength} bytes; expected at most ${MAX_NPY_HEADER_BYTES}`);
  const headerStart = 8 + lengthBytes;
  const dataStart = headerStart + headerLength;
  const bytes = dataStart <= head.length ? head : more(dataStart);
  if (bytes.length < dataStart)
    throw new CarvqError(`${where}: npy header of ${headerLength} bytes is cut short at byte ${bytes.length}; the file is truncated`);
  // v1/v2 headers are latin1 by the spec; v3 is UTF-8. The fields we read are ASCII either way.
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(headerStart, dataStart));
  const header = parseHeaderDict(where, text);
  const { dtype, size, bigEndian } = parseDescr(where, header.descr);
  const elements = header.shape.reduce((product, d) => product * d, 1);
  const byteLength = elements * size;
  if (!Number.isSafeInteger(byteLength)) throw new CarvqError(`${where}: npy shape (${header.shape.join(", ")}) is too large`);
  const strides = header.fortranOrder && header.shape.length > 1 ? fortranStrides(header.shape) : undefined;
  return { dtype, shape: header.shape, bigEndian, strides, dataStart, byteLength };
}

/** '<f4', '>f8', '=f2', '|u1', ... to a dtype name, its size and byte order. */
function parseDescr(where: string, descr: string): { dtype: string; size: number; bigEndian: boolean } {
  const match = /^([<>=|])([a-zA-Z])(\d+)$/.exec(descr);
  const dtype = match ? NPY_KINDS[match[2]]?.[Number(match[3])] : undefined;
  if (!match || dtype === undefined) {
    throw new CarvqError(`${where}: descr is '${printable(descr)}'; expected a numeric type such as '<f4', '>f8' or '<f2'`);
  }
  const size = Number(match[3]);
  return { dtype, size, bigEndian: match[1] === ">" && size > 1 };
}

/** Column-major element strides: the first index varies fastest. */
function fortranStrides(shape: readonly number[]): number[] {
  const strides: number[] = [];
  let step = 1;
  for (const d of shape) {
    strides.push(step);
    step *= d;
  }
  return strides;
}

/** Reads the three keys of the header dict; the dict is Python syntax, not JSON, so it is matched field by field. */
function parseHeaderDict(path: string, text: string): NpyHeader {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new CarvqError(
      `${path}: npy header ${printable(JSON.stringify(text.trim().slice(0, 120)))} lacks 'descr', 'fortran_order' or 'shape'`,
    );
  }
  const parts = shapeText
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "");
  if (!parts.every((part) => /^\d{1,15}$/.test(part)))
    throw new CarvqError(`${path}: npy shape is (${printable(shapeText)}); expected a tuple of non-negative integers`);
  return { descr, fortranOrder: fortran === "True", shape: parts.map(Number) };
}

/** The data must be exactly the header's shape x element size, no shorter (truncated) and no longer (lying shape). */
export function checkDataLength(where: string, layout: NpyLayout, actual: number): void {
  if (actual === layout.byteLength) return;
  const problem = actual < layout.byteLength ? "the file is truncated" : "the file has extra bytes after the data";
  throw new CarvqError(
    `${where}: npy shape (${layout.shape.join(", ")}) needs ${layout.byteLength} data bytes but the file has ${actual} after the header; ${problem}`,
  );
}

export interface NpyHeaderOptions {
  /** NumPy's dtype string (default "<f4"). */
  readonly descr?: string;
  readonly fortranOrder?: boolean;
  readonly shape: readonly number[];
  /** 1 (u16 header length) or 2/3 (u32); default 1. */
  readonly version?: number;
}

/** Builds a .npy header as NumPy's writer does: the dict padded with spaces so the data starts on a 64-byte boundary. */
export function npyHeader(options: NpyHeaderOptions): Uint8Array {
  const version = options.version ?? 1;
  const shape = options.shape.length === 1 ? `(${options.shape[0]},)` : `(${options.shape.join(", ")})`;
  const dict = `{'descr': '${options.descr ?? "<f4"}', 'fortran_order': ${options.fortranOrder ? "True" : "False"}, 'shape': ${shape}, }`;
  const preamble = version === 1 ? 10 : 12; // magic, version, then a u16 or u32 header length
  const padded = Math.ceil((preamble + dict.length + 1) / 64) * 64;
  const text = `${dict}${" ".repeat(padded - preamble - dict.length - 1)}\n`;
  const bytes = new Uint8Array(preamble + text.length);
  bytes.set(NPY_MAGIC, 0);
  bytes[6] = version;
  bytes[7] = 0;
  const view = new DataView(bytes.buffer);
  if (version === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  bytes.set(new TextEncoder().encode(text), preamble);
  return bytes;
}

/** Writes `matrix` as a `<f4` C-order .npy file, atomically (a temporary file renamed into place). */
export function writeNpy(path: string, matrix: Matrix, force: boolean): void {
  const data = new Uint8Array(matrix.data.buffer, matrix.data.byteOffset, matrix.rows * matrix.cols * 4);
  writeFileAtomic(path, [npyHeader({ shape: [matrix.rows, matrix.cols] }), data], force);
}
