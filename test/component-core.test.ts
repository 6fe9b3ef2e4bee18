// The WIT component's core module (build/lib/carvq-component-core.wasm) called directly in the
// canonical ABI of wit/carvq.wit under node:wasi: the memory layout of each result, the post-return
// functions releasing what cabi_realloc handed out, and rows bit-identical to tools/decoder.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bitDifferences, RUNTIME_EXIT } from "../host/common.ts";
import { randomBlob } from "../tools/blob/random.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { instantiateWasiReactor, libraryPath } from "./reactor.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-component-core-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const IFACE = "carvq:embedding/table@0.1.0";
type Core = {
  memory: WebAssembly.Memory;
  cabi_realloc(oldPtr: number, oldSize: number, align: number, newSize: number): number;
  cabi_realloc_adapter(oldPtr: number, oldSize: number, align: number, newSize: number): number;
} & Record<string, (...args: number[]) => number>;

function core() {
  const { instance, dispose } = instantiateWasiReactor(libraryPath("carvq-component-core"), { "/blob": dir });
  const ex = instance.exports as unknown as Core;
  const view = () => new DataView(ex.memory.buffer);
  /** Lowers `bytes` as the host would: cabi_realloc, then a copy. */
  const lower = (bytes: Uint8Array, align: number) => {
    const at = ex.cabi_realloc(0, 0, align, bytes.length);
    new Uint8Array(ex.memory.buffer).set(bytes, at);
    return at;
  };
  const failureAt = (ret: number, at: number) => ({
    code: view().getUint8(ret + at),
    message: new TextDecoder().decode(
      new Uint8Array(ex.memory.buffer, view().getUint32(ret + at + 4, true), view().getUint32(ret + at + 8, true)),
    ),
  });
  return {
    ex,
    dispose,
    open(path: string) {
      const bytes = new TextEncoder().encode(path);
      const ret = ex[`${IFACE}#open`](lower(bytes, 1), bytes.length);
      const out =
        view().getUint8(ret) === 0
          ? {
              ok: {
                rows: view().getUint32(ret + 8, true),
                cols: view().getUint32(ret + 12, true),
                bitsPerParameter: view().getFloat64(ret + 16, true),
              },
            }
          : { err: failureAt(ret, 8) };
      ex[`cabi_post_${IFACE}#open`](ret);
      return out;
    },
    lookup(ids: number[]) {
      const ret = ex[`${IFACE}#lookup`](lower(new Uint8Array(Uint32Array.from(ids).buffer), 4), ids.length);
      const out =
        view().getUint8(ret) === 0
          ? {
              ok: new Float32Array(
                ex.memory.buffer.slice(
                  view().getUint32(ret + 4, true),
                  view().getUint32(ret + 4, true) + 4 * view().getUint32(ret + 8, true),
                ),
              ),
            }
          : { err: failureAt(ret, 4) };
      ex[`cabi_post_${IFACE}#lookup`](ret);
      return out;
    },
    close() {
      ex[`${IFACE}#close`]();
    },
  };
}

describe("the component core module in the canonical ABI", () => {
  const bytes = randomBlob({ rows: 400, cols: 64, subvec: 8, levels: 2, group: 16, adaptor: { widths: [8, 16, 64] }, seed: 31 });
  writeFileSync(join(dir, "c.carvq"), bytes);
  const reference = parseBlob(bytes, "component");

  it("exports exactly the interface's functions, their post-returns, cabi_realloc, cabi_realloc_adapter and memory", () => {
    const names = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(libraryPath("carvq-component-core"))))
      .map((e) => e.name)
      .sort();
    expect(names).toEqual(
      [
        `${IFACE}#close`,
        `${IFACE}#lookup`,
        `${IFACE}#open`,
        `cabi_post_${IFACE}#lookup`,
        `cabi_post_${IFACE}#open`,
        "cabi_realloc",
        "cabi_realloc_adapter",
        "memory",
      ].sort(),
    );
  });

  it("open -> info, lookup -> rows bit-identical (in the I/O area and past it), failures as { code, message }, memory flat across calls", () => {
    const c = core();
    expect(c.lookup([1]).err).toEqual({ code: RUNTIME_EXIT.usage, message: "carvq_lookup: no blob is open (call carvq_open first)" });
    expect(c.open("/blob/missing.carvq").err).toEqual({ code: RUNTIME_EXIT.io, message: "/blob/missing.carvq: cannot open: no such file" });
    const info = c.open("/blob/c.carvq").ok!;
    expect(info).toEqual({ rows: 400, cols: 64, bitsPerParameter: (bytes.length * 8) / (400 * 64) });
    expect(c.open("/blob/c.carvq").err?.code).toBe(RUNTIME_EXIT.usage);
    const small = [0, 399, 7, 7, 250];
    expect(bitDifferences(c.lookup(small).ok!, decodeTokens(reference, small))).toBe(0);
    // 6000 rows of 64 f32 (1.5 MiB) do not fit the 1 MiB I/O area: they go to arena memory, released by the post-return.
    const many = Array.from({ length: 6000 }, (_, i) => (i * 37) % 400);
    expect(bitDifferences(c.lookup(many).ok!, decodeTokens(reference, many))).toBe(0);
    const grown = c.ex.memory.buffer.byteLength;
    for (let k = 0; k < 3; k++) expect(c.lookup(many).ok?.length).toBe(6000 * 64);
    expect(c.ex.memory.buffer.byteLength, "post-return released the rows").toBe(grown);
    expect(c.lookup([1, 400]).err).toEqual({
      code: RUNTIME_EXIT.tokenRange,
      message: "/blob/c.carvq: token 400 is out of range: the blob has 400 tokens (0 to 399)",
    });
    c.close();
    c.close();
    expect(c.lookup([1]).err?.code).toBe(RUNTIME_EXIT.usage);
    expect(c.open("/blob/c.carvq").ok).toEqual(info);
    expect(bitDifferences(c.lookup(small).ok!, decodeTokens(reference, small))).toBe(0);
    c.dispose();
  });

  it("memory the adapter takes (cabi_realloc_adapter) survives close and reopen: no blob's plan is placed over it", () => {
    const c = core();
    const adapterState = c.ex.cabi_realloc_adapter(0, 0, 8, 4096);
    new Uint8Array(c.ex.memory.buffer, adapterState, 4096).fill(0xa5);
    for (let k = 0; k < 3; k++) {
      expect(c.open("/blob/c.carvq").ok?.rows).toBe(400);
      expect(bitDifferences(c.lookup([3, 2, 1]).ok!, decodeTokens(reference, [3, 2, 1]))).toBe(0);
      c.close();
    }
    expect(new Uint8Array(c.ex.memory.buffer, adapterState, 4096).every((b) => b === 0xa5)).toBe(true);
    c.dispose();
  });
});
