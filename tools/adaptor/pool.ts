// Spreads the trainer's matrix products over worker threads. Every thread maps the same shared
// heap (TrainHeap) and instantiates the kernel on it; a product's output is cut into tiles that the
// main thread and the workers take from a shared counter. Each output element is computed whole by
// whichever thread takes its tile, with the same operations in the same order, so the result is
// the same bits for any number of threads. One thread asked for runs on the main thread alone;
// more need the worker bundle (dist/train-worker.mjs), and a missing one is an error.
import { Worker } from "node:worker_threads";
import { workerBundle } from "../quant/parallel.ts";
import { runGemm, runTiled, trainKernelModule, type GemmJob, type KernelExports, type TrainHeap } from "./kernels.ts";

/** Control words (Int32) shared with the workers. */
export const CTRL = { GEN: 0, NEXT: 1, FINISHED: 2, STOP: 3, PARAMS: 4 } as const;
/** Job parameters after CTRL.PARAMS: the GemmJob fields, then the tiling. */
export const PARAM_COUNT = 15;
export const CTRL_WORDS = CTRL.PARAMS + PARAM_COUNT;

export interface TrainWorkerData {
  memory: WebAssembly.Memory | null;
  buffer: SharedArrayBuffer;
  module: WebAssembly.Module | null;
  control: SharedArrayBuffer;
}

/** Products below this many flops run on the calling thread alone. */
const PARALLEL_MIN_FLOPS = 4e6;
/** How long the main thread waits for the workers to finish one product before giving up. */
const STALL_MS = 300_000;

function writeParams(ctrl: Int32Array, j: GemmJob, tileRows: number, tileCols: number): void {
  const values = [
    j.a,
    j.sai,
    j.sak,
    j.b,
    j.ldb,
    j.c,
    j.ldc,
    j.m,
    j.n,
    j.k,
    j.accumulate ? 1 : 0,
    tileRows,
    tileCols,
    Math.ceil(j.n / tileCols),
    Math.ceil(j.m / tileRows) * Math.ceil(j.n / tileCols),
  ];
  values.forEach((v, i) => Atomics.store(ctrl, CTRL.PARAMS + i, v));
}

/** Takes tiles of the current product until none are left (main thread and workers alike). */
export function runTiles(kernel: KernelExports | null, heap: Float32Array, ctrl: Int32Array): void {
  const p = (i: number) => Atomics.load(ctrl, CTRL.PARAMS + i);
  const [a, sai, sak, b, ldb, c, ldc, m, n, k, acc, tileRows, tileCols, across, tiles] = Array.from({ length: PARAM_COUNT }, (_, i) =>
    p(i),
  );
  for (let t = Atomics.add(ctrl, CTRL.NEXT, 1); t < tiles; t = Atomics.add(ctrl, CTRL.NEXT, 1)) {
    const i0 = Math.floor(t / across) * tileRows;
    const j0 = (t % across) * tileCols;
    runGemm(kernel, heap, {
      a: a + i0 * sai,
      sai,
      sak,
      b: b + j0,
      ldb,
      c: c + i0 * ldc + j0,
      ldc,
      m: Math.min(tileRows, m - i0),
      n: Math.min(tileCols, n - j0),
      k,
      accumulate: acc === 1,
    });
  }
}

/** Tile shape: rows a multiple of 4 and columns of 8 (the kernel's register tile), a few tiles per thread. */
function tiling(j: GemmJob, threads: number): [number, number] {
  const tileCols = Math.min(Math.ceil(j.n / 8) * 8, 256);
  let tileRows = 64;
  while (tileRows > 4 && Math.ceil(j.m / tileRows) * Math.ceil(j.n / tileCols) < 4 * threads) tileRows /= 2;
  return [tileRows, tileCols];
}

export class GemmPool {
  private readonly workers: Worker[] = [];
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(CTRL_WORDS * 4));
  private readonly kernel: KernelExports | null;

  private constructor(
    private readonly heap: TrainHeap,
    private readonly minFlops = PARALLEL_MIN_FLOPS,
  ) {
    this.kernel = heap.kernel;
  }

  /** A pool of `threads` threads in all (the caller's included) on `heap`; products under `minFlops` stay on the caller. */
  static async start(heap: TrainHeap, threads: number, minFlops = PARALLEL_MIN_FLOPS): Promise<GemmPool> {
    const pool = new GemmPool(heap, minFlops);
    if (threads <= 1) return pool;
    const path = workerBundle("train-worker.mjs");
    const data: TrainWorkerData = {
      memory: heap.memory,
      buffer: heap.buffer,
      module: heap.simd ? trainKernelModule() : null,
      control: pool.ctrl.buffer as SharedArrayBuffer,
    };
    const ready = Array.from({ length: threads - 1 }, () => {
      const worker = new Worker(path, { workerData: data });
      pool.workers.push(worker);
      return new Promise<void>((resolve, reject) => {
        worker.once("message", () => resolve());
        worker.once("error", reject);
        worker.once("exit", (code) => reject(new Error(`adaptor training worker exited with code ${code} before it started`)));
      });
    });
    try {
      await Promise.all(ready);
    } catch (err) {
      await pool.close();
      throw err;
    }
    for (const worker of pool.workers) worker.removeAllListeners("exit");
    return pool;
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Runs one product to completion, spread over the pool when it is large enough. `during`, if
   * given, is work of the calling thread that touches none of the product's inputs or outputs: it
   * runs while the workers take the first tiles (or after the product when there are no workers),
   * so the main thread's JavaScript between products no longer leaves the other cores idle. The
   * product's bits do not depend on who computes which tile, so neither does the result.
   */
  gemm(j: GemmJob, during?: () => void): void {
    if (this.workers.length === 0 || 2 * j.m * j.n * j.k < this.minFlops) {
      runTiled(this.kernel, this.heap.f32, j);
      during?.();
      return;
    }
    const ctrl = this.ctrl;
    const [tileRows, tileCols] = tiling(j, this.threads);
    writeParams(ctrl, j, tileRows, tileCols);
    Atomics.store(ctrl, CTRL.NEXT, 0);
    Atomics.store(ctrl, CTRL.FINISHED, 0);
    Atomics.add(ctrl, CTRL.GEN, 1);
    Atomics.notify(ctrl, CTRL.GEN);
    during?.();
    runTiles(this.kernel, this.heap.f32, ctrl);
    // Wait until every worker has left its tile loop, so none can take a tile of the next product.
    for (let f = Atomics.load(ctrl, CTRL.FINISHED); f < this.workers.length; f = Atomics.load(ctrl, CTRL.FINISHED)) {
      if (Atomics.wait(ctrl, CTRL.FINISHED, f, STALL_MS) === "timed-out") throw new Error("an adaptor training worker stopped responding");
    }
  }

  async close(): Promise<void> {
    Atomics.store(this.ctrl, CTRL.STOP, 1);
    Atomics.add(this.ctrl, CTRL.GEN, 1);
    Atomics.notify(this.ctrl, CTRL.GEN);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
