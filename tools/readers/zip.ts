import { inflateRawSync } from "node:zlib";
import { crc32 } from "../crc32.ts";
import { CarvqError } from "../errors.ts";
import { printable, readBytes, type ModelFile } from "./modelFile.ts";

/**
 * The central directory of a zip archive (.npz, PyTorch's pytorch_model.bin), read without
 * unpacking anything: each member's name, method, sizes and where its data starts, so a reader can
 * take one member's bytes straight from the file. ZIP64 sizes and offsets (archives over 4 GiB) are
 * understood; encrypted members and multi-disk archives are refused.
 */

export const ZIP_LOCAL_MAGIC = 0x04034b50; // "PK\x03\x04"
const EOCD_MAGIC = 0x06054b50;
const ZIP64_LOCATOR_MAGIC = 0x07064b50;
const ZIP64_EOCD_MAGIC = 0x06064b50;
const CENTRAL_MAGIC = 0x02014b50;
const EOCD_BYTES = 22;
const MAX_COMMENT_BYTES = 0xffff;
const CENTRAL_FIXED_BYTES = 46;
const LOCAL_FIXED_BYTES = 30;
/** Members an archive may list; a checkpoint has a few thousand at most. */
const MAX_MEMBERS = 1_000_000;
/** Largest member read whole into memory (a pickle, an npy header): 256 MiB. */
const MAX_MEMBER_READ = 1 << 28;

/**
 * A deflated member may state at most this many times its compressed size once it is past
 * MAX_INFLATE_UNCHECKED: tables of floats barely compress (about 1.1:1), while a zip bomb states
 * gigabytes for kilobytes (deflate reaches 1032:1). Checked before anything is inflated.
 */
const MAX_INFLATE_RATIO = 32;
const MAX_INFLATE_UNCHECKED = 64 << 20;

export const ZIP_STORED = 0;
export const ZIP_DEFLATED = 8;

export interface ZipMember {
  readonly name: string;
  /** 0 stored, 8 deflated; anything else is refused when the member is read. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc: number;
  /** Absolute offset of the member's (possibly compressed) data in the archive. */
  readonly dataOffset: number;
}

/** True when the file starts like a zip archive (a local file header or an empty archive's end record). */
export function hasZipMagic(firstBytes: Uint8Array): boolean {
  return (
    firstBytes.length >= 4 &&
    firstBytes[0] === 0x50 &&
    firstBytes[1] === 0x4b &&
    ((firstBytes[2] === 3 && firstBytes[3] === 4) || (firstBytes[2] === 5 && firstBytes[3] === 6))
  );
}

/** Reads the archive's central directory and locates every member's data. */
export function readZipDirectory(file: ModelFile): ZipMember[] {
  const end = findEndRecord(file);
  const members: ZipMember[] = [];
  const directory = readBytes(file, end.directoryOffset, end.directorySize, "zip central directory");
  const view = new DataView(directory.buffer);
  let position = 0;
  for (let i = 0; i < end.count; i++) {
    if (position + CENTRAL_FIXED_BYTES > directory.length || view.getUint32(position, true) !== CENTRAL_MAGIC) {
      throw new CarvqError(
        `${file.path}: zip central directory entry #${i} at byte ${end.directoryOffset + position} is damaged (the directory lists ${end.count} members)`,
      );
    }
    const entry = parseCentralEntry(file, directory, position, i);
    members.push(entry.member);
    position = entry.next;
  }
  return members;
}

interface EndRecord {
  count: number;
  directoryOffset: number;
  directorySize: number;
}

/** Finds the end-of-central-directory record (and its ZIP64 twin) in the last 64 KiB of the file. */
function findEndRecord(file: ModelFile): EndRecord {
  const tailLength = Math.min(file.size, EOCD_BYTES + MAX_COMMENT_BYTES);
  const tailStart = file.size - tailLength;
  const tail = readBytes(file, tailStart, tailLength, "zip end record");
  const view = new DataView(tail.buffer);
  let at = -1;
  for (let i = tail.length - EOCD_BYTES; i >= 0; i--) {
    if (view.getUint32(i, true) === EOCD_MAGIC && i + EOCD_BYTES + view.getUint16(i + 20, true) === tail.length) {
      at = i;
      break;
    }
  }
  if (at < 0)
    throw new CarvqError(
      `${file.path}: zip end-of-central-directory record not found in the last ${tailLength} bytes; the archive is truncated or damaged`,
    );
  const disk = view.getUint16(at + 4, true);
  const directoryDisk = view.getUint16(at + 6, true);
  if (disk !== 0 || directoryDisk !== 0)
    throw new CarvqError(`${file.path}: zip archive spans several disks (disk ${disk}); expected a single-file archive`);
  let count = view.getUint16(at + 10, true);
  let directorySize = view.getUint32(at + 12, true);
  let directoryOffset = view.getUint32(at + 16, true);
  const locator = at - 20;
  if (locator >= 0 && view.getUint32(locator, true) === ZIP64_LOCATOR_MAGIC) {
    const record = readZip64End(file, Number(view.getBigUint64(locator + 8, true)));
    ({ count, directorySize, directoryOffset } = record);
  }
  if (count > MAX_MEMBERS) throw new CarvqError(`${file.path}: zip directory lists ${count} members; expected at most ${MAX_MEMBERS}`);
  if (directoryOffset + directorySize > tailStart + at) {
    throw new CarvqError(
      `${file.path}: zip central directory at bytes ${directoryOffset}..${directoryOffset + directorySize} runs past its end record at byte ${tailStart + at}; the archive is truncated or damaged`,
    );
  }
  return { count, directoryOffset, directorySize };
}

function readZip64End(file: ModelFile, offset: number): EndRecord {
  const record = readBytes(file, offset, 56, "zip64 end record");
  const view = new DataView(record.buffer);
  if (view.getUint32(0, true) !== ZIP64_EOCD_MAGIC) throw new CarvqError(`${file.path}: zip64 end record at byte ${offset} is damaged`);
  const count = view.getBigUint64(32, true);
  const size = view.getBigUint64(40, true);
  const directoryOffset = view.getBigUint64(48, true);
  const limit = BigInt(file.size);
  if (count > BigInt(MAX_MEMBERS) || size > limit || directoryOffset > limit) {
    throw new CarvqError(
      `${file.path}: zip64 end record lists ${count} members in ${size} bytes at byte ${directoryOffset}; the file has ${file.size} bytes`,
    );
  }
  return { count: Number(count), directorySize: Number(size), directoryOffset: Number(directoryOffset) };
}

function parseCentralEntry(file: ModelFile, directory: Uint8Array, at: number, index: number): { member: ZipMember; next: number } {
  const view = new DataView(directory.buffer, directory.byteOffset, directory.length);
  const flags = view.getUint16(at + 8, true);
  const method = view.getUint16(at + 10, true);
  const crc = view.getUint32(at + 16, true);
  let compressedSize = view.getUint32(at + 20, true);
  let size = view.getUint32(at + 24, true);
  const nameLength = view.getUint16(at + 28, true);
  const extraLength = view.getUint16(at + 30, true);
  const commentLength = view.getUint16(at + 32, true);
  let localOffset = view.getUint32(at + 42, true);
  const next = at + CENTRAL_FIXED_BYTES + nameLength + extraLength + commentLength;
  if (next > directory.length)
    throw new CarvqError(`${file.path}: zip central directory entry #${index} runs past the directory's end; the archive is damaged`);
  const name = new TextDecoder().decode(directory.subarray(at + CENTRAL_FIXED_BYTES, at + CENTRAL_FIXED_BYTES + nameLength));
  if ((flags & 1) !== 0) throw new CarvqError(`${file.path}: zip member '${printable(name)}' is encrypted; expected a plain archive`);
  // ZIP64 extra field: the 64-bit values of the fields that hold 0xffffffff, in this order.
  const extraStart = at + CENTRAL_FIXED_BYTES + nameLength;
  for (let e = extraStart; e + 4 <= extraStart + extraLength; ) {
    const id = view.getUint16(e, true);
    const length = view.getUint16(e + 2, true);
    if (id === 0x0001) {
      let field = e + 4;
      const take = (): number => {
        if (field + 8 > e + 4 + length) throw new CarvqError(`${file.path}: zip member '${printable(name)}' has a short zip64 extra field`);
        const value = Number(view.getBigUint64(field, true));
        field += 8;
        return value;
      };
      if (size === 0xffffffff) size = take();
      if (compressedSize === 0xffffffff) compressedSize = take();
      if (localOffset === 0xffffffff) localOffset = take();
    }
    e += 4 + length;
  }
  const dataOffset = localDataOffset(file, name, localOffset);
  if (dataOffset + compressedSize > file.size) {
    throw new CarvqError(
      `${file.path}: zip member '${printable(name)}' spans bytes ${dataOffset}..${dataOffset + compressedSize} but the file has ${file.size} bytes; the archive is truncated`,
    );
  }
  return { member: { name, method, compressedSize, size, crc, dataOffset }, next };
}

/** The data of a member starts after its local header, whose name and extra lengths may differ from the central copy. */
function localDataOffset(file: ModelFile, name: string, localOffset: number): number {
  const header = readBytes(file, localOffset, LOCAL_FIXED_BYTES, `zip member '${printable(name)}' local header`);
  const view = new DataView(header.buffer);
  if (view.getUint32(0, true) !== ZIP_LOCAL_MAGIC)
    throw new CarvqError(`${file.path}: zip member '${printable(name)}' local header at byte ${localOffset} is damaged`);
  return localOffset + LOCAL_FIXED_BYTES + view.getUint16(26, true) + view.getUint16(28, true);
}

/** Reads a whole (small) member, inflating it if needed, and checks its CRC. */
export function readZipMember(file: ModelFile, member: ZipMember): Uint8Array {
  const where = `${file.path}: zip member '${printable(member.name)}'`;
  if (member.size > MAX_MEMBER_READ || member.compressedSize > MAX_MEMBER_READ)
    throw new CarvqError(`${where} has ${member.size} bytes; expected at most ${MAX_MEMBER_READ} for a header or pickle`);
  const raw = readBytes(file, member.dataOffset, member.compressedSize, `zip member '${printable(member.name)}'`);
  const bytes =
    member.method === ZIP_STORED
      ? raw
      : member.method === ZIP_DEFLATED
        ? inflateMember(where, raw, member.size)
        : refuseMethod(where, member.method);
  if (bytes.length !== member.size) throw new CarvqError(`${where} holds ${bytes.length} bytes; its directory entry says ${member.size}`);
  const actual = crc32(bytes);
  if (actual !== member.crc)
    throw new CarvqError(
      `${where} has CRC 0x${actual.toString(16).padStart(8, "0")}; its directory entry says 0x${member.crc.toString(16).padStart(8, "0")}; the archive is damaged`,
    );
  return bytes;
}

function inflateMember(where: string, raw: Uint8Array, size: number): Uint8Array {
  try {
    return inflateRawSync(raw, { maxOutputLength: size + 1 });
  } catch (err) {
    throw new CarvqError(`${where} does not inflate (${printable((err as Error).message, 80)}); the archive is damaged`);
  }
}

export function refuseMethod(where: string, method: number): never {
  throw new CarvqError(`${where} uses compression method ${method}; expected 0 (stored) or 8 (deflate)`);
}

/** Refuses a deflated member whose stated size is out of proportion to its compressed bytes (see MAX_INFLATE_RATIO). */
export function checkInflateRatio(where: string, member: ZipMember): void {
  if (member.size <= MAX_INFLATE_UNCHECKED || member.size <= member.compressedSize * MAX_INFLATE_RATIO) return;
  throw new CarvqError(
    `${where} states ${member.size} bytes from ${member.compressedSize} compressed (${Math.round(member.size / Math.max(1, member.compressedSize))}:1); refusing more than ${MAX_INFLATE_RATIO}:1 above ${MAX_INFLATE_UNCHECKED} bytes (a zip bomb, or store the arrays uncompressed with np.savez)`,
  );
}
