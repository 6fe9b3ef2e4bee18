// Worker-thread entry for parallel RVQ fitting (bundled to dist/rvq-worker.mjs). Groups are taken
// from a shared counter; each group's result depends only on the group, so any number of workers
// gives the same bytes as one thread.
import { parentPort, workerData } from "node:worker_threads";
import { encodeGroup } from "./rvq.ts";
import type { RvqWorkerData } from "./parallel.ts";

const job = workerData as RvqWorkerData;
const matrix = { rows: job.rows, cols: job.cols, data: new Float32Array(job.matrix) };
const codes = new Uint8Array(job.codes);
const codebooks = new Uint16Array(job.codebooks);
const counters = new Int32Array(job.counters);
for (let G = Atomics.add(counters, 0, 1); G < job.groupCount; G = Atomics.add(counters, 0, 1)) {
  encodeGroup(matrix, job.params, G, codes, codebooks);
  Atomics.add(counters, 1, 1);
}
parentPort?.postMessage("done");
