import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectSameMatrix, refusal } from "./helpers.ts";
import { afterAll, describe, expect, it } from "vitest";
import { openCheckpoint } from "../tools/readers/checkpoint.ts";
import { listTensors, loadMatrix } from "../tools/readers/index.ts";
import { shardName, stateDictPickle, torchZipBytes, writeHfFolder } from "./fixtures/checkpoints.ts";
import { encodeMatrix, exactMatrix, safetensorsTensor } from "./fixtures/writers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-checkpoint-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
const fresh = (name: string) => join(dir, `${counter++}-${name}`);

const LLAMA_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 8,
  vocab_size: 12,
  tie_word_embeddings: false,
};

/** A two-shard folder: layers in shard 1, the embedding and the head in shard 2. */
function shardedFolder(config: Record<string, unknown> | undefined = LLAMA_CONFIG) {
  const folder = fresh("llama");
  const embedding = exactMatrix(12, 8, 1);
  const head = exactMatrix(12, 8, 2);
  const shards = writeHfFolder(folder, {
    config,
    shards: [
      [
        safetensorsTensor("model.layers.0.mlp.up_proj.weight", exactMatrix(16, 8, 3)),
        { name: "model.norm.weight", dtype: "F32", shape: [8], data: encodeMatrix(exactMatrix(1, 8, 4), "F32") },
      ],
      [safetensorsTensor("model.embed_tokens.weight", embedding, "BF16"), safetensorsTensor("lm_head.weight", head, "F16")],
    ],
  });
  return { folder, shards, embedding, head };
}

describe("Hugging Face folders and shard indexes", () => {
  it("reads the embedding of a sharded folder through its index, from the shard that holds it", () => {
    const { folder, shards, embedding } = shardedFolder();
    // Shard 1 is damaged: only shard 2's header and data may be read to find and load the embedding.
    writeFileSync(shards[0], new TextEncoder().encode("this shard must not be read"));
    const loaded = loadMatrix(folder);
    expect(loaded).toMatchObject({
      tensor: "model.embed_tokens.weight",
      format: "safetensors",
      path: folder,
      file: shards[1],
      dtype: "BF16",
      bitsPerWeight: 16,
      autoPicked: true,
      tiedEmbeddings: false,
    });
    expectSameMatrix(loaded.matrix, embedding);
  });

  it("takes the index file itself, and a config.json, as the folder", () => {
    const { folder, embedding } = shardedFolder();
    expectSameMatrix(loadMatrix(join(folder, "model.safetensors.index.json")).matrix, embedding);
    expectSameMatrix(loadMatrix(join(folder, "config.json")).matrix, embedding);
  });

  it("reads a folder with a single model.safetensors and reports tie_word_embeddings", () => {
    const folder = fresh("tied");
    const embedding = exactMatrix(6, 4);
    writeHfFolder(folder, {
      config: { model_type: "llama", tie_word_embeddings: true },
      shards: [[safetensorsTensor("model.embed_tokens.weight", embedding)]],
    });
    const loaded = loadMatrix(folder);
    expect(loaded.tiedEmbeddings).toBe(true);
    expectSameMatrix(loaded.matrix, embedding);
  });

  it("lists every tensor of every shard", () => {
    const { folder } = shardedFolder();
    expect(listTensors(folder).tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ["model.layers.0.mlp.up_proj.weight", "F32", [16, 8]],
      ["model.norm.weight", "F32", [8]],
      ["model.embed_tokens.weight", "BF16", [12, 8]],
      ["lm_head.weight", "F16", [12, 8]],
    ]);
  });

  it("given one shard without the embedding, says which shard the index puts it in", () => {
    const { folder, shards } = shardedFolder();
    const message = refusal(() => loadMatrix(shards[0]), shards[0]);
    expect(message).toContain(
      `model.safetensors.index.json puts 'model.embed_tokens.weight' in ${shardName(1, 2)}: pass the folder ${folder}`,
    );
  });

  it("refuses an index whose shard lacks a tensor it lists, or that points outside its folder", () => {
    const { folder } = shardedFolder();
    const index = join(folder, "model.safetensors.index.json");
    writeFileSync(index, JSON.stringify({ weight_map: { "model.embed_tokens.weight": shardName(0, 2) } }));
    expect(refusal(() => loadMatrix(folder), index)).toContain(
      `weight_map puts tensor 'model.embed_tokens.weight' in ${join(folder, shardName(0, 2))}, which has no such tensor`,
    );
    writeFileSync(index, JSON.stringify({ weight_map: { "model.embed_tokens.weight": "../../etc/passwd" } }));
    expect(refusal(() => loadMatrix(folder), index)).toContain(
      `weight_map['model.embed_tokens.weight'] is "../../etc/passwd"; expected a shard file name in the index's folder`,
    );
  });
});

describe("format sniffing", () => {
  it("says a text file renamed .safetensors is not a safetensors file, showing its first bytes", () => {
    const path = fresh("model.safetensors");
    writeFileSync(path, "Hello, this is not a model at all.\n");
    expect(refusal(() => loadMatrix(path), path)).toBe(
      `${path}: not a safetensors file (first bytes 48 65 6c 6c 6f 2c 20 74, text "Hello, t"): its header length is ${Buffer.from("Hello, t").readBigUInt64LE()} bytes; expected at most 100000000`,
    );
  });

  it("takes a shard index or config by content, and refuses other JSON naming what it lacks", () => {
    const path = fresh("settings.json");
    writeFileSync(path, JSON.stringify({ learning_rate: 0.1 }));
    expect(refusal(() => loadMatrix(path), path)).toContain(
      "a JSON file with neither weight_map (a shard index) nor model_type (a config.json)",
    );
  });
});

describe("PyTorch folders", () => {
  it("reads a sharded pytorch_model.bin.index.json folder from the shard holding the embedding", () => {
    const folder = fresh("torch");
    const embedding = exactMatrix(6, 4, 9);
    mkdirSync(folder);
    const shard = (tensors: Parameters<typeof stateDictPickle>[0], data: Uint8Array) =>
      torchZipBytes(stateDictPickle(tensors), new Map([["0", data]]));
    writeFileSync(join(folder, "pytorch_model-00001-of-00002.bin"), new TextEncoder().encode("not read"));
    writeFileSync(
      join(folder, "pytorch_model-00002-of-00002.bin"),
      shard(
        [{ name: "model.embed_tokens.weight", storageType: "HalfStorage", key: "0", storageNumel: 24, shape: [6, 4] }],
        encodeMatrix(embedding, "F16"),
      ),
    );
    writeFileSync(
      join(folder, "pytorch_model.bin.index.json"),
      JSON.stringify({
        weight_map: {
          "model.norm.weight": "pytorch_model-00001-of-00002.bin",
          "model.embed_tokens.weight": "pytorch_model-00002-of-00002.bin",
        },
      }),
    );
    const loaded = loadMatrix(folder);
    expect(loaded).toMatchObject({ format: "pytorch", dtype: "F16", file: join(folder, "pytorch_model-00002-of-00002.bin") });
    expectSameMatrix(loaded.matrix, embedding);
  });
});

describe("openCheckpoint", () => {
  it("describes every tensor with its file, offset and stored length, and reads raw bytes and float32 values", async () => {
    const { folder, shards, embedding, head } = shardedFolder();
    const checkpoint = await openCheckpoint(folder);
    expect(checkpoint.config?.model_type).toBe("llama");
    expect(checkpoint.tiedEmbeddings).toBe(false);
    expect(checkpoint.embedding).toBe("model.embed_tokens.weight");
    const info = checkpoint.tensors.get("lm_head.weight")!;
    expect(info).toMatchObject({ name: "lm_head.weight", dtype: "F16", shape: [12, 8], file: shards[1], byteLength: 12 * 8 * 2 });
    expect(Array.from(await checkpoint.readRaw("lm_head.weight"))).toEqual(Array.from(encodeMatrix(head, "F16")));
    expect(Array.from(await checkpoint.readF32("lm_head.weight"))).toEqual(Array.from(head.data));
    expect(Array.from(await checkpoint.readF32("model.embed_tokens.weight"))).toEqual(Array.from(embedding.data));
    expect(Array.from(await checkpoint.readF32("model.norm.weight"))).toEqual(Array.from(exactMatrix(1, 8, 4).data));
  });
});
