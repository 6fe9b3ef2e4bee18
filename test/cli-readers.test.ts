import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { createRandom } from "../tools/random.ts";
import { loadMatrix } from "../tools/readers/index.ts";
import { writeHfFolder } from "./fixtures/checkpoints.ts";
import { q4_KBlock } from "./fixtures/gguf-blocks.ts";
import { encodeMatrix, exactMatrix, ggufBytes, safetensorsTensor } from "./fixtures/writers.ts";

const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "carvq-cli-readers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function carvq(...args: string[]) {
  const run = spawnSync(process.execPath, ["--no-warnings", cli, ...args], { cwd: dir, encoding: "utf8" });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A two-shard Hugging Face folder whose embedding (64 x 16, BF16) sits in shard 2. */
function folder(): { path: string; embedding: ReturnType<typeof exactMatrix> } {
  const path = join(dir, "hf-model");
  const embedding = exactMatrix(64, 16, 5);
  if (!existsSync(path)) {
    writeHfFolder(path, {
      config: { model_type: "llama", tie_word_embeddings: false },
      shards: [
        [
          safetensorsTensor("model.layers.0.self_attn.q_proj.weight", exactMatrix(16, 16, 1)),
          { name: "model.norm.weight", dtype: "F32", shape: [16], data: encodeMatrix(exactMatrix(1, 16), "F32") },
        ],
        [
          safetensorsTensor("model.embed_tokens.weight", embedding, "BF16"),
          safetensorsTensor("lm_head.weight", exactMatrix(64, 16, 2), "F16"),
        ],
      ],
    });
  }
  return { path, embedding };
}

/** A GGUF whose token_embd.weight is 16 rows of 256 Q4_K values. */
function q4kGguf(): string {
  const path = join(dir, "model-q4k.gguf");
  if (!existsSync(path)) {
    const rng = createRandom(9);
    const blocks = Array.from({ length: 16 }, () => q4_KBlock(rng).bytes);
    const data = new Uint8Array(16 * 144);
    blocks.forEach((b, i) => data.set(b, i * 144));
    writeFileSync(path, ggufBytes([{ name: "token_embd.weight", type: 12, ne: [256, 16], data }]));
  }
  return path;
}

describe.runIf(existsSync(cli))("carvq tensors and extract", () => {
  it("tensors lists every tensor of a sharded folder with dtype, shape, bytes and shard, and marks the embedding", () => {
    const { path } = folder();
    const text = carvq("tensors", path);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(
      /hf-model: safetensors \(folder, weights model\.safetensors\.index\.json, 2 shards\), 4 tensors; config\.json: tie_word_embeddings false/,
    );
    expect(text.stdout).toMatch(/model\.embed_tokens\.weight\s+BF16\s+64 x 16\s+2048\s+model-00002-of-00002\.safetensors\s+<- embedding/);
    expect(text.stdout).toContain("embedding: 'model.embed_tokens.weight' (BF16 16 bpw, 64 x 16)");
    const json = JSON.parse(carvq("tensors", path, "--json").stdout);
    expect(json).toMatchObject({
      format: "safetensors",
      kind: "folder",
      tiedEmbeddings: false,
      embedding: "model.embed_tokens.weight",
      embeddingBitsPerWeight: 16,
    });
    expect(json.tensors.map((t: { name: string; bytes: number }) => [t.name, t.bytes])).toEqual([
      ["model.layers.0.self_attn.q_proj.weight", 1024],
      ["model.norm.weight", 64],
      ["model.embed_tokens.weight", 2048],
      ["lm_head.weight", 2048],
    ]);
  });

  it("extract writes the table compress reads, refuses to overwrite without --force, and names a missing tensor", () => {
    const { path, embedding } = folder();
    const first = carvq("extract", path, "-o", "emb.npy");
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain("wrote emb.npy: 64 x 16 float32 from 'model.embed_tokens.weight' (BF16, 16 bpw)");
    expect(Array.from(loadMatrix(join(dir, "emb.npy")).matrix.data)).toEqual(Array.from(embedding.data));
    const again = carvq("extract", path, "-o", "emb.npy");
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim()).toBe("carvq: emb.npy: already exists (pass --force to overwrite)");
    expect(carvq("extract", path, "--tensor", "lm_head.weight", "-o", "emb.npy", "--force").code).toBe(0);
    expect(Array.from(loadMatrix(join(dir, "emb.npy")).matrix.data)).toEqual(Array.from(exactMatrix(64, 16, 2).data));
    const missing = carvq("extract", path, "--tensor", "nope", "-o", "other.npy");
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    expect(missing.stderr).toContain(`${path}: tensor 'nope' not found; available:`);
    expect(readdirSync(dir).filter((n) => n.startsWith("other") || n.endsWith(".tmp"))).toEqual([]);
  });

  it("extract dequantizes a Q4_K embedding, and compress, inspect and eval say the source was Q4_K at 4.5 bpw", () => {
    const gguf = q4kGguf();
    const extracted = carvq("extract", gguf, "-o", "q4k.npy", "--json");
    expect(extracted.code, extracted.stderr).toBe(0);
    expect(JSON.parse(extracted.stdout)).toMatchObject({ sourceDtype: "Q4_K", sourceBitsPerWeight: 4.5, shape: [16, 256] });
    expect(Array.from(loadMatrix(join(dir, "q4k.npy")).matrix.data)).toEqual(Array.from(loadMatrix(gguf).matrix.data));
    const compressed = carvq("compress", gguf, "-o", "q4k.carvq", "--h", "8", "--group", "64");
    expect(compressed.code, compressed.stderr).toBe(0);
    expect(compressed.stderr).toContain("using tensor 'token_embd.weight' (gguf Q4_K 4.5 bpw, 16 x 256)");
    expect(carvq("inspect", "q4k.carvq").stdout).toMatch(
      /source: model-q4k\.gguf 'token_embd\.weight', Q4_K 4\.5 bpw -> carvq \d+(\.\d+)? bpp/,
    );
    expect(carvq("eval", "q4k.carvq", "--ref", gguf).stdout).toMatch(/source {2}Q4_K 4\.5 bpw -> carvq \d+(\.\d+)? bpp/);
  });

  it("compress reads the embedding of a sharded folder", () => {
    const { path } = folder();
    const result = carvq("compress", path, "-o", "hf.carvq", "--h", "4", "--group", "16", "--json");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(
      `hf-model: using tensor 'model.embed_tokens.weight' from ${join(path, "model-00002-of-00002.safetensors")} (safetensors BF16 16 bpw, 64 x 16); config.json: tie_word_embeddings false`,
    );
    expect(JSON.parse(result.stdout)).toMatchObject({ tensor: "model.embed_tokens.weight", shape: [64, 16] });
  });
});
