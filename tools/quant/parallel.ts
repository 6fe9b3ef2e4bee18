// Spreads RVQ group fitting over worker threads sharing the matrix and outputs through
// SharedArrayBuffers. One thread asked for, or one group to fit, runs on the calling thread; more
// need the worker bundle (dist/rvq-worker.mjs), and a missing one is an error, not one thread.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { builtFile } from "../built.ts";
import type { Matrix } from "../matrix.ts";
import { encodeRvq, encodingSizes, type RvqEncoding, type RvqParams } from "./rvq.ts";

export interface RvqWorkerData {
  rows: number;
  cols: number;
  matrix: SharedArrayBuffer;
  codes: SharedArrayBuffer;
  codebooks: SharedArrayBuffer;
  /** Int32 [next group to take, groups finished]. */
  counters: SharedArrayBuffer;
  params: RvqParams;
  groupCount: number;
}

const RVQ_WORKER = "rvq-worker.mjs";

/** A worker bundle in dist/ (from the source tree, the CLI bundle or a bundle in build/); a one-line error if not built. */
export function workerBundle(file: string): string {
  return builtFile(`dist/${file}`);
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(availableParallelism(), 16));
}

function shared(bytes: number): SharedArrayBuffer {
  return new SharedArrayBuffer(Math.max(bytes, 8));
}

/** Runs `encodeRvq` on `threads` workers; the result is identical to the single-thread one. */
export async function encodeRvqParallel(
  matrix: Matrix,
  params: RvqParams,
  groupCount: number,
  threads: number,
  onGroup?: (done: number) => void,
): Promise<RvqEncoding> {
  const workers = Math.min(threads, groupCount);
  if (workers <= 1) return encodeRvq(matrix, params, groupCount, onGroup);
  const path = workerBundle(RVQ_WORKER);
  const sizes = encodingSizes(matrix, params, groupCount);
  const job: RvqWorkerData = {
    rows: matrix.rows,
    cols: matrix.cols,
    matrix: shared(matrix.data.byteLength),
    codes: shared(sizes.codes),
    codebooks: shared(sizes.codebooks * 2),
    counters: shared(8),
    params,
    groupCount,
  };
  new Float32Array(job.matrix).set(matrix.data);
  const counters = new Int32Array(job.counters);
  const report = setInterval(() => onGroup?.(Atomics.load(counters, 1)), 250);
  try {
    await Promise.all(
      Array.from({ length: workers }, () => {
        const worker = new Worker(path, { workerData: job });
        return new Promise<void>((resolve, reject) => {
          worker.once("error", reject);
          worker.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`RVQ worker exited with code ${code}`))));
        });
      }),
    );
  } finally {
    clearInterval(report);
  }
  onGroup?.(groupCount);
  return { codes: new Uint8Array(job.codes, 0, sizes.codes), codebooks: new Uint16Array(job.codebooks, 0, sizes.codebooks), groupCount };
}
