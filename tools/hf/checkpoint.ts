// The tensors of a Hugging Face folder: model.safetensors, or the shards model.safetensors.index.json
// maps names to. Headers are parsed (and every byte range checked) by the safetensors reader; a
// tensor's bytes are read only when asked for.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CarvqError } from "../errors.ts";
import { closeModelFile, openModelFile, readBytes, type ModelFile } from "../readers/modelFile.ts";
import { readSafetensorsCatalog } from "../readers/safetensors.ts";
import { FLOAT_DTYPE_BYTES, type FloatDtype } from "../readers/tensor.ts";

export interface CheckpointTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly file: string;
  readonly offset: number;
  readonly byteLength: number;
}

export interface Checkpoint {
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
  /** The tensor's bytes as stored. */
  readRaw(name: string): Uint8Array;
  close(): void;
}

/** Opens `dir`'s safetensors file(s). */
export function openCheckpoint(dir: string): Checkpoint {
  const single = join(dir, "model.safetensors");
  const index = join(dir, "model.safetensors.index.json");
  const shards = existsSync(index) ? readIndex(index) : existsSync(single) ? ["model.safetensors"] : null;
  if (shards === null) throw new CarvqError(`${dir}: holds neither model.safetensors nor model.safetensors.index.json`);
  const files = new Map<string, ModelFile>();
  const tensors = new Map<string, CheckpointTensor>();
  try {
    for (const shard of shards) {
      const file = openModelFile(join(dir, shard));
      files.set(file.path, file);
      for (const t of readSafetensorsCatalog(file).tensors) {
        const elements = t.shape.reduce((a, b) => a * b, 1);
        const width = FLOAT_DTYPE_BYTES[t.dtype as FloatDtype];
        const byteLength = t.declaredByteLength ?? elements * (width ?? 0);
        if (width !== undefined && byteLength !== elements * width) {
          throw new CarvqError(`${file.path}: tensor ${t.name} spans ${byteLength} bytes; [${t.shape.join(", ")}] of ${t.dtype} needs ${elements * width}`);
        }
        if (tensors.has(t.name)) throw new CarvqError(`${file.path}: tensor ${t.name} is also in ${tensors.get(t.name)?.file}`);
        tensors.set(t.name, { dtype: t.dtype, shape: t.shape, file: file.path, offset: t.offset, byteLength });
      }
    }
  } catch (err) {
    for (const file of files.values()) closeModelFile(file);
    throw err;
  }
  return {
    tensors,
    readRaw(name) {
      const t = tensors.get(name);
      if (t === undefined) throw new CarvqError(`${dir}: no tensor ${name}`);
      return readBytes(files.get(t.file) as ModelFile, t.offset, t.byteLength, `tensor ${name}`);
    },
    close() {
      for (const file of files.values()) closeModelFile(file);
    },
  };
}

function readIndex(path: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(readFileSync(path, "utf8")) as { weight_map?: unknown }).weight_map;
  } catch (err) {
    throw new CarvqError(`${path}: cannot read as JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof map !== "object" || map === null) throw new CarvqError(`${path}: weight_map is missing; expected an object of tensor name to shard file`);
  const shards = new Set<string>();
  for (const value of Object.values(map)) {
    if (typeof value !== "string" || value.includes("/") || value.includes("\\")) throw new CarvqError(`${path}: weight_map names shard ${JSON.stringify(value)}; expected a file name in the folder`);
    shards.add(value);
  }
  return [...shards];
}
