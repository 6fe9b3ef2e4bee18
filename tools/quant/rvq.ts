// Group residual vector quantization (the paper's stage 1): every group of sub-vectors gets L
// codebooks of K = 16 centroids; level l is k-means on what levels 0..l-1 left over.
import { F16_TO_F32, f32ToF16, F16_MAX } from "../fp16.ts";
import type { Matrix } from "../matrix.ts";
import { createRandom, deriveSeed } from "../random.ts";
import { encodeWithBeam } from "./beam.ts";
import { nearest16 } from "./kernels.ts";
import type { RowScales } from "./gain.ts";
import { kmeans, nearestCentroid } from "./kmeans.ts";
import { CODEBOOK_SIZE, groupMembers, groupOf, subvectorCount, type LayoutName, type RvqShape } from "./layout.ts";
import { refineCodebooks } from "./refine.ts";

export interface RvqParams {
  /** Sub-vector length h. */
  h: number;
  /** Residual levels L. */
  levels: number;
  /** Sub-vectors per group g. */
  group: number;
  layout: LayoutName;
  /** Lloyd iterations per k-means. */
  iters: number;
  seed: number;
  /** Beam width for encoding (1 = greedy, the paper's). */
  beam: number;
  /** Rounds of joint least-squares codebook refinement and re-encoding. */
  refine: number;
  /** Importance of each row (token) in codebook fitting, e.g. its frequency; null = all equal. */
  weights?: Float32Array | null;
}

/** What an RVQ encoding stores: S·L codes per token and every group's FP16 codebooks. */
export interface RvqEncoding {
  /** rows · S · L codes, code i of token t at t·S·L + i with i = s·L + l. */
  codes: Uint8Array;
  /** groupCount · L · K · h FP16 bit patterns, FORMAT.md order. */
  codebooks: Uint16Array;
  groupCount: number;
  /** Gain-shape: the codes are of each row's direction, scaled by the row's entry of this table; absent or null otherwise. */
  rowScales?: RowScales | null;
}

const K = CODEBOOK_SIZE;

/** Copies a group's sub-vectors (zero-padded past column n) into one dense `members × h` array. */
function gatherSubvectors(matrix: Matrix, members: Int32Array, S: number, h: number): Float32Array {
  const out = new Float32Array(members.length * h);
  const { cols, data } = matrix;
  for (let i = 0; i < members.length; i++) {
    const t = Math.floor(members[i] / S);
    const start = (members[i] % S) * h;
    const width = Math.min(h, cols - start);
    out.set(data.subarray(t * cols + start, t * cols + start + width), i * h);
  }
  return out;
}

/** Rounds centroids to FP16 (clamped finite), returning the bit patterns and their f32 values. */
function roundCodebook(centroids: Float32Array): { halves: Uint16Array; values: Float32Array } {
  const halves = new Uint16Array(centroids.length);
  const values = new Float32Array(centroids.length);
  for (let i = 0; i < centroids.length; i++) {
    halves[i] = f32ToF16(Math.max(-F16_MAX, Math.min(F16_MAX, centroids[i])));
    values[i] = F16_TO_F32[halves[i]];
  }
  return { halves, values };
}

/**
 * The paper's training: level by level, k-means on what the previous levels left over, each
 * member encoded greedily against the FP16-rounded centroids (exactly what the decoder adds back).
 * Consumes `residual` (the members' vectors on entry). Writes codes[i·L + l] and FP16 `halves`.
 */
function trainGreedy(
  residual: Float32Array,
  count: number,
  h: number,
  levels: number,
  iters: number,
  seed: number,
  weights: Float32Array | null,
  codes: Uint8Array,
  halves: Uint16Array,
  kernel = true,
): void {
  const found = new Float64Array(2);
  const nearest = new Int32Array(count);
  for (let l = 0; l < levels; l++) {
    const centroids = kmeans(residual, count, h, K, iters, createRandom(deriveSeed(seed, l)), weights, kernel);
    const rounded = roundCodebook(centroids);
    halves.set(rounded.halves, l * K * h);
    // The kernel takes the same steps as the loop below (nearestCentroid, then the f32 residual).
    if (K === 16 && kernel) {
      nearest16(residual, count, h, rounded.values, nearest);
      for (let p = 0; p < count; p++) codes[p * levels + l] = nearest[p];
      continue;
    }
    for (let p = 0; p < count; p++) {
      nearestCentroid(residual, p, rounded.values, K, h, found);
      const c = found[0];
      codes[p * levels + l] = c;
      for (let e = 0; e < h; e++) residual[p * h + e] = Math.fround(residual[p * h + e] - rounded.values[c * h + e]);
    }
  }
}

export interface GroupFitOptions {
  h: number;
  levels: number;
  iters: number;
  seed: number;
  beam: number;
  refine: number;
  /** Each member's importance (null = all equal). */
  weights: Float32Array | null;
  /** false: k-means and the greedy encoding in JavaScript even where the SIMD kernels are built (tests: the same bits). */
  kernel?: boolean;
}

/**
 * Fits one group's L codebooks and encodes its `count` members (`vectors`, count × h, left
 * unchanged): greedy training, then, when asked, beam-search re-encoding and rounds of joint
 * least-squares refinement. Keeps whichever codebooks and codes gave the smallest error.
 */
export function fitGroup(vectors: Float32Array, count: number, o: GroupFitOptions, codes: Uint8Array, halves: Uint16Array): void {
  const { h, levels } = o;
  trainGreedy(vectors.slice(), count, h, levels, o.iters, o.seed, o.weights, codes, halves, o.kernel ?? true);
  if (o.beam <= 1 && o.refine <= 0) return;
  let values: Float32Array = Float32Array.from(halves, (half) => F16_TO_F32[half]);
  const trialCodes = new Uint8Array(codes.length);
  let bestError = encodeWithBeam(vectors, count, h, levels, K, values, o.beam, codes, o.weights);
  for (let round = 0; round < o.refine; round++) {
    const rounded = roundCodebook(refineCodebooks(vectors, count, h, levels, K, codes, values, o.weights));
    const error = encodeWithBeam(vectors, count, h, levels, K, rounded.values, o.beam, trialCodes, o.weights);
    if (!(error < bestError)) break;
    bestError = error;
    values = rounded.values;
    halves.set(rounded.halves);
    codes.set(trialCodes);
  }
}

/** Fits group G's codebooks and encodes its members, writing into the whole table's outputs. */
export function encodeGroup(matrix: Matrix, params: RvqParams, G: number, codes: Uint8Array, codebooks: Uint16Array): void {
  const { h, levels } = params;
  const S = subvectorCount(matrix.cols, h);
  const members = groupMembers(params.layout, G, matrix.rows, S, params.group);
  const vectors = gatherSubvectors(matrix, members, S, h);
  const groupCodes = new Uint8Array(members.length * levels);
  const rowWeights = params.weights ?? null;
  const weights = rowWeights === null ? null : Float32Array.from(members, (member) => rowWeights[Math.floor(member / S)]);
  const options = { h, levels, iters: params.iters, seed: deriveSeed(params.seed, G), beam: params.beam, refine: params.refine, weights };
  fitGroup(vectors, members.length, options, groupCodes, codebooks.subarray(G * levels * K * h, (G + 1) * levels * K * h));
  for (let i = 0; i < members.length; i++) codes.set(groupCodes.subarray(i * levels, (i + 1) * levels), members[i] * levels);
}

/** Sizes of an encoding's outputs: codes per table and FP16 values of all codebooks. */
export function encodingSizes(matrix: Matrix, params: RvqParams, groupCount: number): { codes: number; codebooks: number } {
  return { codes: matrix.rows * Math.ceil(matrix.cols / params.h) * params.levels, codebooks: groupCount * params.levels * K * params.h };
}

/** Trains every group's codebooks on `matrix` and encodes it, on this thread. `onGroup` reports progress. */
export function encodeRvq(matrix: Matrix, params: RvqParams, groupCount: number, onGroup?: (done: number) => void): RvqEncoding {
  const sizes = encodingSizes(matrix, params, groupCount);
  const codes = new Uint8Array(sizes.codes);
  const codebooks = new Uint16Array(sizes.codebooks);
  for (let G = 0; G < groupCount; G++) {
    encodeGroup(matrix, params, G, codes, codebooks);
    onGroup?.(G + 1);
  }
  return { codes, codebooks, groupCount };
}

/** The f32 values of FP16 codebooks (or row scales). */
export function halvesToF32(halves: Uint16Array): Float32Array {
  return Float32Array.from(halves, (half) => F16_TO_F32[half]);
}

/**
 * Decodes row t into out[at, at + cols): per sub-vector the f32 sum of its L centroids in level
 * order (FORMAT.md, "Decoding"), times `scale` when the rows are gain-shape coded (scale null:
 * not). `values` are the codebooks' f32 values; the codes are `codes`' (shape's code order).
 */
export function decodeRvqRow(
  values: Float32Array,
  codes: Uint8Array,
  s: RvqShape,
  t: number,
  scale: number | null,
  out: Float32Array,
  at: number,
): void {
  const S = subvectorCount(s.cols, s.h);
  const L = s.levels;
  for (let j = 0; j < S; j++) {
    const groupBase = groupOf(s.layout, t, j, S, s.group) * L * K * s.h;
    const first = (t * S + j) * L;
    const width = Math.min(s.h, s.cols - j * s.h);
    for (let e = 0; e < width; e++) {
      let acc = 0;
      for (let l = 0; l < L; l++) acc = Math.fround(acc + values[groupBase + (l * K + codes[first + l]) * s.h + e]);
      out[at + j * s.h + e] = scale === null ? acc : Math.fround(acc * scale);
    }
  }
}

/** The table an encoding decodes to (codebook values may be given as f32, e.g. while they are tuned). */
export function decodeRvq(encoding: RvqEncoding, s: RvqShape, values: Float32Array = halvesToF32(encoding.codebooks)): Matrix {
  const data = new Float32Array(s.rows * s.cols);
  const scales = encoding.rowScales ? halvesToF32(encoding.rowScales.halves) : null;
  for (let t = 0; t < s.rows; t++)
    decodeRvqRow(values, encoding.codes, s, t, scales === null ? null : scales[encoding.rowScales!.index[t]], data, t * s.cols);
  return { rows: s.rows, cols: s.cols, data };
}

/**
 * Codes for `matrix` against fixed codebooks (`encoding.codebooks`, e.g. trained on other rows):
 * each sub-vector encoded against its group's codebooks, greedily or by beam search.
 */
export function encodeRvqWith(matrix: Matrix, s: RvqShape, codebooks: Uint16Array, beam: number): RvqEncoding {
  const S = subvectorCount(s.cols, s.h);
  const L = s.levels;
  const groupCount = codebooks.length / (L * K * s.h);
  const values = halvesToF32(codebooks);
  const codes = new Uint8Array(s.rows * S * L);
  for (let G = 0; G < groupCount; G++) {
    const members = groupMembers(s.layout, G, s.rows, S, s.group);
    const vectors = gatherSubvectors(matrix, members, S, s.h);
    const groupCodes = new Uint8Array(members.length * L);
    encodeWithBeam(vectors, members.length, s.h, L, K, values.subarray(G * L * K * s.h, (G + 1) * L * K * s.h), beam, groupCodes);
    for (let i = 0; i < members.length; i++) codes.set(groupCodes.subarray(i * L, (i + 1) * L), members[i] * L);
  }
  return { codes, codebooks, groupCount };
}
