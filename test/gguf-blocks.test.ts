import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { createRandom } from "../tools/random.ts";
import { DEQUANTIZERS, GGML_TYPES } from "../tools/readers/gguf-blocks.ts";
import { loadMatrix } from "../tools/readers/index.ts";
import { BLOCK_FIXTURES } from "./fixtures/gguf-blocks.ts";
import { exactMatrix, ggufBytes, ggufTensor, safetensorsBytes, safetensorsTensor } from "./fixtures/writers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-gguf-blocks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The float32 each exact value rounds to: ggml's last operation rounds once, so this is its result. */
const asF32 = (values: ArrayLike<number>) => Array.from(values, (v) => Math.fround(v));

describe.each(BLOCK_FIXTURES)("GGUF $name", ({ name, typeId, blockElements, make }) => {
  it("dequantizes blocks built from known scales and quants to the values ggml's formula gives", () => {
    const rng = createRandom(typeId);
    const blocks = Array.from({ length: 40 }, () => make(rng));
    const type = GGML_TYPES[typeId];
    expect(blocks[0].bytes.length).toBe(type.blockBytes);
    const source = new Uint8Array(blocks.length * type.blockBytes);
    blocks.forEach((b, i) => source.set(b.bytes, i * type.blockBytes));
    const target = new Float32Array(blocks.length * blockElements);
    DEQUANTIZERS.get(name)!(source, target);
    expect(Array.from(target)).toEqual(blocks.flatMap((b) => asF32(b.values)));
  });

  it("reads token_embd.weight of this type as rows x cols through the GGUF reader", () => {
    const rng = createRandom(100 + typeId);
    const rows = 3;
    const blocksPerRow = 512 / blockElements;
    const blocks = Array.from({ length: rows * blocksPerRow }, () => make(rng));
    const data = new Uint8Array(blocks.reduce((n, b) => n + b.bytes.length, 0));
    let at = 0;
    for (const b of blocks) {
      data.set(b.bytes, at);
      at += b.bytes.length;
    }
    const path = join(dir, `${name}.gguf`);
    writeFileSync(
      path,
      ggufBytes([{ name: "token_embd.weight", type: typeId, ne: [512, rows], data }, ggufTensor("output_norm.weight", exactMatrix(1, 4))]),
    );
    const loaded = loadMatrix(path);
    expect(loaded).toMatchObject({ tensor: "token_embd.weight", dtype: name, format: "gguf" });
    expect(loaded.bitsPerWeight).toBeCloseTo((GGML_TYPES[typeId].blockBytes * 8) / blockElements, 10);
    expect([loaded.matrix.rows, loaded.matrix.cols]).toEqual([rows, 512]);
    expect(Array.from(loaded.matrix.data)).toEqual(blocks.flatMap((b) => asF32(b.values)));
  });
});

describe("GGUF block types: refusals and truncation", () => {
  it("refuses rows that are not whole blocks, naming the tensor, ne[0] and the block size", () => {
    const path = join(dir, "ragged.gguf");
    writeFileSync(path, ggufBytes([{ name: "token_embd.weight", type: 12, ne: [128, 2], data: new Uint8Array(144) }]));
    expect(() => loadMatrix(path)).toThrow(
      new CarvqError(`${path}: tensor 'token_embd.weight' has ne[0] 128; Q4_K stores whole blocks of 256 values`),
    );
  });

  it("refuses a GGUF cut short after the embedding's bytes, as safetensors refuses the same cut", () => {
    const embedding = exactMatrix(4, 32);
    const gguf = ggufBytes([ggufTensor("token_embd.weight", embedding), ggufTensor("output.weight", exactMatrix(4, 32, 1))]);
    const ggufPath = join(dir, "cut.gguf");
    writeFileSync(ggufPath, gguf.subarray(0, gguf.length - 100));
    const st = safetensorsBytes([
      safetensorsTensor("model.embed_tokens.weight", embedding),
      safetensorsTensor("lm_head.weight", exactMatrix(4, 32, 1)),
    ]);
    const stPath = join(dir, "cut.safetensors");
    writeFileSync(stPath, st.subarray(0, st.length - 100));
    expect(() => loadMatrix(ggufPath)).toThrow(
      /cut\.gguf: tensor 'output\.weight' data spans bytes \d+\.\.\d+ but the file has \d+ bytes; the file is truncated/,
    );
    expect(() => loadMatrix(stPath)).toThrow(
      /cut\.safetensors: tensor 'lm_head\.weight': data_offsets \[\d+, \d+\] end at byte \d+ but the file has \d+ bytes; the file is truncated/,
    );
  });
});
