// The TypeScript reference decoder of a blob: FORMAT.md's "Decoding" section. The blob's codes are
// unpacked once into the quantizers' form and decoded by the quantizers' own row decoders (the
// same ones the compressor measures with), then the adaptor's correction is added. The WASM
// runtime must produce the same bits for every token (the parity tests hold them together).
import { count } from "./text.ts";
import { addAdaptorRow, addAdaptorRows } from "./adaptor/forward.ts";
import type { Blob } from "./blob/reader.ts";
import { rvqCodesOf, rvqShapeOf, scalarEncodingOf } from "./blob/table.ts";
import { CarvqError } from "./errors.ts";
import type { Matrix } from "./matrix.ts";
import type { RvqShape } from "./quant/layout.ts";
import { decodeRvqRow, halvesToF32 } from "./quant/rvq.ts";
import { decodeScalarRow, type ScalarEncoding } from "./quant/scalar.ts";
import { RVQ_METHOD } from "./quant/methods.ts";

/** A blob's codes in the quantizers' form, unpacked on first use. */
type Unpacked =
  | { kind: "rvq"; shape: RvqShape; values: Float32Array; codes: Uint8Array; scaleIndex: Uint8Array | null }
  | { kind: "scalar"; encoding: ScalarEncoding };

const unpackedCodes = new WeakMap<Blob, Unpacked>();

function unpacked(blob: Blob): Unpacked {
  let u = unpackedCodes.get(blob);
  if (u === undefined) {
    u =
      blob.header.method === RVQ_METHOD
        ? { kind: "rvq", shape: rvqShapeOf(blob.header), values: halvesToF32(blob.codebooks ?? new Uint16Array(0)), ...rvqCodesOf(blob) }
        : { kind: "scalar", encoding: scalarEncodingOf(blob) };
    unpackedCodes.set(blob, u);
  }
  return u;
}

/** The quantized row t (no adaptor) into out[at, at + n). */
function decodeCodes(blob: Blob, t: number, out: Float32Array, at: number): void {
  const u = unpacked(blob);
  if (u.kind === "scalar") return decodeScalarRow(u.encoding, blob.header.cols, blob.header.codeBits, blob.header.group, t, out, at);
  const scale = blob.rowScales === null || u.scaleIndex === null ? null : blob.rowScales[u.scaleIndex[t]];
  decodeRvqRow(u.values, u.codes, u.shape, t, scale, out, at);
}

/** Decodes token `t` into out[at, at + n): the RVQ sum (times its row scale), plus the adaptor's correction. */
export function decodeToken(blob: Blob, t: number, out: Float32Array, at = 0): void {
  if (!Number.isInteger(t) || t < 0 || t >= blob.header.rows)
    throw new CarvqError(
      `${blob.name}: token ${t} is out of range (the table has ${count(blob.header.rows, "token")}, 0 to ${blob.header.rows - 1})`,
    );
  decodeCodes(blob, t, out, at);
  if (blob.adaptor !== null) addAdaptorRow(blob.adaptor, t, out, at);
}

/** Decodes `tokens` in the order given: row i of the result is tokens[i]. */
export function decodeTokens(blob: Blob, tokens: ArrayLike<number>): Float32Array {
  const n = blob.header.cols;
  const out = new Float32Array(tokens.length * n);
  for (let i = 0; i < tokens.length; i++) decodeToken(blob, tokens[i], out, i * n);
  return out;
}

/**
 * Decodes the whole table. With an adaptor, every quantized row first, then the adaptor's
 * corrections batched over tokens: the same bits as decodeToken row by row, many times faster on
 * a large table.
 */
export function decodeAll(blob: Blob): Matrix {
  const { rows, cols } = blob.header;
  const data = new Float32Array(rows * cols);
  for (let t = 0; t < rows; t++) decodeCodes(blob, t, data, t * cols);
  if (blob.adaptor !== null) addAdaptorRows(blob.adaptor, data, rows);
  return { rows, cols, data };
}
