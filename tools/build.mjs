// Builds everything `npm ci` must leave working: the CLI bundle (dist/carvq.mjs), the JS API
// (dist/table.mjs and its types in dist/types/, the package's `exports`) and, when
// tools/build-wasm.mjs exists, the WASM runtime builds and the WIT component. Run by
// `npm run build` and `prepare`.
import { execFileSync } from "node:child_process";
import { build } from "esbuild";
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
};

// The encoder's k-means kernel (tools/quant/kernels.ts loads it; a scalar twin covers its absence).
execFileSync(process.execPath, ["node_modules/assemblyscript/bin/asc.js", "--config", "assembly/quant/asconfig.json"], { stdio: "inherit" });

// The adaptor trainer's matrix-product kernels and its worker (tools/adaptor/kernels.ts, pool.ts).
const { buildTrainKernels } = await import("./build-train-kernels.mjs");
await buildTrainKernels();
await build({ ...common, entryPoints: ["tools/adaptor/train-worker.ts"], outfile: "dist/train-worker.mjs" });

// The RVQ fitting worker (tools/quant/parallel.ts looks for it next to the CLI bundle).
await build({ ...common, entryPoints: ["tools/quant/rvq-worker.ts"], outfile: "dist/rvq-worker.mjs" });

// The curvature worker of --kl-encode (tools/llama2c/fisher.ts looks for it the same way).
await build({ ...common, entryPoints: ["tools/llama2c/fisher-worker.ts"], outfile: "dist/fisher-worker.mjs" });

await build({
  ...common,
  entryPoints: ["tools/cli/main.ts"],
  outfile: "dist/carvq.mjs",
  banner: { js: "#!/usr/bin/env -S node --no-warnings\nimport { createRequire as __carvqRequire } from 'node:module'; const require = __carvqRequire(import.meta.url);" },
});
chmodSync("dist/carvq.mjs", 0o755);

// The JS API: one ESM file for Node and browsers (host/table.ts imports Node modules only when it
// opens a path), its dependencies left to the package manager, and declarations for its types.
await build({ ...common, platform: "neutral", target: "es2022", packages: "external", entryPoints: ["host/table.ts"], outfile: "dist/table.mjs" });
writeDeclarations("host/table.ts", "dist/types");

if (existsSync("tools/build-wasm.mjs")) {
  const { buildWasm } = await import("./build-wasm.mjs");
  await buildWasm();
  const { buildComponent } = await import("./build-component.mjs");
  if (await buildComponent()) process.stderr.write("built the WIT component build/lib/carvq.component.wasm\n");
}

/**
 * Declarations of `entry` and the files it imports, under `outDir` in the sources' layout. The
 * sources import each other as .ts files; declarations must name them .js (which TypeScript maps
 * to the .d.ts beside them), so the specifiers are rewritten.
 */
function writeDeclarations(entry, outDir) {
  rmSync(outDir, { recursive: true, force: true });
  execFileSync(process.execPath, [
    "node_modules/typescript/bin/tsc", entry, "--ignoreConfig", "--declaration", "--emitDeclarationOnly", "--outDir", outDir,
    "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--strict", "--allowImportingTsExtensions",
    "--skipLibCheck", "--types", "node",
  ], { stdio: "inherit" });
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (path.endsWith(".d.ts")) writeFileSync(path, readFileSync(path, "utf8").replace(/(from\s+"\.{1,2}\/[^"]*)\.ts"/g, '$1.js"'));
    }
  };
  walk(outDir);
}
