// Valid blobs of any shape filled with seeded random codes and codebooks, made in well under a
// second even at Llama scale (no k-means): for the runtime's memory-budget tests and the lookup
// bench, where only the shape and the bytes' validity matter, never the quality.
import * as F from "../assembly/format.ts";
import { deriveHeader, SCALAR_BITS, type BlobHeader, type LayoutName, type MethodName } from "../tools/blob/header.ts";
import { encodeMetadata } from "../tools/blob/metadata.ts";
import { assembleBlob, type SectionBytes } from "../tools/blob/writer.ts";

export interface RandomBlobOptions {
  method?: MethodName;
  rows: number;
  cols: number;
  /** RVQ sub-vector length h (default 8). */
  subvec?: number;
  /** RVQ levels L (default 2). */
  levels?: number;
  /** RVQ sub-vectors per group g (default 1024); scalar: values per scale (default 32). */
  group?: number;
  layout?: LayoutName;
  /** RVQ gain-shape (v1.1): R, the number of FP16 row scales (1 to 256); absent or 0 = none (v1.0). */
  rowScales?: number;
  seed?: number;
}

/** xorshift128+-style fill of 32-bit words: fast and the same bytes for the same seed. */
function fillRandom(bytes: Uint8Array, seed: number): void {
  let a = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let b = Math.imul(seed + 1, 0x85ebca6b) >>> 0 || 2;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) {
    let t = a ^ (a << 11);
    a = b;
    b = (b ^ (b >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    words[i] = b;
  }
  for (let i = words.length * 4; i < bytes.length; i++) {
    let t = a ^ (a << 11);
    a = b;
    b = (b ^ (b >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    bytes[i] = b & 0xff;
  }
}

/** Replaces FP16 infinities and NaNs (exponent 31) by finite values, in place. */
function finiteHalves(halves: Uint16Array): void {
  for (let i = 0; i < halves.length; i++) if ((halves[i] & 0x7c00) === 0x7c00) halves[i] ^= 0x4000;
}

export function randomBlobHeader(options: RandomBlobOptions): BlobHeader {
  const method = options.method ?? "carvq";
  return method === "carvq"
    ? deriveHeader({ method, rows: options.rows, cols: options.cols, subvec: options.subvec ?? 8, levels: options.levels ?? 2, group: options.group ?? 1024, layout: options.layout ?? "row", rowScaled: (options.rowScales ?? 0) > 0 })
    : deriveHeader({ method, rows: options.rows, cols: options.cols, subvec: 0, levels: 0, group: options.group ?? 32, layout: "row" });
}

/**
 * A complete, valid blob (CRCs and all) with random contents. With `rowScales` R, every record
 * starts with a random index below R and the R scales are random finite FP16 values (subnormals,
 * zeros and negatives included).
 */
export function randomBlob(options: RandomBlobOptions): Uint8Array {
  const header = randomBlobHeader(options);
  const seed = options.seed ?? 1;
  const codes = new Uint8Array(header.rows * header.rowBytes);
  fillRandom(codes, seed);
  const sections: SectionBytes[] = [{ id: F.SECTION_CODES, bytes: codes }];
  if (header.method === "carvq") {
    const perRow = Math.ceil(header.cols / header.subvec) * header.levels;
    if (perRow % 2 === 1) for (let t = 0; t < header.rows; t++) codes[t * header.rowBytes + header.rowBytes - 1] &= 0x0f;
    const codebooks = new Uint8Array(header.groupCount * header.levels * header.codebookSize * header.subvec * 2);
    fillRandom(codebooks, seed + 7919);
    finiteHalves(new Uint16Array(codebooks.buffer, codebooks.byteOffset, codebooks.byteLength >>> 1));
    sections.push({ id: F.SECTION_CODEBOOKS, bytes: codebooks });
    const R = options.rowScales ?? 0;
    if (R > 0) {
      if (!Number.isInteger(R) || R > F.MAX_ROW_SCALES) throw new RangeError(`rowScales must be 1 to ${F.MAX_ROW_SCALES}, got ${R}`);
      for (let t = 0; t < header.rows; t++) codes[t * header.rowBytes] %= R;
      const scales = new Uint8Array(2 * R);
      fillRandom(scales, seed + 104729);
      finiteHalves(new Uint16Array(scales.buffer, scales.byteOffset, scales.byteLength >>> 1));
      sections.push({ id: F.SECTION_ROW_SCALES, bytes: scales });
    }
  } else {
    const bits = SCALAR_BITS[header.method];
    const blocks = header.groupCount;
    const streamBytes = header.rowBytes - 2 * blocks;
    const unused = streamBytes * 8 - header.cols * bits;
    for (let t = 0; t < header.rows; t++) {
      const record = t * header.rowBytes;
      for (let b = 0; b < blocks; b++) {
        // FP16 exponent bits 14..10 are bits 6..2 of the high byte: no infinities or NaNs.
        if ((codes[record + 2 * b + 1] & 0x7c) === 0x7c) codes[record + 2 * b + 1] ^= 0x40;
      }
      if (unused > 0) codes[record + header.rowBytes - 1] &= 0xff >> unused;
    }
  }
  sections.push({ id: F.SECTION_METADATA, bytes: encodeMetadata({ tool: "carvq-random-blob", version: "1", shape: [header.rows, header.cols] }) });
  return assembleBlob(header, sections);
}
