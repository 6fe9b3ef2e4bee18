// No import cycles: between files of tools/ and host/, nor between the folders of tools/.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cycles, folderOf, importGraph } from "../tools/dev/cycles.ts";

const root = join(import.meta.dirname, "..");

describe("import cycles", () => {
  it("finds a cycle when there is one (the checker can fail)", () => {
    const graph = new Map([
      ["a", new Set(["b"])],
      ["b", new Set(["c"])],
      ["c", new Set(["a"])],
      ["d", new Set(["a"])],
    ]);
    expect(cycles(graph)).toEqual([["a", "b", "c"]]);
    expect(
      cycles(
        new Map([
          ["a", new Set(["b"])],
          ["b", new Set<string>()],
        ]),
      ),
    ).toEqual([]);
  });

  it("reads this tree's imports (the compressor imports the quantizers)", () => {
    const graph = importGraph(root, ["tools"], folderOf);
    expect(graph.get("tools/compress.ts")).toContain("tools/quant");
    expect(graph.get("tools/blob")).toContain("tools/quant");
  });

  it("has none between the files of tools/ and host/", () => {
    expect(cycles(importGraph(root, ["tools", "host"]))).toEqual([]);
  });

  it("has none between the folders of tools/", () => {
    expect(cycles(importGraph(root, ["tools"], folderOf))).toEqual([]);
  });
});
