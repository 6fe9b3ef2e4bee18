import { closeSync, existsSync, fsyncSync, linkSync, openSync, readdirSync, renameSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CarvqError } from "./errors.ts";

/** Refuses to replace an existing file unless `force` is set. Call before long work, not only at the end. */
export function checkOverwrite(path: string, force: boolean): void {
  if (!force && existsSync(path)) throw new CarvqError(`${path}: already exists (pass --force to overwrite)`);
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
    throw new CarvqError(`${path}: cannot write (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

/** link(temp, path) then unlink(temp): atomic and never replaces an existing `path`. */
function placeWithoutOverwrite(temp: string, path: string): void {
  try {
    linkSync(temp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new CarvqError(`${path}: already exists (pass --force to overwrite)`);
    // File systems without hard links (FAT, some network and FUSE mounts): check, then rename.
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS" && code !== "EMLINK" && code !== "EXDEV") throw err;
    checkOverwrite(path, false);
    renameSync(temp, path);
    return;
  }
  unlinkSync(temp);
}
