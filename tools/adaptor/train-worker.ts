// Worker-thread entry of the adaptor trainer (bundled to dist/train-worker.mjs): maps the shared
// heap, instantiates the kernel on it and takes tiles of each product the main thread posts
// (tools/adaptor/pool.ts) until told to stop.
import { parentPort, workerData } from "node:worker_threads";
import { instantiateKernel } from "./kernels.ts";
import { CTRL, runTiles, type TrainWorkerData } from "./pool.ts";

const data = workerData as TrainWorkerData;
const kernel = data.module !== null && data.memory !== null ? instantiateKernel(data.module, data.memory) : null;
const heap = new Float32Array(data.buffer);
const ctrl = new Int32Array(data.control);
let seen = Atomics.load(ctrl, CTRL.GEN);
parentPort?.postMessage("ready");
for (;;) {
  Atomics.wait(ctrl, CTRL.GEN, seen);
  seen = Atomics.load(ctrl, CTRL.GEN);
  if (Atomics.load(ctrl, CTRL.STOP) === 1) break;
  runTiles(kernel, heap, ctrl);
  Atomics.add(ctrl, CTRL.FINISHED, 1);
  Atomics.notify(ctrl, CTRL.FINISHED);
}
