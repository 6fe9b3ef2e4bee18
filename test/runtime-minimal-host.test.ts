// The runtime on the smallest possible WASI host (host/minimal-wasi.ts): only the eleven preview1
// functions it imports, files served from memory as from flash, with the quirks of small engines
// (wasm3 counts a NUL in preopen names and preopens both "/" and "./"; flash drivers return short
// reads). What a firmware embedder must provide, checked on the device builds.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { wasmPath } from "../host/common.ts";
import { RUNTIME_IMPORTS, runMinimalWasi } from "../host/minimal-wasi.ts";
import { randomBlob } from "../tools/blob/random.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { randomMatrix } from "./helpers.ts";

const modules = ["mcu-128k", "esp32s3-wamr", "rpi-zero2w"].map((target) => ({
  name: target,
  module: new WebAssembly.Module(readFileSync(wasmPath({ target }))),
}));
modules.push({ name: "generic scalar", module: new WebAssembly.Module(readFileSync(wasmPath({ build: "scalar" }))) });

function sameBits(a: Uint8Array, want: Float32Array): boolean {
  return Buffer.from(a).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength));
}

const plainBlob = await compressMatrix(randomMatrix(33, 40, 8), { h: 8, levels: 2, group: 12, iters: 2 });
const scaledBlob = await compressMatrix(randomMatrix(33, 40, 9), { h: 8, levels: 2, group: 12, iters: 2, rowScaleCount: 6 });

describe("the runtime on a minimal WASI host", () => {
  it("imports exactly the eleven documented wasi_snapshot_preview1 functions and exports _start and memory", async () => {
    for (const { module } of modules) {
      const imports = WebAssembly.Module.imports(module);
      expect(imports.every((i) => i.module === "wasi_snapshot_preview1" && i.kind === "function")).toBe(true);
      expect(imports.map((i) => i.name).sort()).toEqual([...RUNTIME_IMPORTS].sort());
      expect(
        WebAssembly.Module.exports(module)
          .map((e) => e.name)
          .sort(),
      ).toEqual(["_start", "memory"]);
    }
  });

  const { bytes } = plainBlob;
  const ids = [32, 0, 7, 7, 19];
  const want = decodeTokens(parseBlob(bytes, "m"), ids);

  for (const { name, module } of modules) {
    it(`${name}: wasm3-style preopens ("/" and "./" with a NUL), 100-byte short reads: same bits`, async () => {
      for (const path of ["model.carvq", "./model.carvq", "/model.carvq"]) {
        const run = runMinimalWasi(module, {
          args: ["lookup", path, ...ids.map(String)],
          preopens: [
            { name: "/", files: { "model.carvq": bytes } },
            { name: "./", files: { "model.carvq": bytes } },
          ],
          nulInPreopenNames: true,
          maxReadBytes: 100,
        });
        expect(run.stderr).toBe("");
        expect(run.exitCode).toBe(0);
        expect(sameBits(run.stdout, want), `${name} ${path}`).toBe(true);
        expect(run.calls.fd_close).toBe(1);
      }
    });
  }

  const scaled = scaledBlob.bytes;
  const wantScaled = decodeTokens(parseBlob(scaled, "s"), ids);
  for (const { name, module } of modules) {
    it(`${name}: a gain-shape (v1.1) blob through 100-byte short reads: same bits`, () => {
      const run = runMinimalWasi(module, {
        args: ["lookup", "/flash/model.carvq", ...ids.map(String)],
        preopens: [{ name: "/flash", files: { "model.carvq": scaled } }],
        maxReadBytes: 100,
      });
      expect(run.stderr).toBe("");
      expect(run.exitCode).toBe(0);
      expect(sameBits(run.stdout, wantScaled), name).toBe(true);
    });
  }

  it("a firmware-style preopen (/flash) and the longest matching preopen wins", () => {
    const other = randomBlob({ rows: 33, cols: 40, seed: 9 });
    const run = runMinimalWasi(modules[0].module, {
      args: ["lookup", "/flash/models/model.carvq", ...ids.map(String)],
      preopens: [
        { name: "/flash", files: { "models/model.carvq": other } },
        { name: "/flash/models", files: { "model.carvq": bytes } },
      ],
    });
    expect(run.exitCode).toBe(0);
    expect(sameBits(run.stdout, want)).toBe(true);
  });

  it("leaves alone the pages a host grows from its memory (as the component adapter does), resident and streaming", () => {
    const big = randomBlob({ rows: 3000, cols: 64, subvec: 8, levels: 2, group: 16, seed: 21 }); // ~360 KB
    const wantBig = decodeTokens(parseBlob(big, "big"), [2999, 0, 1500]);
    for (const [name, module] of [
      ["generic simd", new WebAssembly.Module(readFileSync(wasmPath({ build: "simd" })))],
      ["rpi-zero2w", modules[2].module],
    ] as const) {
      for (const mode of ["resident", "streaming"]) {
        if (name === "rpi-zero2w" && mode === "resident") continue;
        const run = runMinimalWasi(module, {
          args: ["lookup", "--mode", mode, "/m/big.carvq", "2999", "0", "1500"],
          preopens: [{ name: "/m", files: { "big.carvq": big } }],
          foreignPages: 1,
        });
        expect(run.exitCode, run.stderr).toBe(0);
        expect(run.foreignPagesIntact, `${name} ${mode}`).toBe(true);
        expect(sameBits(run.stdout, wantBig), `${name} ${mode}`).toBe(true);
      }
    }
  });

  it("exit codes reach the host through proc_exit, with one stderr line", () => {
    const run = runMinimalWasi(modules[0].module, {
      args: ["lookup", "/flash/model.carvq", "33"],
      preopens: [{ name: "/flash", files: { "model.carvq": bytes } }],
    });
    expect(run.exitCode).toBe(5);
    expect(run.stderr).toBe("carvq-rt: /flash/model.carvq: token 33 is out of range: the blob has 33 tokens (0 to 32) [exit 5]\n");
    const missing = runMinimalWasi(modules[0].module, { args: ["info", "/flash/none.carvq"], preopens: [{ name: "/flash", files: {} }] });
    expect(missing.exitCode).toBe(3);
    expect(missing.stderr).toMatch(/no such file \[exit 3\]\n$/);
  });

  it("counts a one-row blob's tokens in the singular", () => {
    const run = runMinimalWasi(modules[0].module, {
      args: ["lookup", "/flash/one.carvq", "1"],
      preopens: [{ name: "/flash", files: { "one.carvq": randomBlob({ rows: 1, cols: 16, seed: 4 }) } }],
    });
    expect(run.exitCode).toBe(5);
    expect(run.stderr).toBe("carvq-rt: /flash/one.carvq: token 1 is out of range: the blob has 1 token (0 to 0) [exit 5]\n");
  });
});
