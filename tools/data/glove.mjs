// `npm run data:glove` -> `carvq data glove`. Node 20 cannot run the TypeScript sources, so this
// runs the built CLI (dist/carvq.mjs) when it is newer than the data command's sources, and
// otherwise bundles just that command with esbuild (a devDependency) and runs the bundle.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = ["data", "glove", ...process.argv.slice(2)];
const dist = join(root, "dist", "carvq.mjs");
const sources = ["tools/cli/data.ts", "tools/data/glove.ts"].map((path) => join(root, path));

const mtime = (path) => statSync(path).mtimeMs;
const distIsFresh = existsSync(dist) && sources.every((source) => mtime(source) <= mtime(dist));
const script = distIsFresh ? dist : await bundleDataCommand();
const { status } = spawnSync(process.execPath, ["--no-warnings", script, ...args], { cwd: root, stdio: "inherit" });
process.exit(status ?? 1);

/** Bundles tools/cli/data.ts behind a minimal entry that prints CarvqErrors as main.ts does. */
async function bundleDataCommand() {
  const { build } = await import("esbuild");
  const { bundleOptions } = await import("../dev/bundle.mjs");
  const outfile = join(root, ".cache", "glove", "carvq-data.mjs");
  mkdirSync(dirname(outfile), { recursive: true });
  const entry = `
    import { dataCommand } from "./tools/cli/data.ts";
    try { await dataCommand.run(process.argv.slice(3)); }
    catch (err) {
      if (err?.name !== "CarvqError") throw err;
      process.stderr.write("carvq: " + err.message + "\\n");
      process.exitCode = err.exitCode ?? 1;
    }`;
  await build({ ...bundleOptions(), stdin: { contents: entry, resolveDir: root, loader: "ts" }, outfile });
  return outfile;
}
