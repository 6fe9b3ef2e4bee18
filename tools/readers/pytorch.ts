import { CarvqError } from "../errors.ts";
import { printable, type ModelFile } from "./modelFile.ts";
import { isTensor, readPickle, storageDtype, type PickledStorage, type PickledTensor, type PickleValue } from "./pickle.ts";
import { ELEMENT_BYTES, type TensorCatalog, type TensorInfo } from "./tensor.ts";
import { checkInflateRatio, readZipMember, ZIP_DEFLATED, ZIP_STORED, type ZipMember } from "./zip.ts";

/**
 * PyTorch's zip checkpoints (torch.save since 1.6; pytorch_model.bin): a zip whose "<name>/data.pkl"
 * pickles the state dict, with each tensor's storage in "<name>/data/<key>" (stored uncompressed,
 * little-endian unless "<name>/byteorder" says "big"). The pickle is read by the restricted reader
 * in pickle.ts, which runs nothing; each tensor then points straight at its bytes in the archive.
 */

/** A PyTorch zip checkpoint has a pickle at "<archive>/data.pkl". */
export function isPytorchArchive(members: readonly ZipMember[]): boolean {
  return members.some((m) => m.name === "data.pkl" || m.name.endsWith("/data.pkl"));
}

export function readPytorchCatalog(file: ModelFile, members: readonly ZipMember[]): TensorCatalog {
  const pickleMember = members.find((m) => m.name === "data.pkl" || m.name.endsWith("/data.pkl"));
  if (pickleMember === undefined) throw new CarvqError(`${file.path}: zip archive has no data.pkl; expected a PyTorch checkpoint`);
  const prefix = pickleMember.name.slice(0, -"data.pkl".length);
  const byName = new Map(members.map((m) => [m.name, m]));
  const bigEndian = readByteOrder(file, byName.get(`${prefix}byteorder`));
  const where = `${file.path}: pickle '${printable(pickleMember.name)}'`;
  const root = readPickle(readZipMember(file, pickleMember), { where, persistentLoad: (pid) => loadStorage(where, pid) });
  const found: [string, PickledTensor][] = [];
  collectTensors(where, root, "", found, 0);
  if (found.length === 0) throw new CarvqError(`${where} holds no tensors; expected a state dict of tensors`);
  const tensors = found.map(([name, tensor]) => locateTensor(file, { name, tensor, prefix, byName, bigEndian }));
  return { format: "pytorch", tensors };
}

function readByteOrder(file: ModelFile, member: ZipMember | undefined): boolean {
  if (member === undefined) return false;
  const text = new TextDecoder().decode(readZipMember(file, member)).trim();
  if (text !== "little" && text !== "big")
    throw new CarvqError(`${file.path}: zip member '${printable(member.name)}' is '${printable(text, 20)}'; expected 'little' or 'big'`);
  return text === "big";
}

/** A persistent id ('storage', storage type, key, location, numel) becomes a storage reference. */
function loadStorage(where: string, pid: PickleValue): PickledStorage {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage")
    throw new CarvqError(`${where}: persistent id is not ('storage', type, key, location, numel); refusing`);
  const [, type, key, , numel] = pid;
  const dtype = storageDtype(type);
  if (dtype === null) throw new CarvqError(`${where}: storage type is not a torch storage type; refusing`);
  if (typeof key !== "string" || !/^[\w.-]{1,64}$/.test(key))
    throw new CarvqError(`${where}: storage key ${printable(JSON.stringify(String(key)), 40)} is not a plain name`);
  if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0)
    throw new CarvqError(`${where}: storage '${key}' numel is ${String(numel)}; expected a non-negative integer`);
  return { kind: "storage", dtype, key, numel };
}

/** Walks the state dict: string keys to tensors, nested dicts joined with "." (a checkpoint's {"model": {...}}); other values are skipped. */
function collectTensors(where: string, value: PickleValue, prefix: string, found: [string, PickledTensor][], depth: number): void {
  if (isTensor(value)) {
    // torch.save(tensor) pickles a bare tensor; it is listed as "tensor".
    found.push([prefix === "" ? "tensor" : prefix, value]);
    return;
  }
  if (!(value instanceof Map) || depth > 8) return;
  for (const [key, item] of value) {
    if (typeof key !== "string") continue;
    collectTensors(where, item, prefix === "" ? key : `${prefix}.${key}`, found, depth + 1);
  }
}

interface TensorPlace {
  name: string;
  tensor: PickledTensor;
  prefix: string;
  byName: ReadonlyMap<string, ZipMember>;
  bigEndian: boolean;
}

/** Points a tensor at its bytes: the storage member, plus the tensor's offset; strided views keep their strides. */
function locateTensor(file: ModelFile, place: TensorPlace): TensorInfo {
  const { name, tensor, prefix, byName, bigEndian } = place;
  const where = `${file.path}: tensor '${printable(name)}'`;
  const memberName = `${prefix}data/${tensor.storage.key}`;
  const member = byName.get(memberName);
  if (member === undefined) throw new CarvqError(`${where}: its storage '${printable(memberName)}' is not in the archive`);
  const dtype = tensor.dtype ?? tensor.storage.dtype;
  if (dtype === undefined) throw new CarvqError(`${where}: an untyped storage without a dtype`);
  const elementBytes = ELEMENT_BYTES[dtype];
  const elements = tensor.shape.reduce((product, d) => product * d, 1);
  const contiguous = isContiguous(tensor.shape, tensor.stride);
  // Elements the view spans in its storage, from its first element to its last.
  const spanElements =
    elements === 0 ? 0 : contiguous ? elements : 1 + tensor.shape.reduce((sum, d, i) => sum + (d - 1) * tensor.stride[i], 0);
  const start = tensor.storageOffset * elementBytes;
  const byteLength = spanElements * elementBytes;
  if (start + byteLength > member.size) {
    throw new CarvqError(
      `${where}: spans bytes ${start}..${start + byteLength} of its storage '${printable(memberName)}', which has ${member.size}; the checkpoint is damaged`,
    );
  }
  const base = {
    name,
    dtype,
    shape: tensor.shape,
    file: file.path,
    byteLength,
    ...(bigEndian && elementBytes > 1 ? { bigEndian } : {}),
    ...(contiguous ? {} : { strides: tensor.stride }),
  };
  if (member.method === ZIP_STORED) return { ...base, offset: member.dataOffset + start };
  if (member.method === ZIP_DEFLATED) {
    checkInflateRatio(`${where}: storage '${printable(memberName)}'`, member);
    return { ...base, offset: member.dataOffset, deflated: { length: member.compressedSize, skip: start, inflatedLength: member.size } };
  }
  throw new CarvqError(
    `${where}: its storage '${printable(memberName)}' uses compression method ${member.method}; expected stored or deflate`,
  );
}

/** Row-major strides (dimensions of size 1 may have any stride). */
function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}
