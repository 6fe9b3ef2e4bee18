// Valid blobs of any shape filled with seeded random codes and codebooks, made in well under a
// second even at Llama scale (no k-means): for the runtime's memory-budget tests and the lookup
// bench, where only the shape and the bytes' validity matter, never the quality.
import * as F from "../../assembly/format.ts";
import type { AdaptorPrecision, FloatAdaptor, StoredAdaptor, StoredMatrix } from "../adaptor/model.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "./adaptor.ts";
import { deriveHeader, SCALAR_BITS, type BlobHeader, type LayoutName, type MethodName } from "./header.ts";
import { encodeMetadata } from "./metadata.ts";
import { parseBlob } from "./reader.ts";
import { assembleBlob, type SectionBytes } from "./writer.ts";
import { f32ToF16 } from "../fp16.ts";
import { createRandom } from "../random.ts";

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
  /** RVQ corrective adaptor (v1.2): a random one of these widths (m0 ... n; the last must be cols). */
  adaptor?: RandomAdaptorOptions;
  seed?: number;
}

export interface RandomAdaptorOptions {
  /** w_0 = m0, the hidden widths, w_C = n: 2 to 5 numbers. */
  widths: number[];
  /** MLP weights (default int8). */
  precision?: AdaptorPrecision;
  /** sigma0 (default: the MLP's). */
  tablePrecision?: AdaptorPrecision;
  /** Multiplies the adaptor's output (default 1): its last layer's weights and bias. */
  outputScale?: number;
  seed?: number;
}

/**
 * A random float adaptor of the given widths, with roughly unit-scale activations: the table
 * uniform in (-1, 1), weights uniform with variance 1 / fan-in, small biases, LayerNorm gamma
 * around 1 and beta around 0.
 */
export function randomFloatAdaptor(rows: number, widths: readonly number[], seed = 1, outputScale = 1): FloatAdaptor {
  if (widths.length < 2 || widths.length > F.MAX_ADAPTOR_LAYERS + 1)
    throw new RangeError(`an adaptor has 2 to ${F.MAX_ADAPTOR_LAYERS + 1} widths, got ${widths.length}`);
  const random = createRandom(seed);
  const uniform = (count: number, scale: number, center = 0) => {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = center + (2 * random() - 1) * scale;
    return out;
  };
  return {
    rows,
    m0: widths[0],
    table: uniform(rows * widths[0], 1),
    layers: widths.slice(1).map((outputs, k) => {
      const inputs = widths[k];
      const last = k + 2 === widths.length;
      const gain = last ? outputScale : 1;
      return {
        inputs,
        outputs,
        weights: uniform(outputs * inputs, gain * Math.sqrt(3 / inputs)),
        bias: uniform(outputs, gain * 0.1),
        gamma: last ? null : uniform(outputs, 0.2, 1),
        beta: last ? null : uniform(outputs, 0.1),
      };
    }),
  };
}

/**
 * A random adaptor in its stored form, drawn directly (fast even for 4096 x 4096 layers): the same
 * scales as randomFloatAdaptor, int8 matrices as uniform codes in [-127, 127] with one FP16 scale
 * per row, FP16 matrices as the nearest FP16 of a uniform value.
 */
export function randomStoredAdaptor(rows: number, options: RandomAdaptorOptions): StoredAdaptor {
  const widths = options.widths;
  if (widths.length < 2 || widths.length > F.MAX_ADAPTOR_LAYERS + 1)
    throw new RangeError(`an adaptor has 2 to ${F.MAX_ADAPTOR_LAYERS + 1} widths, got ${widths.length}`);
  const precision = options.precision ?? "int8";
  const random = createRandom(options.seed ?? 1);
  const halves = (count: number, scale: number, center = 0) => {
    const out = new Uint16Array(count);
    for (let i = 0; i < count; i++) out[i] = f32ToF16(center + (2 * random() - 1) * scale);
    return out;
  };
  const matrix = (count: number, width: number, bound: number, kind: AdaptorPrecision): StoredMatrix => {
    if (kind === "fp16") return { values: halves(count * width, bound), scales: null };
    const values = new Int8Array(count * width);
    for (let i = 0; i < values.length; i++) values[i] = Math.round((2 * random() - 1) * 127);
    const scales = new Uint16Array(count).fill(f32ToF16(bound / 127));
    return { values, scales };
  };
  const outputScale = options.outputScale ?? 1;
  return {
    rows,
    m0: widths[0],
    table: matrix(rows, widths[0], 1, options.tablePrecision ?? precision),
    layers: widths.slice(1).map((outputs, k) => {
      const inputs = widths[k];
      const last = k + 2 === widths.length;
      const gain = last ? outputScale : 1;
      return {
        inputs,
        outputs,
        weights: matrix(outputs, inputs, gain * Math.sqrt(3 / inputs), precision),
        bias: halves(outputs, gain * 0.1),
        gamma: last ? null : halves(outputs, 0.2, 1),
        beta: last ? null : halves(outputs, 0.1),
      };
    }),
  };
}

/**
 * The same blob (an RVQ blob of any version) with `adaptor` added as its ADAPTOR_TABLE and
 * ADAPTOR_MLP sections (v1.2), written in the writer's section order.
 */
export function attachAdaptor(blob: Uint8Array, adaptor: StoredAdaptor): Uint8Array {
  const parsed = parseBlob(blob, "blob");
  if (parsed.header.method !== "carvq") throw new RangeError("only an RVQ blob takes an adaptor");
  const bytesOf = (id: number) => {
    const s = parsed.sections.find((x) => x.id === id);
    return s === undefined ? null : blob.subarray(s.offset, s.offset + s.length);
  };
  const sections: SectionBytes[] = [];
  for (const id of [F.SECTION_CODES, F.SECTION_CODEBOOKS, F.SECTION_ROW_SCALES]) {
    const bytes = bytesOf(id);
    if (bytes !== null) sections.push({ id, bytes });
  }
  sections.push(
    { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(adaptor) },
    { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(adaptor) },
  );
  const metadata = bytesOf(F.SECTION_METADATA);
  if (metadata !== null) sections.push({ id: F.SECTION_METADATA, bytes: metadata });
  return assembleBlob(deriveHeader({ ...parsed.header, adapted: true }), sections);
}

/** xorshift128+-style fill of 32-bit words: fast and the same bytes for the same seed. */
function fillRandom(bytes: Uint8Array, seed: number): void {
  let a = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let b = Math.imul(seed + 1, 0x85ebca6b) >>> 0 || 2;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < words.length; i++) {
    const t = a ^ (a << 11);
    a = b;
    b = (b ^ (b >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    words[i] = b;
  }
  for (let i = words.length * 4; i < bytes.length; i++) {
    const t = a ^ (a << 11);
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
    ? deriveHeader({
        method,
        rows: options.rows,
        cols: options.cols,
        subvec: options.subvec ?? 8,
        levels: options.levels ?? 2,
        group: options.group ?? 1024,
        layout: options.layout ?? "row",
        rowScaled: (options.rowScales ?? 0) > 0,
        adapted: options.adaptor !== undefined,
      })
    : deriveHeader({ method, rows: options.rows, cols: options.cols, subvec: 0, levels: 0, group: options.group ?? 32, layout: "row" });
}

/**
 * A complete, valid blob (CRCs and all) with random contents. With `rowScales` R, every record
 * starts with a random index below R and the R scales are random finite FP16 values (subnormals,
 * zeros and negatives included). With `adaptor`, a random adaptor of those widths
 * (randomStoredAdaptor): note that random codebooks give rows of any FP16 magnitude, which can
 * swamp its correction.
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
    if (options.adaptor !== undefined) {
      const widths = options.adaptor.widths;
      if (widths[widths.length - 1] !== header.cols)
        throw new RangeError(`the adaptor's last width must be the blob's ${header.cols} columns, got ${widths[widths.length - 1]}`);
      const adaptor = randomStoredAdaptor(header.rows, { seed: seed + 15485863, ...options.adaptor });
      sections.push(
        { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(adaptor) },
        { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(adaptor) },
      );
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
  sections.push({
    id: F.SECTION_METADATA,
    bytes: encodeMetadata({ tool: "carvq-random-blob", version: "1", shape: [header.rows, header.cols] }),
  });
  return assembleBlob(header, sections);
}
