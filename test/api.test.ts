// The Node API (tools/index.ts, bundled to dist/index.mjs): the same blobs and decodes as the
// library functions it is built on, async, with options objects.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { compressMatrix } from "../tools/compress.ts";
import { decodeTokens } from "../tools/decoder.ts";
import * as api from "../tools/index.ts";
import { randomMatrix } from "./helpers.ts";

const root = join(import.meta.dirname, "..");
const table = randomMatrix(90, 20, 12);
const options = { h: 4, levels: 2, group: 60, iters: 4, seed: 9 };

describe("the Node API", () => {
  it("exports the five entry points, the runtime's openTable and the error class, nothing else that runs", () => {
    const functions = Object.entries(api)
      .filter(([, v]) => typeof v === "function")
      .map(([k]) => k)
      .sort();
    expect(functions).toEqual(["CarvqError", "compress", "decode", "evaluate", "openTable", "parseBlob", "readTable"]);
  });

  it("compress gives compressMatrix's bytes; parseBlob, decode and evaluate agree with them", async () => {
    const direct = await compressMatrix(table, options, { source: "dir/t.npy", tensor: "w" });
    const viaApi = await api.compress(table, { ...options, source: "dir/t.npy", tensor: "w", threads: 2 });
    expect(Buffer.from(viaApi.bytes).equals(Buffer.from(direct.bytes))).toBe(true);
    const blob = await api.parseBlob(viaApi.bytes, { name: "t.carvq" });
    expect(blob.metadata?.source).toBe("t.npy");
    const rows = await api.decode(blob, { tokens: [89, 0, 3] });
    expect([rows.rows, rows.cols]).toEqual([3, 20]);
    expect(rows.data).toEqual(decodeTokens(direct.blob, [89, 0, 3]));
    expect((await api.decode(blob)).rows).toBe(90);
    const e = await api.evaluate(blob, { reference: table });
    expect([e.relMSE, e.cosine]).toEqual([direct.metrics.relMSE, direct.metrics.cosine]);
    await expect(api.parseBlob(viaApi.bytes.subarray(0, 100), { name: "cut.carvq" })).rejects.toThrow(/^cut\.carvq: /);
    await expect(api.evaluate(blob, { reference: randomMatrix(90, 21, 1), referenceName: "ref.npy" })).rejects.toThrow(
      /ref\.npy: shape 90 x 21 does not match/,
    );
  });

  it.skipIf(!existsSync(join(root, "dist", "index.mjs")))(
    "package.json exports the built bundle and its declarations, which give the same bytes",
    async () => {
      const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
      const entry = pkg.exports["."];
      expect(existsSync(join(root, entry.types))).toBe(true);
      const built = (await import(pathToFileURL(join(root, entry.import)).href)) as typeof api;
      const fromBundle = await built.compress(table, options);
      expect(Buffer.from(fromBundle.bytes).equals(Buffer.from((await compressMatrix(table, options)).bytes))).toBe(true);
    },
  );
});
