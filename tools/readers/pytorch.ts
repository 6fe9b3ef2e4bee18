import { CarvqError } from "../errors.ts";
import type { ModelFile } from "./modelFile.ts";
import type { TensorCatalog } from "./tensor.ts";
import type { ZipMember } from "./zip.ts";

/** A PyTorch zip checkpoint has a pickle at "<archive>/data.pkl". */
export function isPytorchArchive(members: readonly ZipMember[]): boolean {
  return members.some((m) => m.name === "data.pkl" || m.name.endsWith("/data.pkl"));
}

export function readPytorchCatalog(file: ModelFile, _members: readonly ZipMember[]): TensorCatalog {
  throw new CarvqError(`${file.path}: PyTorch checkpoints are not read yet`);
}
