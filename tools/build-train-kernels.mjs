// Builds the adaptor trainer's matrix-product kernels (assembly/train/*.ts) into
// build/train-kernels.wasm: SIMD, stub runtime, and one imported shared memory so that every
// worker thread of the trainer runs the kernels on the same buffers. tools/adaptor/kernels.ts loads
// it; without it the trainer falls back to the scalar reference (same bits, much slower).
// Called by tools/build.mjs. Standalone: node tools/build-train-kernels.mjs
import asc from "assemblyscript/asc";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export const TRAIN_KERNELS = "build/train-kernels.wasm";

export async function buildTrainKernels() {
  const cwd = process.cwd();
  process.chdir(root);
  try {
    let errors = "";
    const { error } = await asc.main(
      ["--config", "assembly/train/asconfig.json"],
      { stdout: { write: () => true }, stderr: { write: (chunk) => ((errors += String(chunk)), true) } },
    );
    if (error) throw new Error(`asc ${TRAIN_KERNELS} failed: ${error.message}\n${errors}`);
  } finally {
    process.chdir(cwd);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await buildTrainKernels();
