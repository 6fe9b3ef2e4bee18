// The command installed outside the clone, as the README says to: `npm pack`, then `npm install -g`
// of the tarball into a scratch prefix, run from another folder. The bundle must find its workers
// and WASM builds relative to itself, and package.json's `files` must carry them. And a bundle
// without its builds must say so in one line instead of falling back to slower paths.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeNpy } from "../tools/readers/npy.ts";
import { randomMatrix } from "./helpers.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const cli = join(root, "dist", "carvq.mjs");
const scratch = mkdtempSync(join(tmpdir(), "carvq-install-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function npm(args: string[], cwd: string): string {
  const r = spawnSync("npm", args, { cwd, encoding: "utf8" });
  if (r.status !== 0) expect.fail(`npm ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

describe.runIf(existsSync(cli) && process.platform !== "win32")("installed with npm pack + npm install -g, run from another folder", () => {
  const prefix = join(scratch, "prefix");
  const elsewhere = join(scratch, "elsewhere");
  const carvq = join(prefix, "bin", "carvq");
  const run = (...args: string[]) => spawnSync(carvq, args, { cwd: elsewhere, encoding: "utf8" });

  beforeAll(() => {
    // The tarball from the current build (npm test builds first); --ignore-scripts skips prepare's rebuild.
    const packed = JSON.parse(npm(["pack", "--ignore-scripts", "--json", "--pack-destination", scratch], root)) as { filename: string }[];
    npm(["install", "-g", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", join(scratch, packed[0].filename)], scratch);
    mkdirSync(elsewhere);
  }, 120_000);

  it("carries the bundle, its workers and the WASM builds, and no sources", () => {
    const installed = join(prefix, "lib", "node_modules", "carvq");
    for (const file of [
      "dist/carvq.mjs",
      "dist/index.mjs",
      "dist/table.mjs",
      "dist/types/tools/index.d.ts",
      "dist/types/host/table.d.ts",
      "dist/rvq-worker.mjs",
      "dist/fisher-worker.mjs",
      "dist/train-worker.mjs",
      "build/quant-kernels.wasm",
      "build/train-kernels.wasm",
      "build/carvq-rt.wasm",
      "build/carvq-rt-scalar.wasm",
      "build/targets/mcu-128k.wasm",
      "build/lib/carvq.wasm",
      "build/lib/mcu-128k.wasm",
      "build/lib/carvq.component.wasm",
      "targets/mcu-128k.json",
      "wit/carvq.wit",
    ]) {
      expect(existsSync(join(installed, file)), file).toBe(true);
    }
    for (const folder of ["tools", "test", "assembly"]) expect(existsSync(join(installed, folder)), folder).toBe(false);
    // Its one runtime dependency (the JS API's @assemblyscript/loader), and nothing else installed with it.
    const deps = existsSync(join(installed, "node_modules"))
      ? readdirSync(join(installed, "node_modules")).filter((d) => !d.startsWith("."))
      : [];
    expect(deps).toEqual(["@assemblyscript"]);
    expect(statSync(carvq).mode & 0o111).not.toBe(0);
  });

  it("--help, synth, compress on worker threads, lookup through the WASM runtime, and demo work", () => {
    const help = run("--help");
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^carvq \d+\.\d+\.\d+: /);
    writeNpy(join(elsewhere, "m.npy"), randomMatrix(600, 16, 9), true);
    const compressed = run("compress", "m.npy", "-o", "m.carvq", "--h", "4", "--group", "64", "--threads", "2", "--json");
    expect(compressed.status, compressed.stderr).toBe(0);
    expect(JSON.parse(compressed.stdout).bytes).toBeGreaterThan(0);
    const looked = run("lookup", "m.carvq", "--tokens", "0,1,599", "-o", "rows.f32", "--target", "mcu-128k");
    expect(looked.status, looked.stderr).toBe(0);
    expect(readFileSync(join(elsewhere, "rows.f32")).length).toBe(3 * 16 * 4);
    const demo = run("demo", "--rows", "200", "--json");
    expect(demo.status, demo.stderr).toBe(0);
    expect(JSON.parse(demo.stdout).results).toHaveLength(3);
  });
});

describe.runIf(existsSync(cli))("a bundle without its builds", () => {
  it("fails in one line saying to run npm run build, instead of falling back to one thread or scalar code", () => {
    const bare = join(scratch, "bare");
    mkdirSync(join(bare, "dist"), { recursive: true });
    copyFileSync(cli, join(bare, "dist", "carvq.mjs"));
    cpSync(join(root, "targets"), join(bare, "targets"), { recursive: true }); // sources, not builds
    writeNpy(join(bare, "m.npy"), randomMatrix(300, 8, 2), true);
    const compress = (threads: string) =>
      spawnSync(
        process.execPath,
        [
          "--no-warnings",
          join(bare, "dist", "carvq.mjs"),
          "compress",
          "m.npy",
          "-o",
          "x.carvq",
          "--h",
          "4",
          "--group",
          "32",
          "--threads",
          threads,
        ],
        { cwd: bare, encoding: "utf8" },
      );
    for (const [threads, missing] of [
      ["2", join("dist", "rvq-worker.mjs")],
      ["1", join("build", "quant-kernels.wasm")],
    ]) {
      const r = compress(threads);
      expect(r.status, r.stderr).toBe(1);
      const last = r.stderr.trimEnd().split("\n").pop();
      expect(last).toBe(`carvq: ${join(bare, missing)}: not built; run npm run build`);
      expect(existsSync(join(bare, "x.carvq"))).toBe(false);
    }
  });
});
