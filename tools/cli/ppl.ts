import { statSync } from "node:fs";
import { readBlobFile } from "../blob/reader.ts";
import { decodeAll } from "../decoder.ts";
import { CarvqError } from "../errors.ts";
import { bitsPerParameter } from "../eval/bpp.ts";
import { evaluatePerplexity } from "../eval/perplexity.ts";
import { loadLlama2cModel } from "../llama2c/model.ts";
import { DEFAULT_SAMPLE_OPTIONS } from "../llama2c/sample.ts";
import { detectFileKind, type FileKind } from "../readers/detect.ts";
import { withModelFile } from "../readers/modelFile.ts";
import { intOption, parseCommandArgs, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, printResult } from "./output.ts";
import { count } from "../text.ts";

const D = DEFAULT_SAMPLE_OPTIONS;

const help = `carvq ppl <blob> --model <llama2c.bin> [--json]

Runs a llama2.c model (e.g. ../shared/models/stories260K.bin) end to end with its input embedding
replaced by the blob's decoded table, and compares it with the original model. The output
classifier keeps its original values, even when it is tied to the embedding.

Evaluation text: --sequences sequences sampled from the original model, each BOS followed by
--length tokens at temperature 1, sequence i seeded with (--seed, i). It is regenerated on every
run (deterministic, nothing cached on disk), so the same options give the same text and numbers.

  ppl_orig  perplexity of the original model on that text: exp(mean -log p(next token)), teacher-forced
  ppl       the same with the blob's embedding
  kl        mean over positions of KL(original || compressed) of the next-token distributions, in nats
  tokens    predicted tokens averaged over (sequences x length)
  bpp       the blob's total bits per parameter

Options:
  --model FILE      the llama2.c checkpoint whose token embedding the blob compresses (required);
                    the blob's shape must equal the embedding's (vocab x dim)
  --sequences N     evaluation sequences (default ${D.sequences})
  --length N        sampled tokens per sequence (default ${D.length}; at most the model's seq_len - 1)
  --seed N          base seed of the evaluation text (default ${D.seed})
  --json            print one JSON object
  -h, --help        this text`;

/** The kinds of model ppl can run (by the readers' format names), as an error message names them. */
const RUNNABLE_MODELS: ReadonlyMap<FileKind, string> = new Map([["llama2c", "a llama2.c checkpoint (e.g. stories260K.bin)"]]);

/** How a message names a file of each format ppl cannot run. */
const FORMAT_NAMES: Partial<Record<FileKind, string>> = { safetensors: "a safetensors file", gguf: "a GGUF file", npy: "an .npy array", npz: "an .npz archive", pytorch: "a PyTorch checkpoint", json: "a JSON file" };

/** Refuses a --model of a kind ppl cannot run, by its content, before anything is loaded. */
function checkModelKind(path: string): void {
  const folder = (() => {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false; // a missing file: the reader names it below
    }
  })();
  const format = folder ? "folder" : withModelFile(path, detectFileKind);
  if (RUNNABLE_MODELS.has(format as FileKind)) return;
  const kind = folder ? "a folder" : (FORMAT_NAMES[format as FileKind] ?? `a ${format} file`);
  throw usageError("ppl", `--model ${path} is ${kind}; ppl runs ${[...RUNNABLE_MODELS.values()].join(" or ")}`);
}

export const pplCommand: Command = {
  name: "ppl",
  summary: "perplexity and KL of a llama2.c model using a blob as its input embedding",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("ppl", argv, {
      model: { type: "string" },
      sequences: { type: "string" },
      length: { type: "string" },
      seed: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1) throw usageError("ppl", `expected one blob, got ${positionals.length} (see carvq ppl --help)`);
    if (values.model === undefined) throw usageError("ppl", "--model is required (see carvq ppl --help)");
    const sequences = intOption("ppl", "sequences", values.sequences, D.sequences, 1, 100_000);
    const seed = intOption("ppl", "seed", values.seed, D.seed, 0, 0xffffffff);
    const blobPath = positionals[0];
    checkModelKind(values.model);
    const blob = readBlobFile(blobPath);
    const model = loadLlama2cModel(values.model);
    const length = intOption("ppl", "length", values.length, Math.min(D.length, model.config.seqLen - 1), 1, model.config.seqLen - 1);
    const { vocabSize, dim } = model.config;
    const { rows, cols } = blob.header;
    if (rows !== vocabSize || cols !== dim) {
      throw new CarvqError(`carvq ppl: blob ${blobPath} is ${rows} x ${cols} but ${values.model}'s token embedding is ${vocabSize} x ${dim}; the blob must compress this model's embedding`);
    }
    const started = performance.now();
    const result = evaluatePerplexity(model, decodeAll(blob), { sequences, length, seed }, blobPath);
    const seconds = (performance.now() - started) / 1000;
    const bpp = bitsPerParameter(blob).bpp;
    const change = (result.ppl / result.ppl_orig - 1) * 100;
    printResult(values.json === true, { blob: blobPath, model: values.model, method: blob.header.method, bpp, ...result, seed, length, seconds: Number(seconds.toFixed(3)) }, [
      `${blobPath}: ${blob.header.method}, ${rows} x ${cols}, ${fmt(bpp)} bpp, on ${values.model}`,
      `ppl_orig  ${fmt(result.ppl_orig)}`,
      `ppl       ${fmt(result.ppl)}  (${change >= 0 ? "+" : ""}${change.toFixed(1)} %)`,
      `kl        ${fmt(result.kl)}`,
      `tokens    ${result.tokens}  (${count(result.sequences, "sequence")} x ${length}, seed ${seed}; ${seconds.toFixed(1)} s)`,
    ]);
  },
};
