// Files that `npm run build` makes (the WASM kernels in build/, the worker bundles in dist/), found
// from wherever this code runs: the source tree (tools/), the CLI bundle and its workers (dist/),
// or a developer bundle in build/. All three sit one level below the package root, installed or not.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CarvqError } from "./errors.ts";

/** The package root: the folder holding tools/, dist/, build/ and targets/. */
export function packageRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..");
}

/**
 * The absolute path of a built file, e.g. "build/quant-kernels.wasm" or "dist/rvq-worker.mjs".
 * A missing one is a broken install or checkout, not something to work around: one line, saying
 * what to run.
 */
export function builtFile(relative: string): string {
  const path = join(packageRoot(), relative);
  if (!existsSync(path)) throw new CarvqError(`${path}: not built; run npm run build`);
  return path;
}
