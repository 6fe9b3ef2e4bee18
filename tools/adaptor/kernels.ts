// The adaptor trainer's matrix products: a WASM SIMD kernel (assembly/train/gemm.ts, built to
// build/train-kernels.wasm) on one shared memory that every worker thread also maps, and a scalar
// reference here that performs the same f32 operations in the same order, so the two give
// bit-identical results and a trained adaptor does not depend on which one ran, nor on how the
// output was split over threads. The kernel is always used unless a caller asks for the reference
// (TrainHeap's `simd: false`); a missing build is an error.
import { readFileSync } from "node:fs";
import { builtFile } from "../built.ts";

/** f32 offsets below this are left to the kernel module's own static data. */
const RESERVED_FLOATS = 16384;
const PAGE_BYTES = 65536;

/**
 * One product C (+)= A·B on a TrainHeap, offsets and strides in floats:
 * C[i, j] = (accumulate ? C[i, j] : 0) + Σ_k A(i, k)·B[k, j], A(i, k) at a + i·sai + k·sak,
 * B[k, j] at b + k·ldb + j, C[i, j] at c + i·ldc + j; i < m, j < n, k < K.
 */
export interface GemmJob {
  a: number;
  sai: number;
  sak: number;
  b: number;
  ldb: number;
  c: number;
  ldc: number;
  m: number;
  n: number;
  k: number;
  accumulate: boolean;
}

export interface KernelExports {
  gemm(
    a: number,
    sai: number,
    sak: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    m: number,
    n: number,
    k: number,
    accumulate: number,
  ): void;
}

let kernelModule: WebAssembly.Module | undefined;

/** build/train-kernels.wasm, compiled once; a one-line error when it is not built. */
export function trainKernelModule(): WebAssembly.Module {
  kernelModule ??= new WebAssembly.Module(readFileSync(builtFile("build/train-kernels.wasm")));
  return kernelModule;
}

/** The scalar reference: one f32 accumulator per C element, products added in order of k. */
export function gemmScalar(heap: Float32Array, j: GemmJob): void {
  const { a, sai, sak, b, ldb, c, ldc, m, n, k } = j;
  for (let i = 0; i < m; i++) {
    for (let col = 0; col < n; col++) {
      let acc = j.accumulate ? heap[c + i * ldc + col] : 0;
      let pa = a + i * sai;
      let pb = b + col;
      for (let kk = 0; kk < k; kk++) {
        acc = Math.fround(acc + Math.fround(heap[pa] * heap[pb]));
        pa += sak;
        pb += ldb;
      }
      heap[c + i * ldc + col] = acc;
    }
  }
}

/**
 * The trainer's working memory: one shared buffer (a shared WebAssembly.Memory when the kernel is
 * built, so workers can instantiate the kernel on it) with a bump allocator in floats.
 */
export class TrainHeap {
  readonly memory: WebAssembly.Memory | null;
  readonly buffer: SharedArrayBuffer;
  readonly f32: Float32Array;
  /** The kernel instance on this heap; null: the scalar reference. */
  readonly kernel: KernelExports | null;
  private next = RESERVED_FLOATS;

  /** A heap of `floats` usable floats; `simd: false` forces the scalar reference. */
  constructor(floats: number, simd = true) {
    const bytes = (RESERVED_FLOATS + floats) * 4;
    const pages = Math.ceil(bytes / PAGE_BYTES);
    if (pages > 65536) throw new RangeError(`the adaptor trainer needs ${bytes} bytes of working memory; at most 4 GiB fit`);
    if (simd) {
      const module = trainKernelModule();
      this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      this.buffer = this.memory.buffer as unknown as SharedArrayBuffer;
      this.kernel = instantiateKernel(module, this.memory);
    } else {
      this.memory = null;
      this.buffer = new SharedArrayBuffer(pages * PAGE_BYTES);
      this.kernel = null;
    }
    this.f32 = new Float32Array(this.buffer);
  }

  get simd(): boolean {
    return this.kernel !== null;
  }

  /** `count` floats (zeroed), aligned to 16 floats; returns the offset. */
  alloc(count: number): number {
    const at = this.next;
    this.next = at + Math.ceil(count / 16) * 16;
    if (this.next > this.f32.length) throw new RangeError(`adaptor trainer heap exhausted (${this.next} > ${this.f32.length} floats)`);
    return at;
  }

  view(at: number, count: number): Float32Array {
    return this.f32.subarray(at, at + count);
  }

  /** One product on the calling thread, in cache-sized tiles. */
  gemm(j: GemmJob): void {
    runTiled(this.kernel, this.f32, j);
  }
}

/** Instantiates the kernel on a shared memory (the main thread's heap or a worker's view of it). */
export function instantiateKernel(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
}

export function runGemm(kernel: KernelExports | null, heap: Float32Array, j: GemmJob): void {
  if (j.m <= 0 || j.n <= 0) return;
  if (kernel === null) return gemmScalar(heap, j);
  kernel.gemm(j.a * 4, j.sai, j.sak, j.b * 4, j.ldb, j.c * 4, j.ldc, j.m, j.n, j.k, j.accumulate ? 1 : 0);
}

/** Output tiles the kernel works through one at a time (rows a multiple of 4, columns of 8). */
export const TILE_ROWS = 64;
export const TILE_COLS = 256;

/** A product tile by tile on the calling thread (the same bits as one call: elements are independent). */
export function runTiled(kernel: KernelExports | null, heap: Float32Array, j: GemmJob, tileRows = TILE_ROWS, tileCols = TILE_COLS): void {
  for (let i0 = 0; i0 < j.m; i0 += tileRows) {
    for (let j0 = 0; j0 < j.n; j0 += tileCols) {
      runGemm(kernel, heap, {
        ...j,
        a: j.a + i0 * j.sai,
        b: j.b + j0,
        c: j.c + i0 * j.ldc + j0,
        m: Math.min(tileRows, j.m - i0),
        n: Math.min(tileCols, j.n - j0),
      });
    }
  }
}

/** Floats the heap must hold for these buffer sizes (each rounded to the allocator's alignment). */
export function heapFloats(sizes: readonly number[]): number {
  return sizes.reduce((sum, s) => sum + Math.ceil(s / 16) * 16, 0);
}
