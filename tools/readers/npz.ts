import { constants, inflateRawSync } from "node:zlib";
import { CarvqError } from "../errors.ts";
import { checkDataLength, MAX_NPY_PREAMBLE_READ, parseNpyLayout, type NpyLayout } from "./npy.ts";
import { printable, readBytes, type ModelFile } from "./modelFile.ts";
import type { TensorCatalog, TensorInfo } from "./tensor.ts";
import { checkInflateRatio, refuseMethod, ZIP_DEFLATED, ZIP_STORED, type ZipMember } from "./zip.ts";

/**
 * NumPy .npz: a zip archive of .npy members, stored (np.savez) or deflated (np.savez_compressed).
 * Each member "name.npy" is the array np.load(...)["name"]. A stored member's array is read straight
 * from the archive; a deflated one is inflated when it is read, and only its first bytes are
 * inflated here to read its header.
 */

/** Compressed bytes inflated to reach a deflated member's npy header (NumPy's headers are a few hundred bytes). */
const DEFLATED_HEADER_INPUT = 8192;

export function readNpzCatalog(file: ModelFile, members: readonly ZipMember[]): TensorCatalog {
  const arrays = members.filter((m) => m.name.endsWith(".npy"));
  if (arrays.length === 0)
    throw new CarvqError(
      `${file.path}: zip archive holds no .npy members (members: ${
        members
          .slice(0, 5)
          .map((m) => `'${printable(m.name, 60)}'`)
          .join(", ") || "none"
      })`,
    );
  return { format: "npz", tensors: arrays.map((member) => memberTensor(file, member)) };
}

function memberTensor(file: ModelFile, member: ZipMember): TensorInfo {
  const name = member.name.slice(0, -".npy".length);
  const where = `${file.path}: member '${printable(member.name)}'`;
  if (member.method === ZIP_STORED) {
    const layout = storedLayout(file, member, where);
    return { ...common(name, file, layout), offset: member.dataOffset + layout.dataStart };
  }
  if (member.method !== ZIP_DEFLATED) refuseMethod(where, member.method);
  checkInflateRatio(where, member);
  const layout = deflatedLayout(file, member, where);
  return {
    ...common(name, file, layout),
    offset: member.dataOffset,
    deflated: { length: member.compressedSize, skip: layout.dataStart, inflatedLength: member.size },
  };
}

function common(name: string, file: ModelFile, layout: NpyLayout) {
  const { dtype, shape, bigEndian, strides, byteLength } = layout;
  return { name, dtype, shape, file: file.path, byteLength, ...(bigEndian ? { bigEndian } : {}), ...(strides ? { strides } : {}) };
}

function storedLayout(file: ModelFile, member: ZipMember, where: string): NpyLayout {
  const read = (length: number) =>
    readBytes(file, member.dataOffset, Math.min(length, member.size), `member '${printable(member.name)}' npy header`);
  const layout = parseNpyLayout(where, read(MAX_NPY_PREAMBLE_READ), read);
  checkDataLength(where, layout, member.size - layout.dataStart);
  return layout;
}

function deflatedLayout(file: ModelFile, member: ZipMember, where: string): NpyLayout {
  const input = readBytes(
    file,
    member.dataOffset,
    Math.min(member.compressedSize, DEFLATED_HEADER_INPUT),
    `member '${printable(member.name)}' (deflated)`,
  );
  let head: Uint8Array;
  try {
    // A sync flush hands back what the prefix decodes to instead of failing on the stream's missing end.
    head = inflateRawSync(input, { finishFlush: constants.Z_SYNC_FLUSH });
  } catch (err) {
    throw new CarvqError(`${where} does not inflate (${printable((err as Error).message, 80)}); the archive is damaged`);
  }
  const layout = parseNpyLayout(where, head, () => head);
  checkDataLength(where, layout, member.size - layout.dataStart);
  return layout;
}
