import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { createRandom } from "../tools/random.ts";
import { listTensors, loadMatrix } from "../tools/readers/index.ts";
import { stateDictPickle, torchZipBytes, zipBytes } from "./fixtures/checkpoints.ts";
import { BLOCK_FIXTURES } from "./fixtures/gguf-blocks.ts";
import { encodeMatrix, exactMatrix, ggufBytes, npyBytes } from "./fixtures/writers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-reliability-containers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const rng = createRandom(14);
const int = (n: number) => Math.floor(rng() * n);
const embedding = exactMatrix(8, 32);

/** Valid inputs of the container and block formats, to be damaged at random. */
const seeds: [string, Uint8Array][] = [
  [
    "weights.npz",
    zipBytes([
      { name: "model.embed_tokens.weight.npy", data: npyBytes({ shape: [8, 32], data: encodeMatrix(embedding, "F32") }), deflate: true },
      { name: "b.npy", data: npyBytes({ descr: ">f8", fortranOrder: true, shape: [2, 2], data: new Uint8Array(32) }) },
    ]),
  ],
  [
    "pytorch_model.bin",
    torchZipBytes(
      stateDictPickle([
        { name: "model.embed_tokens.weight", storageType: "HalfStorage", key: "0", storageNumel: 256, shape: [8, 32] },
        { name: "proj.weight", storageType: "FloatStorage", key: "1", storageNumel: 64, shape: [8, 8], stride: [1, 8] },
      ]),
      new Map([
        ["0", encodeMatrix(embedding, "F16")],
        ["1", new Uint8Array(256)],
      ]),
    ),
  ],
  ...BLOCK_FIXTURES.map(({ name, typeId, blockElements, make }): [string, Uint8Array] => {
    const blocks = Array.from({ length: (2 * 256) / blockElements }, () => make(rng).bytes);
    const data = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
    blocks.reduce((at, b) => (data.set(b, at), at + b.length), 0);
    return [`${name}.gguf`, ggufBytes([{ name: "token_embd.weight", type: typeId, ne: [256, 2], data }])];
  }),
];

/** One random damage: bytes overwritten, a u32 set to an edge value, a span copied over another, or a cut. */
function damage(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  switch (int(4)) {
    case 0:
      for (let k = 0; k <= int(8); k++) out[int(out.length)] = int(256);
      return out;
    case 1:
      new DataView(out.buffer).setUint32(int(out.length - 4), [0xffffffff, 0x7fffffff, 0, 1, 1 << 30][int(5)], true);
      return out;
    case 2:
      out.copyWithin(int(out.length), int(out.length), int(out.length));
      return out;
    default:
      return out.subarray(0, int(out.length));
  }
}

describe("damaged .npz, PyTorch zips and GGUF block files: read or refused in one line, never a crash", () => {
  it("holds for 400 damaged files", () => {
    const outcomes = { read: 0, refused: 0 };
    for (let i = 0; i < 400; i++) {
      const [name, seed] = seeds[i % seeds.length];
      const path = join(dir, `${i}-${name}`);
      writeFileSync(path, damage(seed));
      for (const run of [() => listTensors(path), () => loadMatrix(path)]) {
        try {
          run();
          outcomes.read++;
        } catch (err) {
          if (!(err instanceof CarvqError)) throw new Error(`${path}: ${err instanceof Error ? err.stack : String(err)}`);
          expect(err.message.startsWith(`${path}: `), err.message).toBe(true);
          expect(err.message).not.toContain("\n");
          outcomes.refused++;
        }
      }
    }
    // Both outcomes occur, so the damage neither always breaks the files nor never does.
    expect(outcomes.read).toBeGreaterThan(50);
    expect(outcomes.refused).toBeGreaterThan(50);
  });
});
