import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CarvqError } from "./errors.ts";

/** Refuses to replace an existing file unless `force` is set. Call before long work, not only at the end. */
export function checkOverwrite(path: string, force: boolean): void {
  if (!force && existsSync(path)) throw new CarvqError(`${path}: already exists (pass --force to overwrite)`);
}

/**
 * Writes `chunks` to `path` so that the path never holds a partial file: the bytes go to a temporary
 * file in the same folder, are flushed to disk, then renamed over the target in one step. A crash or
 * kill at any moment leaves either the old file or the new one (and at worst a stray `.tmp`).
 */
export function writeFileAtomic(path: string, chunks: Uint8Array | readonly Uint8Array[], force: boolean): void {
  checkOverwrite(path, force);
  // A kill at any moment (SIGINT, SIGKILL, power loss after fsync) leaves at worst a stray
  // temporary file beside the target, never a partial file at `path`: rename is the only step
  // that touches it.
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
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
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    if (err instanceof CarvqError) throw err;
    throw new CarvqError(`${path}: cannot write (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}
