// The k-means assignment step, the encoder's hot loop: a WASM SIMD kernel
// (assembly/quant/assign.ts, built to build/quant-kernels.wasm) and a scalar reference here that
// performs the same f32 operations in the same order, so the two give bit-identical assignments
// and blobs do not depend on which one ran. The kernel is always used (callers choose the
// reference explicitly: kmeans and fitGroup's `kernel: false`); a missing build is an error.
import { readFileSync } from "node:fs";
import { builtFile } from "../built.ts";
import { CarvqError } from "../errors.ts";

interface KernelInstance {
  memory: WebAssembly.Memory;
  assign16: (points: number, count: number, dim: number, centroidsT: number, norms: number, assignment: number, score: number) => void;
  nearest16: (points: number, count: number, dim: number, centroids: number, centroidsT64: number, codes: number) => void;
  lloyd16: (
    points: number,
    count: number,
    dim: number,
    centroids: number,
    centroidsT: number,
    norms: number,
    weights: number,
    pointNorm: number,
    assignment: number,
    score: number,
    pointDistance: number,
    sums: number,
    sizes: number,
  ) => number;
}

let kernel: KernelInstance | undefined;

/** build/quant-kernels.wasm, instantiated once; a one-line error when it is missing or out of date. */
function loadKernel(): KernelInstance {
  if (kernel !== undefined) return kernel;
  const path = builtFile("build/quant-kernels.wasm");
  const exports = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(path)), {}).exports as unknown as Partial<KernelInstance>;
  for (const name of ["memory", "assign16", "nearest16", "lloyd16"] as const) {
    if (exports[name] === undefined) throw new CarvqError(`${path}: out of date (no ${name}); run npm run build`);
  }
  kernel = exports as KernelInstance;
  return kernel;
}

/** Centroids (16 × dim, row-major) to dimension-major order, and their f32 squared norms. */
function prepareCentroids(centroids: Float32Array, dim: number): { transposed: Float32Array; norms: Float32Array } {
  const transposed = new Float32Array(16 * dim);
  const norms = new Float32Array(16);
  for (let k = 0; k < 16; k++) {
    let norm = 0;
    for (let e = 0; e < dim; e++) {
      const c = centroids[k * dim + e];
      transposed[e * 16 + k] = c;
      norm = Math.fround(norm + Math.fround(c * c));
    }
    norms[k] = norm;
  }
  return { transposed, norms };
}

/** The scalar reference of assign16: same f32 operations, same order, same tie rule. */
export function assign16Scalar(
  points: Float32Array,
  count: number,
  dim: number,
  centroids: Float32Array,
  assignment: Int32Array,
  score: Float32Array,
): void {
  const { transposed, norms } = prepareCentroids(centroids, dim);
  const acc = new Float32Array(16);
  for (let p = 0; p < count; p++) {
    acc.fill(0);
    for (let e = 0; e < dim; e++) {
      const x = points[p * dim + e];
      for (let k = 0; k < 16; k++) acc[k] = Math.fround(acc[k] + Math.fround(x * transposed[e * 16 + k]));
    }
    let best = 0;
    let bestScore = Math.fround(norms[0] - Math.fround(acc[0] + acc[0]));
    for (let k = 1; k < 16; k++) {
      const s = Math.fround(norms[k] - Math.fround(acc[k] + acc[k]));
      if (s < bestScore) {
        bestScore = s;
        best = k;
      }
    }
    assignment[p] = best;
    score[p] = bestScore;
  }
}

function assign16Simd(
  k: KernelInstance,
  points: Float32Array,
  count: number,
  dim: number,
  centroids: Float32Array,
  assignment: Int32Array,
  score: Float32Array,
): void {
  const { transposed, norms } = prepareCentroids(centroids, dim);
  const centroidsAt = 0;
  const normsAt = centroidsAt + transposed.byteLength;
  const pointsAt = normsAt + 64;
  const assignmentAt = pointsAt + count * dim * 4;
  const scoreAt = assignmentAt + count * 4;
  const needed = scoreAt + count * 4;
  const have = k.memory.buffer.byteLength;
  if (needed > have) k.memory.grow(Math.ceil((needed - have) / 65536));
  const heap = k.memory.buffer;
  new Float32Array(heap, centroidsAt, transposed.length).set(transposed);
  new Float32Array(heap, normsAt, 16).set(norms);
  new Float32Array(heap, pointsAt, count * dim).set(points.subarray(0, count * dim));
  k.assign16(pointsAt, count, dim, centroidsAt, normsAt, assignmentAt, scoreAt);
  assignment.set(new Int32Array(heap, assignmentAt, count));
  score.set(new Float32Array(heap, scoreAt, count));
}

/**
 * Nearest of 16 centroids (16 × dim, row-major) for each of `count` points: the index into
 * `assignment` and ||c||² − 2·p·c (the squared distance less ||p||²) into `score`.
 */
export function assign16(
  points: Float32Array,
  count: number,
  dim: number,
  centroids: Float32Array,
  assignment: Int32Array,
  score: Float32Array,
): void {
  assign16Simd(loadKernel(), points, count, dim, centroids, assignment, score);
}

/**
 * k-means with 16 centroids whose points stay in the kernel's memory for every Lloyd iteration
 * (lloyd16 in assembly/quant/assign.ts): the assignment, distances, change test and cluster sums
 * run in the kernel; the caller updates the centroids between iterations.
 */
export interface Lloyd16 {
  /** One iteration on `centroids` (16 × dim); returns whether any assignment changed. */
  iterate(centroids: Float32Array): boolean;
  /** Views into the kernel's memory, valid until the next call to lloyd16Session. */
  sums: Float64Array;
  sizes: Float64Array;
  pointDistance: Float64Array;
}

/** Bytes rounded up to 16, so every array (f64 ones included) starts aligned. */
function align(bytes: number): number {
  return Math.ceil(bytes / 16) * 16;
}

export function lloyd16Session(
  points: Float32Array,
  count: number,
  dim: number,
  weights: Float32Array | null,
  pointNorm: Float64Array,
): Lloyd16 {
  const k = loadKernel();
  const layout: Record<string, number> = {};
  let at = 0;
  for (const [name, bytes] of [
    ["centroids", 64 * dim],
    ["centroidsT", 64 * dim],
    ["norms", 64],
    ["sums", 128 * dim],
    ["sizes", 128],
    ["points", 4 * count * dim],
    ["weights", 4 * count],
    ["pointNorm", 8 * count],
    ["assignment", 4 * count],
    ["score", 8 * count],
    ["pointDistance", 8 * count],
  ] as const) {
    layout[name] = at;
    at += align(bytes);
  }
  const have = k.memory.buffer.byteLength;
  if (at > have) k.memory.grow(Math.ceil((at - have) / 65536));
  const heap = k.memory.buffer;
  new Float32Array(heap, layout.points, count * dim).set(points.subarray(0, count * dim));
  if (weights !== null) new Float32Array(heap, layout.weights, count).set(weights.subarray(0, count));
  new Float64Array(heap, layout.pointNorm, count).set(pointNorm.subarray(0, count));
  new Int32Array(heap, layout.assignment, count).fill(-1);
  const centroidsView = new Float32Array(heap, layout.centroids, 16 * dim);
  const L = layout;
  return {
    iterate: (centroids) => {
      centroidsView.set(centroids.subarray(0, 16 * dim));
      return (
        k.lloyd16(
          L.points,
          count,
          dim,
          L.centroids,
          L.centroidsT,
          L.norms,
          weights === null ? 0 : L.weights,
          L.pointNorm,
          L.assignment,
          L.score,
          L.pointDistance,
          L.sums,
          L.sizes,
        ) !== 0
      );
    },
    sums: new Float64Array(heap, L.sums, 16 * dim),
    sizes: new Float64Array(heap, L.sizes, 16),
    pointDistance: new Float64Array(heap, L.pointDistance, count),
  };
}

/**
 * Greedy encoding against 16 centroids in the kernel (nearest16 in assembly/quant/assign.ts): each
 * point's nearest centroid by f64 squared distance, first index on ties (nearestCentroid's choice),
 * into `codes`, and `points` replaced by their f32 residuals.
 */
export function nearest16(points: Float32Array, count: number, dim: number, centroids: Float32Array, codes: Int32Array): void {
  const k = loadKernel();
  const centroidsAt = 0;
  const transposedAt = align(64 * dim);
  const pointsAt = transposedAt + align(128 * dim);
  const codesAt = pointsAt + align(4 * count * dim);
  const needed = codesAt + 4 * count;
  const have = k.memory.buffer.byteLength;
  if (needed > have) k.memory.grow(Math.ceil((needed - have) / 65536));
  const heap = k.memory.buffer;
  new Float32Array(heap, centroidsAt, 16 * dim).set(centroids.subarray(0, 16 * dim));
  const inKernel = new Float32Array(heap, pointsAt, count * dim);
  inKernel.set(points.subarray(0, count * dim));
  k.nearest16(pointsAt, count, dim, centroidsAt, transposedAt, codesAt);
  points.set(inKernel);
  codes.set(new Int32Array(heap, codesAt, count));
}
