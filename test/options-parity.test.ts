// Every encoder option that changes a blob's bytes (layout, beam, refinement, gain-shape, weights,
// KL-aware encoding and codebook tuning for a model's objective) round-trips through the blob, the TypeScript decoder and both runtime builds in both modes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openRuntime } from "../host/node.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { compressMatrix, type CompressOptions } from "../tools/compress.ts";
import { decodeAll } from "../tools/decoder.ts";
import { randomMatrix, weightedSquaredError } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-options-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const matrix = randomMatrix(300, 21, 77);
const weights = Float32Array.from({ length: 300 }, (_, t) => 1 / (t + 1));
const cases: [string, Partial<CompressOptions>][] = [
  ["col + beam 4 + refine 2", { layout: "col", group: 64, beam: 4, refine: 2 }],
  ["row + gain-shape 32", { group: 100, rowScaleCount: 32 }],
  ["col + gain-shape 256 + weights", { layout: "col", group: 128, rowScaleCount: 256, weights }],
  ["h 7, L 4, beam 8", { h: 7, levels: 4, group: 200, beam: 8 }],
  ["kl-encode 2 + tune-kl 3 (a weighted objective)", { h: 4, levels: 3, group: 150, klEncode: 2, tuneKl: 3 }],
];

describe("encoder options round-trip through the runtime", () => {
  for (const [what, options] of cases) {
    it(what, async () => {
      const result = await compressMatrix(
        matrix,
        { iters: 5, ...options },
        { objective: weightedSquaredError(matrix, (j) => (j === 0 ? 30 : 1)) },
      );
      if (options.klEncode) expect(result.blob.metadata?.options).toMatchObject({ klEncode: 2, tune: 3 });
      const path = join(dir, `${what.replace(/\W+/g, "-")}.carvq`);
      writeFileSync(path, result.bytes);
      const reference = decodeAll(parseBlob(result.bytes, path)).data;
      const tokens = Array.from({ length: 300 }, (_, t) => t);
      for (const build of ["simd", "scalar"] as const) {
        for (const mode of ["resident", "streaming"] as const) {
          const runtime = await openRuntime({ blob: path, build, mode });
          const rows = runtime.lookup(tokens);
          runtime.close();
          expect(Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength).equals(Buffer.from(reference.buffer)), `${build} ${mode}`).toBe(
            true,
          );
        }
      }
    });
  }
});
