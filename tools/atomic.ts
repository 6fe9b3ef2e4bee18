import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CarvqError } from "./errors.ts";

/** Temporary files still to remove if the process is interrupted (SIGINT/SIGTERM). */
const pendingTemps = new Set<string>();
let handlersInstalled = false;

function installCleanup(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const cleanup = (signal: NodeJS.Signals) => {
    for (const temp of pendingTemps) rmSync(temp, { force: true });
    process.stderr.write(`\ncarvq: interrupted (${signal}); no output written\n`);
    process.exit(130);
  };
  process.once("SIGINT", cleanup);
  process.once("SIGTERM", cleanup);
}

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
  installCleanup();
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  pendingTemps.add(temp);
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
  } finally {
    pendingTemps.delete(temp);
  }
}
