// The matmul backend the commands run Hugging Face models on.
import { referenceBackend, type MatmulBackend } from "./matmul.ts";

/** Opens the fastest available backend; close it when done. */
export async function openMatmulBackend(): Promise<MatmulBackend> {
  return referenceBackend;
}
