import { describe, expect, it } from "vitest";
import { compiledModule, loadTargets, wasmPath, type RuntimeInfo } from "../host/node.ts";
import { runMinimalWasi } from "../host/minimal-wasi.ts";
import { compressMatrix, type CompressOptions } from "../tools/compress.ts";
import { COMMAND_LINE_SLACK, maxResidentBlobBytes, memoryNeed } from "../tools/plan/memory.ts";
import { randomMatrix } from "./helpers.ts";

function info(target: string, bytes: Uint8Array): RuntimeInfo {
  const run = runMinimalWasi(compiledModule(wasmPath({ target })), {
    args: ["info", "/m/b.carvq"],
    preopens: [{ name: "/m", files: { "b.carvq": bytes } }],
  });
  expect(run.exitCode, run.stderr).toBe(0);
  return JSON.parse(new TextDecoder().decode(run.stdout)) as RuntimeInfo;
}

describe("memoryNeed", () => {
  const blobs: [number, number, Partial<CompressOptions>][] = [
    [700, 48, { h: 8, levels: 2, group: 64 }],
    [900, 40, { h: 20, levels: 5, group: 300, layout: "col", rowScaleCount: 16 }],
    [500, 33, { method: "int3", block: 16 }],
  ];
  for (const target of loadTargets()) {
    it(`${target.name} (${target.mode}): the runtime's own figure for a real blob, plus the command-line slack`, async () => {
      for (const [i, [rows, cols, options]] of blobs.entries()) {
        const { bytes } = await compressMatrix(randomMatrix(rows, cols, 40 + i), options);
        const runtime = info(target.name, bytes).runtime;
        const want = target.mode === "resident" ? runtime.residentBytes : runtime.streamingBytes;
        const need = memoryNeed(target, cols, options, bytes.length);
        expect(need.needBytes, `${rows}x${cols} ${JSON.stringify(options)}`).toBe(want + COMMAND_LINE_SLACK);
        expect(need.fits).toBe(need.needBytes <= target.memoryBudgetBytes);
      }
    });
  }

  it("maxResidentBlobBytes is the largest file that still fits a resident target", () => {
    const resident = loadTargets().find((t) => t.mode === "resident");
    // Without a resident target there is nothing to check, and a pass would say nothing.
    if (resident === undefined) expect.fail("no resident target in targets/: the test needs one");
    const max = maxResidentBlobBytes(resident, 2048, {})!;
    expect(memoryNeed(resident, 2048, {}, max).fits).toBe(true);
    expect(memoryNeed(resident, 2048, {}, max + 1).fits).toBe(false);
    expect(maxResidentBlobBytes(loadTargets().find((t) => t.mode === "streaming")!, 2048, {})).toBeNull();
  });
});
