// Where a token's sub-vectors find their codebooks: the group layouts (FORMAT.md, "Groups") and the
// order of centroid values in a table of codebooks. The quantizers fit and decode by these rules;
// the blob writer and reader store what they produce.
import * as F from "../../assembly/format.ts";

export type LayoutName = "row" | "col";

/** The layouts by name, in the order of their on-disk codes. */
export const LAYOUT_NAMES: readonly LayoutName[] = ["row", "col"];

/** K, the centroids per codebook (a code is one nibble). */
export const CODEBOOK_SIZE = F.RVQ_CODEBOOK_SIZE;

/** What fixes an RVQ table's layout: its size, sub-vector length h, levels L, group size g and layout. */
export interface RvqShape {
  rows: number;
  cols: number;
  /** Sub-vector length: `h` in code and `--h` on the command line; the blob header's field is `subvec`. */
  h: number;
  levels: number;
  /** Sub-vectors per group, g (the header's `group`, which for a scalar blob holds its block instead). */
  group: number;
  layout: LayoutName;
}

/** Sub-vectors per row, S = ceil(cols / h). */
export function subvectorCount(cols: number, h: number): number {
  return Math.ceil(cols / h);
}

/** Groups of an RVQ table: ceil(V·S / g) in the row layout, ceil(V / g)·S in the column-block layout. */
export function rvqGroupCount(s: RvqShape): number {
  const S = subvectorCount(s.cols, s.h);
  return s.layout === "row" ? Math.ceil((s.rows * S) / s.group) : Math.ceil(s.rows / s.group) * S;
}

/** Bytes of one row's RVQ record: S·L nibbles, after a u8 scale index with gain-shape. */
export function rvqRecordBytes(cols: number, h: number, levels: number, rowScaled: boolean): number {
  return (rowScaled ? 1 : 0) + Math.ceil((subvectorCount(cols, h) * levels) / 2);
}

/** Bytes of one row's scalar record: its blocks' FP16 scales, then the codes as a bit stream. */
export function scalarRecordBytes(cols: number, bits: number, block: number): number {
  return 2 * Math.ceil(cols / block) + Math.ceil((cols * bits) / 8);
}

/** Group of sub-vector `s` of token `t`, with S sub-vectors per row and group size g. */
export function groupOf(layout: LayoutName, t: number, s: number, S: number, g: number): number {
  return layout === "row" ? Math.floor((t * S + s) / g) : Math.floor(t / g) * S + s;
}

/** Element index of value 0 of centroid k, level l, group G. */
export function centroidIndex(G: number, l: number, k: number, levels: number, K: number, h: number): number {
  return ((G * levels + l) * K + k) * h;
}

/** Flat sub-vector indices (t·S + s) of every member of group G, in increasing order. */
export function groupMembers(layout: LayoutName, G: number, rows: number, S: number, g: number): Int32Array {
  if (layout === "row") {
    const first = G * g;
    const end = Math.min(first + g, rows * S);
    const members = new Int32Array(Math.max(0, end - first));
    for (let i = 0; i < members.length; i++) members[i] = first + i;
    return members;
  }
  const block = Math.floor(G / S);
  const s = G % S;
  const firstToken = block * g;
  const endToken = Math.min(firstToken + g, rows);
  const members = new Int32Array(Math.max(0, endToken - firstToken));
  for (let i = 0; i < members.length; i++) members[i] = (firstToken + i) * S + s;
  return members;
}

/**
 * Where each code's centroid values start: per (row, sub-vector, level), in code order
 * (t·S + s)·L + l, the index of the centroid's first value in the codebooks.
 */
export function centroidMap(codes: Uint8Array, s: RvqShape): Int32Array {
  const S = subvectorCount(s.cols, s.h);
  const map = new Int32Array(s.rows * S * s.levels);
  for (let t = 0; t < s.rows; t++) {
    for (let j = 0; j < S; j++) {
      const G = groupOf(s.layout, t, j, S, s.group);
      for (let l = 0; l < s.levels; l++) {
        const i = (t * S + j) * s.levels + l;
        map[i] = centroidIndex(G, l, codes[i], s.levels, CODEBOOK_SIZE, s.h);
      }
    }
  }
  return map;
}
