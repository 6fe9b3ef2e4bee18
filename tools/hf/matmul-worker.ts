// Worker-thread entry of the transformer forward's products (bundled to dist/hf-matmul-worker.mjs):
// instantiates the kernel on each arena the pool sends (tools/hf/matmul-pool.ts) and takes tiles
// of each product until told to stop. A failure is reported through the control words and the
// port, never swallowed.
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import type { HfKernelExports } from "./matmul-kernel.ts";
import { CTRL, runTiles, workerKernel, type ArenaMessage, type MatmulWorkerData } from "./matmul-pool.ts";

const data = workerData as MatmulWorkerData;
const ctrl = new Int32Array(data.control);
const kernels = new Map<number, HfKernelExports>();
/** How long to wait for an arena the pool posted before the product that uses it. */
const ARENA_WAIT_MS = 10_000;

/** The kernel on arena `id`, taking the pool's queued arena messages until it has arrived. */
function kernelFor(id: number): HfKernelExports {
  const idle = new Int32Array(new SharedArrayBuffer(4));
  for (let waited = 0; !kernels.has(id); ) {
    const received = receiveMessageOnPort(data.port);
    if (received !== undefined) {
      const message = received.message as ArenaMessage;
      kernels.set(message.id, workerKernel(data.module, message));
    } else {
      if (waited >= ARENA_WAIT_MS) throw new Error(`arena ${id} never arrived`);
      Atomics.wait(idle, 0, 0, 1);
      waited += 1;
    }
  }
  return kernels.get(id)!;
}

let seen = Atomics.load(ctrl, CTRL.GEN);
parentPort?.postMessage("ready");
for (;;) {
  Atomics.wait(ctrl, CTRL.GEN, seen);
  seen = Atomics.load(ctrl, CTRL.GEN);
  if (Atomics.load(ctrl, CTRL.STOP) === 1) break;
  try {
    runTiles(kernelFor(Atomics.load(ctrl, CTRL.PARAMS)), ctrl, data.thread);
  } catch (err) {
    data.port.postMessage(`thread ${data.thread}: ${err instanceof Error ? err.message : String(err)}`);
    Atomics.store(ctrl, CTRL.ERROR, 1);
  }
  Atomics.add(ctrl, CTRL.FINISHED, 1);
  Atomics.notify(ctrl, CTRL.FINISHED);
}
