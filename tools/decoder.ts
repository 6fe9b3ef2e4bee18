// The TypeScript reference decoder: FORMAT.md's "Decoding" section, line for line. The WASM
// runtime must produce the same bits for every token (the parity tests hold them together).
import { count } from "./text.ts";
import { addAdaptorRow } from "./adaptor/forward.ts";
import { addAdaptorRows } from "./adaptor/forward-batch.ts";
import type { Blob } from "./blob/reader.ts";
import { bitStreamAt, nibbleAt } from "./blob/codes.ts";
import { groupOf } from "./blob/codebooks.ts";
import { subvectorsPerRow } from "./blob/header.ts";
import { CarvqError } from "./errors.ts";
import { F16_TO_F32 } from "./fp16.ts";
import type { Matrix } from "./matrix.ts";

/** f32 values of a blob's codebooks, converted once per blob. */
const codebookValues = new WeakMap<Blob, Float32Array>();

function centroidValues(blob: Blob): Float32Array {
  let values = codebookValues.get(blob);
  if (values === undefined) {
    const halves = blob.codebooks ?? new Uint16Array(0);
    values = new Float32Array(halves.length);
    for (let i = 0; i < halves.length; i++) values[i] = F16_TO_F32[halves[i]];
    codebookValues.set(blob, values);
  }
  return values;
}

function decodeRvqToken(blob: Blob, t: number, out: Float32Array, at: number): void {
  const { cols, subvec: h, levels: L, codebookSize: K, group: g, layout, rowBytes } = blob.header;
  const S = subvectorsPerRow(blob.header);
  const values = centroidValues(blob);
  // Gain-shape (v1.1): the record's first byte picks the row's scale; the nibbles follow it.
  const scale = blob.rowScales === null ? 1 : blob.rowScales[blob.codes[t * rowBytes]];
  const record = t * rowBytes + (blob.rowScales === null ? 0 : 1);
  for (let s = 0; s < S; s++) {
    const groupBase = groupOf(layout, t, s, S, g) * L * K * h;
    const width = Math.min(h, cols - s * h);
    for (let e = 0; e < width; e++) {
      let acc = 0;
      for (let l = 0; l < L; l++) {
        const code = nibbleAt(blob.codes, record, s * L + l);
        acc = Math.fround(acc + values[groupBase + (l * K + code) * h + e]);
      }
      out[at + s * h + e] = blob.rowScales === null ? acc : Math.fround(acc * scale);
    }
  }
}

function decodeScalarToken(blob: Blob, t: number, out: Float32Array, at: number): void {
  const { cols, group: block, codeBits: bits, groupCount: blocks, rowBytes } = blob.header;
  const record = t * rowBytes;
  const codeArea = record + 2 * blocks;
  const bias = 1 << (bits - 1);
  for (let j = 0; j < cols; j++) {
    const b = Math.floor(j / block);
    const scale = F16_TO_F32[blob.codes[record + 2 * b] | (blob.codes[record + 2 * b + 1] << 8)];
    out[at + j] = Math.fround((bitStreamAt(blob.codes, codeArea, j, bits) - bias) * scale);
  }
}

/** Decodes token `t` into out[at, at + n): the RVQ sum (times its row scale), plus the adaptor's correction. */
export function decodeToken(blob: Blob, t: number, out: Float32Array, at = 0): void {
  if (!Number.isInteger(t) || t < 0 || t >= blob.header.rows) throw new CarvqError(`${blob.name}: token ${t} is out of range (the table has ${count(blob.header.rows, "token")}, 0 to ${blob.header.rows - 1})`);
  if (blob.header.method !== "carvq") return decodeScalarToken(blob, t, out, at);
  decodeRvqToken(blob, t, out, at);
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
 * Decodes the whole table. With an adaptor, every RVQ row first, then the adaptor's corrections
 * batched over tokens (tools/adaptor/forward-batch.ts): the same bits as decodeToken row by row,
 * many times faster on a large table.
 */
export function decodeAll(blob: Blob): Matrix {
  const { rows, cols } = blob.header;
  const data = new Float32Array(rows * cols);
  if (blob.adaptor === null || blob.header.method !== "carvq") {
    for (let t = 0; t < rows; t++) decodeToken(blob, t, data, t * cols);
  } else {
    for (let t = 0; t < rows; t++) decodeRvqToken(blob, t, data, t * cols);
    addAdaptorRows(blob.adaptor, data, rows);
  }
  return { rows, cols, data };
}

