// The matmul backend the commands run Hugging Face models on: the WASM SIMD kernel on worker
// threads (tools/hf/matmul-pool.ts). Its products have the same bits as the JavaScript reference
// for any thread count, so the thread count changes the speed, never a figure.
import { defaultThreads } from "../quant/parallel.ts";
import type { MatmulBackend } from "./matmul.ts";
import { openMatmul } from "./matmul-pool.ts";

/** Opens the kernel on `threads` threads (default: the machine's cores); close it when done. */
export function openMatmulBackend(threads = defaultThreads()): Promise<MatmulBackend> {
  return openMatmul({ threads });
}
