// The WASM SIMD kernel of the transformer forward's products (assembly/hf/matmul.ts, built to
// build/hf-kernels.wasm by tools/dev/build-train-kernels.mjs) and the memory it runs on: arenas, each one
// shared WebAssembly.Memory of at most 4 GiB that holds weights (placed once, read by every
// thread without a copy), one I/O region for x and out, and an f16 scratch block per thread.
// A model larger than one arena spreads over several. No fallback: a missing build is an error
// that says how to make it (the JavaScript reference in matmul.ts is there to be chosen, not
// slipped in).
import { readFileSync } from "node:fs";
import { builtFile } from "../built.ts";
import type { WeightArray, WeightDtype } from "./matmul.ts";

export interface HfKernelExports {
  /** out[t·ldo + o] for t < rows, o0 <= o < o1; addresses in bytes; dtype codes in DTYPE_CODE. */
  matmul(
    x: number,
    rows: number,
    w: number,
    dtype: number,
    inDim: number,
    o0: number,
    o1: number,
    out: number,
    ldo: number,
    scratch: number,
  ): void;
  /** The scalar twin: same arguments but scratch, same bits. */
  matmulScalar(x: number, rows: number, w: number, dtype: number, inDim: number, o0: number, o1: number, out: number, ldo: number): void;
  f16ScratchBytes(inDim: number): number;
  /** Output columns per cache block of the kernel, for weights of this width and dtype code. */
  blockColumns(inDim: number, dtype: number): number;
}

export const DTYPE_CODE: Record<WeightDtype, number> = { f32: 0, f16: 1, bf16: 2 };

export function elementBytes(dtype: WeightDtype): number {
  return dtype === "f32" ? 4 : 2;
}

let kernelModule: WebAssembly.Module | undefined;

/** build/hf-kernels.wasm; a one-line error (what to run) when it is not built. */
export function hfKernelModule(): WebAssembly.Module {
  kernelModule ??= new WebAssembly.Module(readFileSync(builtFile("build/hf-kernels.wasm")));
  return kernelModule;
}

export function instantiateHfKernel(module: WebAssembly.Module, memory: WebAssembly.Memory): HfKernelExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as HfKernelExports;
}

const PAGE = 65536;
const MAX_PAGES = 65536;
/** Bytes at the start of an arena left to the kernel module (it has no static data today). */
const RESERVED_BYTES = PAGE;
/** Per-thread f16 scratch: the kernel's widened block for any inDim up to 65536. */
export const SCRATCH_BYTES = 1 << 20;
/** Default I/O region: x and out of one pass (rows are cut into passes that fit), and small weights copied per call. */
export const IO_BYTES = 64 << 20;
/** Weights are placed on 64-byte boundaries (a cache line). */
const ALIGN = 64;

/** Where one weight matrix lives. */
export interface Placement {
  arena: Arena;
  /** Byte offset of element 0 in the arena. */
  offset: number;
}

/** One shared memory with the kernel instantiated on it (on the thread that made it). */
export class Arena {
  readonly memory: WebAssembly.Memory;
  readonly kernel: HfKernelExports;
  /** Byte offset of thread i's f16 scratch: scratch + i · SCRATCH_BYTES. */
  readonly scratch: number;
  /** Byte offset of the I/O region, ioBytes long. */
  readonly io: number;
  private next: number;

  constructor(
    readonly id: number,
    module: WebAssembly.Module,
    threads: number,
    readonly ioBytes = IO_BYTES,
  ) {
    this.scratch = RESERVED_BYTES;
    this.io = this.scratch + threads * SCRATCH_BYTES;
    this.next = this.io + ioBytes;
    this.memory = new WebAssembly.Memory({ initial: Math.ceil(this.next / PAGE), maximum: MAX_PAGES, shared: true });
    this.kernel = instantiateHfKernel(module, this.memory);
  }

  /** Bytes still free for weights. */
  get free(): number {
    return MAX_PAGES * PAGE - this.next;
  }

  /** Room for `bytes` of weights (grows the memory; zeroed); returns the byte offset. */
  place(bytes: number): number {
    const at = Math.ceil(this.next / ALIGN) * ALIGN;
    const end = at + bytes;
    if (end > MAX_PAGES * PAGE) throw new RangeError(`arena ${this.id}: ${bytes} bytes do not fit`);
    const pages = Math.ceil(end / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (pages > 0) this.memory.grow(pages);
    this.next = end;
    return at;
  }

  /** A typed view of `count` elements at `offset` (f32: Float32Array; f16, bf16: Uint16Array). */
  view(dtype: WeightDtype, offset: number, count: number): WeightArray {
    const buffer = this.memory.buffer;
    return dtype === "f32" ? new Float32Array(buffer, offset, count) : new Uint16Array(buffer, offset, count);
  }

  f32(offset: number, count: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, count);
  }
}

/** The most weight bytes one arena can hold (what is left of 4 GiB after its scratch and I/O). */
export function arenaCapacity(threads: number, ioBytes = IO_BYTES): number {
  return MAX_PAGES * PAGE - Math.ceil((RESERVED_BYTES + threads * SCRATCH_BYTES + ioBytes) / ALIGN) * ALIGN;
}
