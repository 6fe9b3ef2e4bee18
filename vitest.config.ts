import { defineConfig } from "vitest/config";
import { versionDefine } from "./tools/dev/bundle.mjs";

export default defineConfig({
  // The package version, as the bundles get it (tools/version.ts).
  define: versionDefine(),
  test: {
    include: ["test/**/*.test.ts"],
    // Parity and budget tests spawn WASM instances; give them room on a 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
