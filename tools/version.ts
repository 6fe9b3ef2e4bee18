// The package version, put in by whatever builds or runs this code (esbuild's `define` in
// tools/dev/bundle.mjs, the same in vitest.config.ts), so no bundle carries a copy of package.json.
declare const __CARVQ_VERSION__: string;

export const TOOL_VERSION: string = __CARVQ_VERSION__;
