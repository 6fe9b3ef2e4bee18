// The transformer forward's products on the WASM kernel and worker threads. Weights live in
// arenas (tools/hf/matmul-kernel.ts) that every thread maps, placed once by allocWeight. A product
// is cut by output columns into tiles that the calling thread and the workers take from a shared
// counter; each output element is computed whole by one thread in the one fixed order, so the
// result has the same bits for any number of threads (and as the JavaScript reference).
//
// Calls are synchronous: the calling thread works on tiles, then blocks (Atomics.wait) until the
// workers are done, like tools/adaptor/pool.ts. Opening the pool is asynchronous (the workers start).
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import { workerBundle } from "../quant/parallel.ts";
import { assertJob, type MatmulBackend, type MatmulJob, type WeightArray, type WeightDtype } from "./matmul.ts";
import {
  Arena,
  arenaCapacity,
  DTYPE_CODE,
  elementBytes,
  hfKernelModule,
  instantiateHfKernel,
  IO_BYTES,
  SCRATCH_BYTES,
  type HfKernelExports,
  type Placement,
} from "./matmul-kernel.ts";

/** Control words (Int32) shared with the workers. */
export const CTRL = { GEN: 0, NEXT: 1, FINISHED: 2, STOP: 3, ERROR: 4, PARAMS: 5 } as const;
/** Parameters after CTRL.PARAMS, in this order. */
const PARAM = {
  ARENA: 0,
  X: 1,
  ROWS: 2,
  W: 3,
  DTYPE: 4,
  IN: 5,
  OUT_DIM: 6,
  OUT: 7,
  TILE_COLS: 8,
  TILES: 9,
  SCRATCH: 10,
  SCALAR: 11,
} as const;
const PARAM_COUNT = 12;
const CTRL_WORDS = CTRL.PARAMS + PARAM_COUNT;

export const MATMUL_WORKER = "hf-matmul-worker.mjs";

/** Products below this many flops run on the calling thread alone (a hand-off costs tens of µs). */
const PARALLEL_MIN_FLOPS = 2e6;
/** How long the calling thread waits for the workers to finish one product before giving up. */
const STALL_MS = 300_000;

export interface MatmulWorkerData {
  module: WebAssembly.Module;
  control: SharedArrayBuffer;
  /** Arenas arrive on this port ({ id, memory }); errors go back on it. */
  port: MessagePort;
  /** This worker's thread index (its f16 scratch block); the calling thread is 0. */
  thread: number;
}

export interface ArenaMessage {
  id: number;
  memory: WebAssembly.Memory;
}

export interface MatmulPoolOptions {
  /** Threads in all, the caller's included (default 1). */
  threads?: number;
  /** Run the scalar twin instead of the SIMD kernel (tests; same bits, slower). */
  scalar?: boolean;
  /** Products under this many flops stay on the calling thread. */
  minFlops?: number;
  /** Bytes of each arena's I/O region (default IO_BYTES; tests make it small to exercise passes). */
  ioBytes?: number;
}

/** Takes tiles of the current product until none are left (calling thread and workers alike). */
export function runTiles(kernel: HfKernelExports, ctrl: Int32Array, thread: number): void {
  const p = (i: number) => Atomics.load(ctrl, CTRL.PARAMS + i);
  const x = p(PARAM.X),
    rows = p(PARAM.ROWS),
    w = p(PARAM.W),
    dtype = p(PARAM.DTYPE),
    inDim = p(PARAM.IN);
  const outDim = p(PARAM.OUT_DIM),
    out = p(PARAM.OUT),
    tileCols = p(PARAM.TILE_COLS),
    tiles = p(PARAM.TILES);
  const scratch = p(PARAM.SCRATCH) + thread * SCRATCH_BYTES;
  const scalar = p(PARAM.SCALAR) === 1;
  for (let t = Atomics.add(ctrl, CTRL.NEXT, 1); t < tiles; t = Atomics.add(ctrl, CTRL.NEXT, 1)) {
    const o0 = t * tileCols;
    const o1 = Math.min(outDim, o0 + tileCols);
    if (scalar) kernel.matmulScalar(x, rows, w, dtype, inDim, o0, o1, out, outDim);
    else kernel.matmul(x, rows, w, dtype, inDim, o0, o1, out, outDim, scratch);
  }
}

/** Output columns per tile: the kernel's cache block, made smaller where that leaves fewer than four tiles a thread. */
function tileColumns(kernel: HfKernelExports, inDim: number, outDim: number, dtype: WeightDtype, threads: number): number {
  const block = kernel.blockColumns(inDim, DTYPE_CODE[dtype]);
  const share = Math.ceil(outDim / (4 * threads) / 4) * 4;
  return Math.max(4, Math.min(block, share));
}

interface WorkerHandle {
  worker: Worker;
  /** Our end of the worker's port: arenas out, error text in. */
  port: MessagePort;
}

export class MatmulPool implements MatmulBackend {
  private readonly arenas: Arena[] = [];
  private readonly placements = new WeakMap<WeightArray, Placement>();
  /** Weights the caller allocated elsewhere and that were too big to copy per call: placed once. */
  private readonly adopted = new WeakMap<WeightArray, Placement>();
  private readonly workers: WorkerHandle[] = [];
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(CTRL_WORDS * 4));
  private readonly module: WebAssembly.Module;
  private readonly scalar: boolean;
  private readonly minFlops: number;
  private readonly threadCount: number;
  private readonly ioBytes: number;

  private constructor(options: MatmulPoolOptions) {
    this.module = hfKernelModule();
    this.threadCount = options.threads ?? 1;
    this.scalar = options.scalar === true;
    this.minFlops = options.minFlops ?? PARALLEL_MIN_FLOPS;
    this.ioBytes = options.ioBytes ?? IO_BYTES;
  }

  /** A pool of `threads` threads in all; throws when the kernel or (for threads > 1) the worker bundle is not built. */
  static async open(options: MatmulPoolOptions = {}): Promise<MatmulPool> {
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256)
      throw new RangeError(`matmul pool: threads must be a whole number from 1 to 256, got ${threads}`);
    const pool = new MatmulPool(options);
    if (threads === 1) return pool;
    const path = workerBundle(MATMUL_WORKER);
    const ready = Array.from({ length: threads - 1 }, (_, i) => {
      const channel = new MessageChannel();
      const data: MatmulWorkerData = {
        module: pool.module,
        control: pool.ctrl.buffer as SharedArrayBuffer,
        port: channel.port2,
        thread: i + 1,
      };
      const worker = new Worker(path, { workerData: data, transferList: [channel.port2] });
      pool.workers.push({ worker, port: channel.port1 });
      return new Promise<void>((resolve, reject) => {
        worker.once("message", () => resolve());
        worker.once("error", reject);
        worker.once("exit", (code) => reject(new Error(`matmul worker exited with code ${code} before it started`)));
      });
    });
    try {
      await Promise.all(ready);
    } catch (err) {
      await pool.close();
      throw err;
    }
    for (const { worker } of pool.workers) worker.removeAllListeners("exit");
    return pool;
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /** Bytes of weights and buffers the pool's arenas hold (their committed size). */
  get arenaBytes(): number {
    return this.arenas.reduce((sum, a) => sum + a.memory.buffer.byteLength, 0);
  }

  private newArena(): Arena {
    const arena = new Arena(this.arenas.length, this.module, this.threadCount, this.ioBytes);
    this.arenas.push(arena);
    const message: ArenaMessage = { id: arena.id, memory: arena.memory };
    for (const { port } of this.workers) port.postMessage(message);
    return arena;
  }

  private arenaFor(bytes: number): Arena {
    if (bytes > arenaCapacity(this.threadCount, this.ioBytes))
      throw new RangeError(
        `matmul pool: one weight of ${bytes} bytes exceeds an arena (${arenaCapacity(this.threadCount, this.ioBytes)} bytes, 4 GiB of WebAssembly memory)`,
      );
    return this.arenas.find((a) => a.free >= bytes + 64) ?? this.newArena();
  }

  allocWeight(dtype: WeightDtype, count: number): WeightArray {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`matmul pool: weight count must be a whole number >= 0, got ${count}`);
    const arena = this.arenaFor(count * elementBytes(dtype));
    const offset = arena.place(count * elementBytes(dtype));
    const view = arena.view(dtype, offset, count);
    this.placements.set(view, { arena, offset });
    return view;
  }

  /** The weight's placement; a foreign array too big to copy per call is copied in once and kept. */
  private placementOf(job: MatmulJob): Placement | null {
    const placed = this.placements.get(job.weight) ?? this.adopted.get(job.weight);
    if (placed !== undefined) return placed;
    const count = job.inDim * job.outDim;
    if (count * elementBytes(job.dtype) <= this.ioBytes / 4) return null;
    const view = this.allocWeight(job.dtype, count);
    if (job.dtype === "f32") (view as Float32Array).set((job.weight as Float32Array).subarray(0, count));
    else (view as Uint16Array).set((job.weight as Uint16Array).subarray(0, count));
    const placement = this.placements.get(view)!;
    this.adopted.set(job.weight, placement);
    return placement;
  }

  matmul(job: MatmulJob): void {
    assertJob(job);
    const { x, rows, weight, dtype, inDim, outDim, out } = job;
    if (rows === 0 || outDim === 0) return;
    let placement = this.placementOf(job);
    let io: number;
    if (placement === null) {
      // A small weight the pool did not allocate (attention's keys, a test's matrix): copied into the I/O region.
      const arena = this.arenas[0] ?? this.newArena();
      const count = inDim * outDim;
      const bytes = count * elementBytes(dtype);
      const view = arena.view(dtype, arena.io, count);
      if (dtype === "f32") (view as Float32Array).set((weight as Float32Array).subarray(0, count));
      else (view as Uint16Array).set((weight as Uint16Array).subarray(0, count));
      placement = { arena, offset: arena.io };
      io = arena.io + Math.ceil(bytes / 64) * 64;
    } else {
      io = placement.arena.io;
    }
    const { arena, offset } = placement;
    if (dtype === "f16" && arena.kernel.f16ScratchBytes(inDim) > SCRATCH_BYTES) {
      throw new RangeError(
        `matmul pool: f16 rows of ${inDim} weights need ${arena.kernel.f16ScratchBytes(inDim)} bytes of the kernel's scratch, more than its ${SCRATCH_BYTES}`,
      );
    }
    const room = arena.io + arena.ioBytes - io;
    const chunk = Math.min(rows, Math.floor(room / ((inDim + outDim) * 4)));
    if (chunk < 1)
      throw new RangeError(
        `matmul pool: one row of x (${inDim}) and of out (${outDim}) needs ${(inDim + outDim) * 4} bytes, more than the ${room} bytes of the pool's I/O region`,
      );
    const xAt = io;
    const outAt = io + Math.ceil((chunk * inDim * 4) / 64) * 64;
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const n = Math.min(chunk, rows - r0);
      arena.f32(xAt, n * inDim).set(x.subarray(r0 * inDim, (r0 + n) * inDim));
      this.run(arena, { x: xAt, rows: n, w: offset, dtype, inDim, outDim, out: outAt });
      out.set(arena.f32(outAt, n * outDim), r0 * outDim);
    }
  }

  /** One product inside an arena, spread over the threads when it is large enough. */
  private run(
    arena: Arena,
    j: { x: number; rows: number; w: number; dtype: WeightDtype; inDim: number; outDim: number; out: number },
  ): void {
    const code = DTYPE_CODE[j.dtype];
    if (this.workers.length === 0 || 2 * j.rows * j.inDim * j.outDim < this.minFlops) {
      if (this.scalar) arena.kernel.matmulScalar(j.x, j.rows, j.w, code, j.inDim, 0, j.outDim, j.out, j.outDim);
      else arena.kernel.matmul(j.x, j.rows, j.w, code, j.inDim, 0, j.outDim, j.out, j.outDim, arena.scratch);
      return;
    }
    const ctrl = this.ctrl;
    const tileCols = tileColumns(arena.kernel, j.inDim, j.outDim, j.dtype, this.threads);
    const params = [
      arena.id,
      j.x,
      j.rows,
      j.w,
      code,
      j.inDim,
      j.outDim,
      j.out,
      tileCols,
      Math.ceil(j.outDim / tileCols),
      arena.scratch,
      this.scalar ? 1 : 0,
    ];
    params.forEach((v, i) => Atomics.store(ctrl, CTRL.PARAMS + i, v | 0));
    Atomics.store(ctrl, CTRL.NEXT, 0);
    Atomics.store(ctrl, CTRL.FINISHED, 0);
    Atomics.store(ctrl, CTRL.ERROR, 0);
    Atomics.add(ctrl, CTRL.GEN, 1);
    Atomics.notify(ctrl, CTRL.GEN);
    let failure: unknown = null;
    try {
      runTiles(arena.kernel, ctrl, 0);
    } catch (err) {
      failure = err;
      Atomics.store(ctrl, CTRL.NEXT, 1 << 30); // the workers take no further tile
    }
    // Wait until every worker has left its tile loop, so none can take a tile of the next product.
    for (let f = Atomics.load(ctrl, CTRL.FINISHED); f < this.workers.length; f = Atomics.load(ctrl, CTRL.FINISHED)) {
      if (Atomics.wait(ctrl, CTRL.FINISHED, f, STALL_MS) === "timed-out") throw new Error("a matmul worker stopped responding");
    }
    if (failure !== null) throw failure;
    if (Atomics.load(ctrl, CTRL.ERROR) !== 0) {
      const messages = this.workers.map(({ port }) => receiveMessageOnPort(port)?.message).filter((m) => m !== undefined);
      throw new Error(`matmul worker failed: ${messages.join("; ") || "no message"}`);
    }
  }

  async close(): Promise<void> {
    Atomics.store(this.ctrl, CTRL.STOP, 1);
    Atomics.add(this.ctrl, CTRL.GEN, 1);
    Atomics.notify(this.ctrl, CTRL.GEN);
    await Promise.all(this.workers.map(({ worker }) => worker.terminate()));
    for (const { port } of this.workers) port.close();
    this.workers.length = 0;
  }
}

/** The WASM kernel on `threads` threads (default 1) as a MatmulBackend. */
export function openMatmul(options: MatmulPoolOptions = {}): Promise<MatmulPool> {
  return MatmulPool.open(options);
}

/** Instantiates the kernel on an arena a worker was sent (the worker's side of newArena). */
export function workerKernel(module: WebAssembly.Module, message: ArenaMessage): HfKernelExports {
  return instantiateHfKernel(module, message.memory);
}
