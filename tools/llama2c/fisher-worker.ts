// Worker-thread entry for the curvature estimate (bundled to dist/fisher-worker.mjs): loads the
// model from its file once, then runs one sequence's draws and backward passes per message and
// sends back that sequence's gradient rows (tools/llama2c/fisher.ts adds them in sequence order).
import { parentPort, workerData } from "node:worker_threads";
import { sequenceRows, type SequenceJob } from "./fisher.ts";
import { inputEmbedding, loadLlama2cModel } from "./model.ts";

const model = loadLlama2cModel((workerData as { path: string }).path);
const table = inputEmbedding(model);
parentPort?.on("message", ({ s, job }: { s: number; job: SequenceJob }) => {
  const share = sequenceRows(model, table, job);
  parentPort?.postMessage({ s, share });
});
