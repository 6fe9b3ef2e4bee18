// GFLOP/s of the trainer's matrix products on the shapes of the paper adaptor's widest layer
// (batch 1024, 512 -> 2048): forward Z = X·Wt, backward dX = dZ·W and dWt = Xᵀ·dZ.
//   node tools/dev/bundle.mjs tools/dev/bench/adaptor-train.ts build/bench-train.mjs --packages=external &&
//     node build/bench-train.mjs [threads]
import { GemmPool } from "../../adaptor/pool.ts";
import { TrainHeap } from "../../adaptor/kernels.ts";
import { gemmJobs } from "./compress.ts";

const B = 1024,
  IN = 512,
  OUT = 2048;
const threads = Number(process.argv[2] ?? 1);
const heap = new TrainHeap(B * IN * 2 + IN * OUT * 3 + B * OUT * 2);
const pool = await GemmPool.start(heap, threads);
const jobs = gemmJobs(heap, B, IN, OUT);
console.log(`${heap.simd ? "SIMD" : "scalar"} kernel, ${threads} thread(s), ${B} x ${IN} x ${OUT}`);
for (const [name, job] of jobs) {
  pool.gemm(job);
  const reps = 5;
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) pool.gemm(job);
  const s = (performance.now() - t0) / 1000 / reps;
  console.log(`${name}  ${(s * 1000).toFixed(1)} ms  ${((2 * B * IN * OUT) / s / 1e9).toFixed(1)} GFLOP/s`);
}
await pool.close();
