// Builds the kernels that run on one imported shared memory, so that every worker thread runs them
// on the same buffers (SIMD, stub runtime):
//   build/train-kernels.wasm  the adaptor trainer's matrix products (assembly/train/*.ts), loaded by
//                             tools/adaptor/kernels.ts; without it the trainer falls back to the
//                             scalar reference (same bits, much slower);
//   build/hf-kernels.wasm     the transformer forward's weight products (assembly/hf/matmul.ts),
//                             loaded by tools/hf/matmul-kernel.ts.
// Called by tools/dev/build.mjs. Standalone: node tools/dev/build-train-kernels.mjs
import asc from "assemblyscript/asc";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export const TRAIN_KERNELS = "build/train-kernels.wasm";
export const HF_KERNELS = "build/hf-kernels.wasm";

/** Runs asc on one asconfig.json from the project root; throws with asc's messages on failure. */
async function buildConfig(config, outFile) {
  const cwd = process.cwd();
  process.chdir(root);
  try {
    let errors = "";
    const { error } = await asc.main(["--config", config], {
      stdout: { write: () => true },
      stderr: { write: (chunk) => ((errors += String(chunk)), true) },
    });
    if (error) throw new Error(`asc ${outFile} failed: ${error.message}\n${errors}`);
  } finally {
    process.chdir(cwd);
  }
}

export async function buildTrainKernels() {
  await buildConfig("assembly/train/asconfig.json", TRAIN_KERNELS);
}

export async function buildHfKernels() {
  await buildConfig("assembly/hf/asconfig.json", HF_KERNELS);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildTrainKernels();
  await buildHfKernels();
}
