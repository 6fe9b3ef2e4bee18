// Builds everything `npm ci` must leave working: the CLI bundle (dist/carvq.mjs), the package's
// exports (dist/index.mjs: the Node API with the JS API; dist/table.mjs: the JS API alone, for
// browsers; their types in dist/types/) and, when tools/dev/build-wasm.mjs exists, the WASM runtime
// builds and the WIT component. Run by `npm run build` and `prepare`.
import { execFileSync } from "node:child_process";
import { build } from "esbuild";
import { chmodSync, existsSync } from "node:fs";
import { bundleOptions } from "./bundle.mjs";

const common = { ...bundleOptions(), sourcemap: "linked" };

// The encoder's k-means kernel (tools/quant/kernels.ts loads it; a scalar twin covers its absence).
execFileSync(process.execPath, ["node_modules/assemblyscript/bin/asc.js", "--config", "assembly/quant/asconfig.json"], {
  stdio: "inherit",
});

// The adaptor trainer's matrix-product kernels and its worker (tools/adaptor/kernels.ts, pool.ts).
const { buildTrainKernels, buildHfKernels } = await import("./build-train-kernels.mjs");
await buildTrainKernels();
await build({ ...common, entryPoints: ["tools/adaptor/train-worker.ts"], outfile: "dist/train-worker.mjs" });

// The transformer forward's weight products and their worker (tools/hf/matmul-kernel.ts, matmul-pool.ts).
await buildHfKernels();
await build({ ...common, entryPoints: ["tools/hf/matmul-worker.ts"], outfile: "dist/hf-matmul-worker.mjs" });

// The RVQ fitting worker (tools/quant/parallel.ts looks for it next to the CLI bundle).
await build({ ...common, entryPoints: ["tools/quant/rvq-worker.ts"], outfile: "dist/rvq-worker.mjs" });

// The curvature worker of --kl-encode (tools/llama2c/fisher.ts looks for it the same way).
await build({ ...common, entryPoints: ["tools/llama2c/fisher-worker.ts"], outfile: "dist/fisher-worker.mjs" });

await build({
  ...common,
  entryPoints: ["tools/cli/main.ts"],
  outfile: "dist/carvq.mjs",
  banner: {
    js: "#!/usr/bin/env -S node --no-warnings\nimport { createRequire as __carvqRequire } from 'node:module'; const require = __carvqRequire(import.meta.url);",
  },
});
chmodSync("dist/carvq.mjs", 0o755);

// The Node API (package.json "exports"): the bundle, and its declarations emitted by tsc from the
// sources (dist/types/, tools/index.d.ts its entry), so the types cannot drift from the code.
await build({ ...common, entryPoints: ["tools/index.ts"], outfile: "dist/index.mjs", packages: "external" });
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.api.json"], { stdio: "inherit" });

// The JS API alone, for browsers (package.json "exports" "./table"): host/table.ts imports Node
// modules only when it opens a path, so this bundle loads none; its declarations come with the
// Node API's (tsconfig.api.json), which re-exports it.
await build({
  ...common,
  platform: "neutral",
  target: "es2022",
  packages: "external",
  entryPoints: ["host/table.ts"],
  outfile: "dist/table.mjs",
});

if (existsSync("tools/dev/build-wasm.mjs")) {
  const { buildWasm } = await import("./build-wasm.mjs");
  await buildWasm();
  const { buildComponent } = await import("./build-component.mjs");
  if (await buildComponent()) process.stderr.write("built the WIT component build/lib/carvq.component.wasm\n");
}
