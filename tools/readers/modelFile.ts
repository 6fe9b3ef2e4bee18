import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { endianness } from "node:os";
import { CarvqError } from "../errors.ts";

/**
 * An open model file read by byte ranges. Model files can be several gigabytes, so readers parse a
 * header and then read only the byte range of the tensor they need; nothing reads the whole file.
 */
export interface ModelFile {
  /** The path as the user gave it; every error message starts with it. */
  readonly path: string;
  readonly fd: number;
  readonly size: number;
}

/** Largest single readSync call; Node refuses lengths above 2 GiB - 1 and smaller calls keep progress smooth. */
const MAX_READ_CHUNK = 1 << 28;

/** Opens `path` for reading, turning a missing file, a directory or a permission problem into a CarvqError. */
export function openModelFile(path: string): ModelFile {
  // Typed-array views over file bytes assume the host is little-endian like every format read here.
  if (endianness() !== "LE") throw new CarvqError(`${path}: this host is big-endian; the readers support little-endian hosts only`);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new CarvqError(`${path}: cannot open (${describeFsError(err)})`);
  }
  const stats = fstatSync(fd);
  if (stats.isDirectory()) {
    closeSync(fd);
    throw new CarvqError(`${path}: is a directory; expected a model file (.safetensors, .gguf, .npy or a llama2.c .bin)`);
  }
  return { path, fd, size: stats.size };
}

export function closeModelFile(file: ModelFile): void {
  closeSync(file.fd);
}

/** Opens `path`, runs `body`, and closes the file whatever happens. */
export function withModelFile<T>(path: string, body: (file: ModelFile) => T): T {
  const file = openModelFile(path);
  try {
    return body(file);
  } finally {
    closeModelFile(file);
  }
}

/** Reads exactly `target.length` bytes at `position`; a short read means the file is truncated. */
export function readExactInto(file: ModelFile, target: Uint8Array, position: number, what: string): void {
  if (!Number.isSafeInteger(position) || position < 0 || position + target.length > file.size) {
    throw new CarvqError(
      `${file.path}: ${what} at bytes ${position}..${position + target.length} lies past the end of the file (${file.size} bytes); the file is truncated or its header is wrong`,
    );
  }
  let done = 0;
  while (done < target.length) {
    const length = Math.min(MAX_READ_CHUNK, target.length - done);
    let got: number;
    try {
      got = readSync(file.fd, target, done, length, position + done);
    } catch (err) {
      throw new CarvqError(`${file.path}: cannot read ${what} (${describeFsError(err)})`);
    }
    if (got === 0) throw new CarvqError(`${file.path}: ${what} ends early at byte ${position + done}; the file is truncated`);
    done += got;
  }
}

/** Reads `length` bytes at `position` into a fresh buffer (callers cap `length` first). */
export function readBytes(file: ModelFile, position: number, length: number, what: string): Uint8Array {
  checkRange(file, position, length, what);
  const bytes = new Uint8Array(length);
  readExactInto(file, bytes, position, what);
  return bytes;
}

/** Throws unless [position, position + length) is inside the file, with overflow-safe arithmetic. */
export function checkRange(file: ModelFile, position: number | bigint, length: number | bigint, what: string): void {
  const end = BigInt(position) + BigInt(length);
  if (BigInt(position) < 0n || BigInt(length) < 0n || end > BigInt(file.size)) {
    throw new CarvqError(
      `${file.path}: ${what} spans bytes ${position}..${end} but the file has ${file.size} bytes; the file is truncated or its header is wrong`,
    );
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  return code ?? String(err);
}

/**
 * A string from a model file (a tensor name, a metadata key, a dtype) made safe to print in a
 * message: control characters (C0, DEL, C1: terminal escape sequences) and bidirectional overrides
 * are shown as \xNN / \u{NNNN}, and it is cut to `max` characters, so a hostile name can neither
 * drive the user's terminal nor flood the one-line error.
 */
export function printable(text: string, max = 200): string {
  const safe = text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, (ch) => {
    const code = ch.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
  return safe.length > max ? `${safe.slice(0, max)}... (${text.length} characters)` : safe;
}

/** The first bytes of a file for a message: hex, and the text when they are printable. */
export function describeFirstBytes(head: Uint8Array): string {
  const first = head.subarray(0, 8);
  const hex = Array.from(first, (b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = first.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f));
  return text ? `${hex}, text ${JSON.stringify(new TextDecoder().decode(first))}` : hex;
}
