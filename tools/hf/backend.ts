// The matmul backend the commands run Hugging Face models on: the WASM SIMD kernel on worker
// threads (tools/hf/matmul-pool.ts), the same bits as the JavaScript reference for any thread count.
import { defaultThreads } from "../quant/parallel.ts";
import type { MatmulBackend } from "./matmul.ts";
import { openMatmul } from "./matmul-pool.ts";

/** Opens the kernel pool on the machine's cores (at most 16); close it when done. */
export async function openMatmulBackend(threads = defaultThreads()): Promise<MatmulBackend> {
  return openMatmul({ threads });
}
