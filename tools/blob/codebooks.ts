// The CODEBOOKS section (RVQ only): FP16 centroids, group-major (FORMAT.md, "CODEBOOKS"),
// and the group mapping that says which codebooks a token's sub-vector uses.
import type { LayoutName } from "./header.ts";

/** Group of sub-vector `s` of token `t`, with S sub-vectors per row and group size g. */
export function groupOf(layout: LayoutName, t: number, s: number, S: number, g: number): number {
  return layout === "row" ? Math.floor((t * S + s) / g) : Math.floor(t / g) * S + s;
}

/** Element index of value 0 of centroid k, level l, group G. */
export function centroidIndex(G: number, l: number, k: number, levels: number, K: number, h: number): number {
  return ((G * levels + l) * K + k) * h;
}

/** FP16 bit patterns to little-endian section bytes. */
export function encodeCodebooks(halves: Uint16Array): Uint8Array {
  const out = new Uint8Array(halves.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < halves.length; i++) view.setUint16(2 * i, halves[i], true);
  return out;
}

/** Little-endian section bytes to FP16 bit patterns (a copy: the section need not be 2-aligned). */
export function decodeCodebooks(bytes: Uint8Array): Uint16Array {
  const out = new Uint16Array(bytes.length >> 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
  return out;
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
