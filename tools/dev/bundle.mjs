// How every Node bundle of the project is made (the CLI and its workers in tools/dev/build.mjs, the
// developer tools in package.json's scripts, the tests that bundle a tool), so all of them carry
// the package version, put in at build time as __CARVQ_VERSION__ (tools/version.ts) rather than by
// bundling package.json. As a command: node tools/dev/bundle.mjs ENTRY OUTFILE [--packages=external]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** esbuild's `define` for the version (vitest.config.ts gives the same to code run from source). */
export function versionDefine() {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  return { __CARVQ_VERSION__: JSON.stringify(pkg.version) };
}

/** The options every bundle shares. */
export function bundleOptions() {
  return { bundle: true, platform: "node", format: "esm", target: "node20", logLevel: "warning", define: versionDefine() };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [entry, outfile, ...flags] = process.argv.slice(2);
  if (entry === undefined || outfile === undefined || flags.some((f) => f !== "--packages=external")) {
    process.stderr.write("usage: node tools/dev/bundle.mjs ENTRY OUTFILE [--packages=external]\n");
    process.exit(2);
  }
  await build({ ...bundleOptions(), entryPoints: [entry], outfile, ...(flags.length > 0 ? { packages: "external" } : {}) });
}
