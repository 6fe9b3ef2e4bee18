import { extname } from "node:path";
import { CarvqError } from "../errors.ts";
import { GGUF_MAGIC, readGgufCatalog } from "./gguf.ts";
import { looksLikeLlama2c, readLlama2cCatalog } from "./llama2c.ts";
import { describeFirstBytes, printable, readBytes, withModelFile, type ModelFile } from "./modelFile.ts";
import { hasNpyMagic, readNpyCatalog } from "./npy.ts";
import { readNpzCatalog } from "./npz.ts";
import { isPytorchArchive, readPytorchCatalog } from "./pytorch.ts";
import { looksLikeSafetensors, readSafetensorsCatalog } from "./safetensors.ts";
import type { ModelFormat, TensorCatalog } from "./tensor.ts";
import { hasZipMagic, readZipDirectory } from "./zip.ts";

/** What a single file's first bytes say it is: a model format, or a JSON file (an index or config). */
export type FileKind = ModelFormat | "json";

/**
 * Extensions that name a format; used only when the content matches no format, so that format's
 * parser says what is wrong with the file (a truncated header, a header length no safetensors file
 * has) rather than just "unknown format".
 */
const EXTENSION_HINTS: Readonly<Record<string, ModelFormat>> = {
  ".safetensors": "safetensors",
  ".gguf": "gguf",
  ".npy": "npy",
  ".npz": "npz",
  ".bin": "llama2c",
  ".pt": "pytorch",
  ".pth": "pytorch",
};

/**
 * Decides what a file is from its content: GGUF, npy and zip (npz, PyTorch) have magic numbers,
 * safetensors a plausible header length followed by '{', llama2.c a header whose implied size equals
 * the file size, JSON an opening brace. A pickle outside a zip is PyTorch's legacy format, refused.
 */
export function detectFileKind(file: ModelFile): FileKind {
  if (file.size === 0) throw new CarvqError(`${file.path}: file is empty; expected a model file`);
  const head = readBytes(file, 0, Math.min(64, file.size), "first bytes");
  const view = new DataView(head.buffer);
  if (head.length >= 4 && view.getUint32(0, true) === GGUF_MAGIC) return "gguf";
  if (hasNpyMagic(head)) return "npy";
  if (hasZipMagic(head)) return isPytorchArchive(readZipDirectory(file)) ? "pytorch" : "npz";
  if (looksLikeSafetensors(head, file.size)) return "safetensors";
  if (looksLikeLlama2c(head, file.size)) return "llama2c";
  const hinted = EXTENSION_HINTS[extname(file.path).toLowerCase()];
  if (hinted === undefined && new TextDecoder().decode(head).trimStart().startsWith("{")) return "json";
  if (head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) {
    throw new CarvqError(
      `${file.path}: a bare pickle (PyTorch's legacy format from before torch 1.6, or a pickle of some other object); carvq reads PyTorch's zip format: re-save it with a current torch.save, or convert it to safetensors`,
    );
  }
  if (hinted !== undefined) return hinted;
  throw new CarvqError(
    `${file.path}: unknown format (first bytes ${describeFirstBytes(head)}); expected safetensors, GGUF, .npy, .npz, a PyTorch .bin, a llama2.c checkpoint or a Hugging Face model folder`,
  );
}

/** The tensors of one model file, whatever its format (JSON files are handled by the checkpoint opener). */
export function readFileCatalog(path: string): TensorCatalog {
  return withModelFile(path, (file) => {
    const kind = detectFileKind(file);
    switch (kind) {
      case "safetensors":
        return readSafetensorsCatalog(file);
      case "gguf":
        return readGgufCatalog(file);
      case "npy":
        return readNpyCatalog(file);
      case "npz":
      case "pytorch": {
        // Chosen by extension or content: the directory says which (and a damaged archive says so here).
        const members = readZipDirectory(file);
        return isPytorchArchive(members) ? readPytorchCatalog(file, members) : readNpzCatalog(file, members);
      }
      case "llama2c":
        return readLlama2cCatalog(file);
      case "json":
        throw new CarvqError(`${printable(path)}: a JSON file where a model file was expected`);
    }
  });
}
