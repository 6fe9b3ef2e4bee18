// The one matrix product of a Hugging Face transformer forward: out = x · Wᵀ, with W an
// nn.Linear weight kept at its stored precision (bf16, f16 or f32) and widened to f32 only inside
// the product, so a model's weights cost their file size in memory.
//
// Summation order (the same for every implementation: this reference, the WASM SIMD kernel and its
// scalar twin in assembly/hf/matmul.ts, any number of worker threads): each output element is
// docs/FORMAT.md's eight-lane sum of the f32 products f32(w[o, k]) · x[t, k], k = 0 .. inDim - 1
// (term k goes to lane k mod 8 for k < 8·floor(inDim/8), each lane adding in increasing k from +0;
// lanes combined as ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)); the last inDim mod 8 terms
// added one at a time), every product and sum rounded to f32, no fused multiply-add. It is the
// order the project's other SIMD kernels take (the adaptor's), it fits a weight row stored
// contiguously, and an output element never depends on how the outputs are split over threads.
import { laneDot } from "../adaptor/forward.ts";
import { convertBf16ToF32, convertF16ToF32 } from "../readers/halfFloat.ts";

/** How a weight matrix is stored: f32 in a Float32Array; f16 and bf16 as bit patterns in a Uint16Array. */
export type WeightDtype = "f32" | "f16" | "bf16";
export type WeightArray = Float32Array | Uint16Array;

/** out[t, o] = Σ_k f32(weight[o, k]) · x[t, k] (eight-lane order), for t < rows, o < outDim. */
export interface MatmulJob {
  /** rows × inDim, row-major (at least rows · inDim values). */
  x: Float32Array;
  /** Rows of x (tokens), T. */
  rows: number;
  /** outDim × inDim, row-major (an nn.Linear weight as stored), at its stored precision. */
  weight: WeightArray;
  dtype: WeightDtype;
  inDim: number;
  outDim: number;
  /** rows × outDim, row-major; overwritten. */
  out: Float32Array;
}

export type Matmul = (job: MatmulJob) => void;

/**
 * Where a forward keeps its weights and runs its products. A pooled backend (openMatmul in
 * tools/hf/matmul-pool.ts) places the weights allocated through it where its worker threads read
 * them without a copy per call; fill the array `allocWeight` returns, then pass it as a job's weight.
 * A weight array it did not allocate is copied in: per call when small (attention's keys and
 * values), once and kept for the pool's life when large (so allocate model weights through it).
 */
export interface MatmulBackend {
  /** Zeroed storage for `count` weight elements at `dtype` (Float32Array for f32, else Uint16Array). */
  allocWeight(dtype: WeightDtype, count: number): WeightArray;
  /** One product, synchronous; the same bits on every backend and thread count. */
  matmul(job: MatmulJob): void;
  /** Threads the products run on (the caller's included). */
  readonly threads: number;
  /** Ends the worker threads, if any. */
  close(): Promise<void>;
}

/** A one-line description of what is wrong with a job, or null when it is well formed. */
export function checkJob(job: MatmulJob): string | null {
  const { x, rows, weight, dtype, inDim, outDim, out } = job;
  for (const [name, v] of [
    ["rows", rows],
    ["inDim", inDim],
    ["outDim", outDim],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) return `matmul: ${name} must be a whole number >= 0, got ${v}`;
  }
  if (dtype !== "f32" && dtype !== "f16" && dtype !== "bf16") return `matmul: dtype must be f32, f16 or bf16, got ${String(dtype)}`;
  if (dtype === "f32" ? !(weight instanceof Float32Array) : !(weight instanceof Uint16Array)) {
    return `matmul: a ${dtype} weight must be a ${dtype === "f32" ? "Float32Array" : "Uint16Array of bit patterns"}, got ${weight?.constructor?.name}`;
  }
  if (weight.length < inDim * outDim) return `matmul: weight holds ${weight.length} values, ${outDim} x ${inDim} needs ${inDim * outDim}`;
  if (x.length < rows * inDim) return `matmul: x holds ${x.length} values, ${rows} x ${inDim} needs ${rows * inDim}`;
  if (out.length < rows * outDim) return `matmul: out holds ${out.length} values, ${rows} x ${outDim} needs ${rows * outDim}`;
  return null;
}

export function assertJob(job: MatmulJob): void {
  const problem = checkJob(job);
  if (problem !== null) throw new RangeError(problem);
}

/** Row `o` of the weight, widened to f32 (exact) into `row`. */
export function widenRow(job: Pick<MatmulJob, "weight" | "dtype" | "inDim">, o: number, row: Float32Array): void {
  const { weight, dtype, inDim } = job;
  const from = o * inDim;
  if (dtype === "f32") row.set((weight as Float32Array).subarray(from, from + inDim));
  else if (dtype === "bf16") convertBf16ToF32((weight as Uint16Array).subarray(from, from + inDim), row);
  else convertF16ToF32((weight as Uint16Array).subarray(from, from + inDim), row);
}

/**
 * The scalar reference: every output element the eight-lane sum above, in JavaScript with each
 * operation rounded to f32 (tools/adaptor/forward.ts's laneDot). Slow (about 0.1 GFLOP/s): it
 * defines the bits; the kernels reproduce them.
 */
export function matmulReference(job: MatmulJob): void {
  assertJob(job);
  const { x, rows, inDim, outDim, out } = job;
  const row = new Float32Array(inDim);
  const xRows = Array.from({ length: rows }, (_, t) => x.subarray(t * inDim, (t + 1) * inDim));
  for (let o = 0; o < outDim; o++) {
    widenRow(job, o, row);
    for (let t = 0; t < rows; t++) out[t * outDim + o] = laneDot(row, 0, xRows[t], inDim);
  }
}

function plainWeight(dtype: WeightDtype, count: number): WeightArray {
  return dtype === "f32" ? new Float32Array(count) : new Uint16Array(count);
}

/** The reference as a backend: plain arrays, the calling thread, no build needed. */
export const referenceBackend: MatmulBackend = {
  allocWeight: plainWeight,
  matmul: matmulReference,
  threads: 1,
  close: async () => {},
};
