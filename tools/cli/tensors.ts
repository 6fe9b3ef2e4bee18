import { basename } from "node:path";
import { CarvqError } from "../errors.ts";
import { EXIT } from "../exit-codes.ts";
import { openSource } from "../readers/checkpoint.ts";
import { findEmbeddingName } from "../readers/embedding.ts";
import { printable } from "../readers/modelFile.ts";
import { dtypeBitsPerWeight, storedByteLength } from "../readers/tensor.ts";
import { parseCommandArgs } from "./args.ts";
import type { Command } from "./command.ts";
import { fmtBpw, printResult } from "./output.ts";

const help = `carvq tensors <file|folder> [--json]

Lists every tensor of a model file, Hugging Face folder or shard index: name, dtype, shape, bytes
(and the shard that holds it), and says which one compress, eval and extract take as the token
embedding when no --tensor is given. Reads headers only, never tensor data.

Inputs: safetensors, GGUF, .npy, .npz, PyTorch .bin (zip; its pickle is read without running
anything), llama2.c checkpoints, a folder with config.json and model.safetensors or
model.safetensors.index.json and its shards, or the index file itself.

Options:
  --json       print one JSON object
  -h, --help   this text`;

export const tensorsCommand: Command = {
  name: "tensors",
  summary: "list a model's tensors (name, dtype, shape, bytes) and which is the embedding",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("tensors", argv, { json: { type: "boolean" } });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1)
      throw new CarvqError(
        `carvq tensors: expected one model file or folder, got ${positionals.length} (see carvq tensors --help)`,
        EXIT.usage,
      );
    const input = positionals[0];
    const source = openSource(input);
    const tensors = source.describeAll();
    let embedding: string | null = null;
    let why = "";
    try {
      embedding = findEmbeddingName(source);
    } catch (err) {
      if (!(err instanceof CarvqError)) throw err;
      why = err.message.slice(err.message.indexOf(": ") + 2);
    }
    const shards = new Set(tensors.map((t) => t.file));
    const rows = tensors.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      // A type we cannot size (an unknown ggml id) has no byte count unless the header declares one.
      bytes: storedByteLength(t.dtype, t.shape) ?? (t.declaredBy !== undefined ? t.byteLength : null),
      ...(shards.size > 1 ? { file: t.file } : {}),
    }));
    const format = source.formatOf(source.names[0] ?? "");
    const embeddingInfo = tensors.find((t) => t.name === embedding);
    const bits = embeddingInfo ? dtypeBitsPerWeight(embeddingInfo.dtype) : undefined;
    const header = [
      `${input}: ${format}${source.kind === "file" ? "" : ` (${source.kind}, weights ${basename(source.weights)}${shards.size > 1 ? `, ${shards.size} shards` : ""})`}, ${tensors.length} tensor${tensors.length === 1 ? "" : "s"}` +
        (source.tiedEmbeddings !== undefined ? `; config.json: tie_word_embeddings ${source.tiedEmbeddings}` : ""),
    ];
    const nameWidth = Math.min(60, Math.max(4, ...rows.map((r) => printable(r.name).length)));
    const table = rows.map((r) => {
      const mark = r.name === embedding ? "  <- embedding" : "";
      const where = r.file !== undefined ? `  ${basename(r.file)}` : "";
      return `  ${printable(r.name).padEnd(nameWidth)}  ${r.dtype.padEnd(7)}  ${(r.shape.join(" x ") || "scalar").padEnd(14)}  ${String(r.bytes ?? "?").padStart(12)}${where}${mark}`;
    });
    const footer =
      embedding !== null && embeddingInfo !== undefined
        ? `embedding: '${printable(embedding)}' (${embeddingInfo.dtype}${bits !== undefined ? ` ${fmtBpw(bits)} bpw` : ""}, ${embeddingInfo.shape.join(" x ")})`
        : `embedding: none found (${why})`;
    printResult(
      values.json === true,
      {
        input,
        format,
        kind: source.kind,
        weights: source.weights,
        ...(source.tiedEmbeddings !== undefined ? { tiedEmbeddings: source.tiedEmbeddings } : {}),
        embedding,
        ...(embeddingInfo && bits !== undefined ? { embeddingBitsPerWeight: bits } : {}),
        tensors: rows,
      },
      [
        ...header,
        `  ${"name".padEnd(nameWidth)}  ${"dtype".padEnd(7)}  ${"shape".padEnd(14)}  ${"bytes".padStart(12)}${shards.size > 1 ? "  file" : ""}`,
        ...table,
        footer,
      ],
    );
  },
};
