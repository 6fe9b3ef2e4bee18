import {
  accessSync,
  closeSync,
  constants,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { CarvqError } from "./errors.ts";
import { EXIT } from "./exit-codes.ts";

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** Refuses a folder that is missing, not a folder, or not writable (`label` says which path it serves). */
function checkWritableFolder(dir: string, label: string): void {
  const stats = statOrNull(dir);
  if (stats === null) throw new CarvqError(`${label}: cannot write: folder '${dir}' does not exist`, EXIT.io);
  if (!stats.isDirectory()) throw new CarvqError(`${label}: cannot write: '${dir}' is not a folder`, EXIT.io);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new CarvqError(`${label}: cannot write: folder '${dir}' is not writable`, EXIT.io);
  }
}

/**
 * Checks an output file before any long work, so a bad path fails at once rather than after the
 * work: its folder must exist and be writable (exit 3), it must not be a folder (exit 3), and an
 * existing file is refused unless `force` is set (exit 2). writeFileAtomic checks again at the end.
 */
export function checkOverwrite(path: string, force: boolean): void {
  const stats = statOrNull(path);
  if (stats?.isDirectory()) throw new CarvqError(`${path}: is a folder; expected a file to write`, EXIT.io);
  if (stats !== null && !force) throw new CarvqError(`${path}: already exists (pass --force to overwrite)`, EXIT.usage);
  checkWritableFolder(dirname(path), path);
}

/**
 * Checks an output folder that is created if missing (with its parents): it must be a folder if it
 * exists, else the nearest existing folder above it must be writable. Exit 3 otherwise.
 */
export function checkOutputFolder(dir: string): void {
  const stats = statOrNull(dir);
  if (stats !== null) {
    if (!stats.isDirectory()) throw new CarvqError(`${dir}: exists and is not a folder`, EXIT.io);
    checkWritableFolder(dir, dir);
    return;
  }
  let above = dirname(dir);
  while (statOrNull(above) === null && dirname(above) !== above) above = dirname(above);
  checkWritableFolder(above, dir);
}

/** `.name.<pid>.tmp`: the temporary file beside `path` that process `pid` writes. */
function tempName(path: string, pid: number): string {
  return join(dirname(path), `.${basename(path)}.${pid}.tmp`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes temporary files that earlier writes of `path` left behind when they were killed
 * (SIGKILL, or SIGINT before Node could run anything), once their process is gone. Best effort.
 */
function removeStaleTemps(path: string): void {
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
    const pid = name.slice(prefix.length, -4);
    if (!/^\d{1,10}$/.test(pid) || Number(pid) === process.pid || alive(Number(pid))) continue;
    rmSync(join(dirname(path), name), { force: true });
  }
}

/** Flushes the directory entry (the rename) to disk; not every platform or file system allows it. */
function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // e.g. Windows cannot open a directory; the rename is still atomic, only its durability is the OS's.
  }
}

/**
 * Writes `chunks` to `path` so that the path never holds a partial file: the bytes go to a temporary
 * file in the same folder, are flushed to disk, then put in place in one step. A kill at any moment
 * (SIGINT, SIGKILL, power loss after the flush) leaves either the old file or the new one at `path`,
 * and at worst a stray `.name.<pid>.tmp` beside it, which the next write of `path` removes.
 *
 * Without `force` the new file is put in place with link(2), which fails if `path` exists, so a file
 * created meanwhile by someone else is never replaced; with `force`, rename(2) replaces it.
 */
export function writeFileAtomic(path: string, chunks: Uint8Array | readonly Uint8Array[], force: boolean): void {
  checkOverwrite(path, force);
  removeStaleTemps(path);
  const temp = tempName(path, process.pid);
  try {
    const fd = openSync(temp, "w");
    try {
      for (const chunk of chunks instanceof Uint8Array ? [chunks] : chunks) {
        let written = 0;
        while (written < chunk.length) written += writeSync(fd, chunk, written, chunk.length - written);
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (force) renameSync(temp, path);
    else placeWithoutOverwrite(temp, path);
    syncDirectory(dirname(path));
  } catch (err) {
    rmSync(temp, { force: true });
    if (err instanceof CarvqError) throw err;
    throw new CarvqError(`${path}: cannot write (${(err as NodeJS.ErrnoException).code ?? String(err)})`, EXIT.io);
  }
}

/** link(temp, path) then unlink(temp): atomic and never replaces an existing `path`. */
function placeWithoutOverwrite(temp: string, path: string): void {
  try {
    linkSync(temp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new CarvqError(`${path}: already exists (pass --force to overwrite)`, EXIT.usage);
    // File systems without hard links (FAT, some network and FUSE mounts): check, then rename.
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS" && code !== "EMLINK" && code !== "EXDEV")
      throw err;
    checkOverwrite(path, false);
    renameSync(temp, path);
    return;
  }
  unlinkSync(temp);
}
