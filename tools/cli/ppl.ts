import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { readBlobFile, type Blob } from "../blob/reader.ts";
import { decodeAll, decodeToken } from "../decoder.ts";
import { CarvqError } from "../errors.ts";
import { bitsPerParameter } from "../eval/bpp.ts";
import { evaluatePerplexity } from "../eval/perplexity.ts";
import { openMatmulBackend } from "../hf/backend.ts";
import { loadHfModel, withHfInputEmbedding, type HfModel, type InputEmbedding } from "../hf/model.ts";
import {
  comparePerplexity,
  hfLogitsModel,
  llama2cLogitsModel,
  readTextWindows,
  readTokenWindows,
  type ComparisonResult,
  type LogitsModel,
  type Window,
} from "../hf/perplexity.ts";
import { loadLlama2cModel, withInputEmbedding, type Llama2cModel } from "../llama2c/model.ts";
import { DEFAULT_SAMPLE_OPTIONS } from "../llama2c/sample.ts";
import { startProgress } from "../progress.ts";
import { defaultThreads } from "../quant/parallel.ts";
import { detectFileKind, type FileKind } from "../readers/detect.ts";
import { withModelFile } from "../readers/modelFile.ts";
import { count } from "../text.ts";
import { intOption, parseCommandArgs, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, note, printResult } from "./output.ts";

const D = DEFAULT_SAMPLE_OPTIONS;
const DEFAULT_CTX = 512;

const help = `carvq ppl <blob> --model <hf folder | llama2c.bin> [--text FILE | --tokens FILE.json] [--ctx N] [--stride N] [--json]

Runs a model end to end with its input embedding replaced by the blob's decoded table, and compares
it with the original model. The output head keeps its original weights, also when it is tied to
the input embedding (the output says which).

Models: a Hugging Face folder (config.json, model.safetensors or a sharded index, tokenizer.json
for --text) of LlamaForCausalLM (Llama 2, 3, 3.1, 3.2), MistralForCausalLM, Qwen2ForCausalLM or
Phi3ForCausalLM (Phi-3, Phi-3.5, Phi-4, Phi-4-mini), weights bf16, f16 or f32; or a llama2.c
checkpoint.

Evaluation text, one of:
  --text FILE         a UTF-8 text, tokenized with the folder's tokenizer.json (special tokens as the
                      tokenizer adds them, e.g. Llama's BOS), cut into windows of --ctx tokens
                      starting every --stride tokens; each window runs from position 0 and scores only
                      the tokens no earlier window scored (with --stride = --ctx the windows are
                      disjoint and each one's first token is context only)
  --tokens FILE.json  a JSON array of token-id arrays; each is one window from position 0 (no BOS
                      added) and scores its L - 1 next-token predictions
  (neither)           llama2.c only: --sequences texts sampled from the original model, each BOS then
                      --length tokens at temperature 1, sequence i seeded with (--seed, i)

  ppl_orig  perplexity of the original model: exp(mean -log p(next token)), teacher-forced
  ppl       the same with the blob's embedding
  kl        mean over scored tokens of KL(original || compressed) of the next-token distributions, in nats
  tokens    scored next-token predictions
  bpp       the blob's total bits per parameter

Options:
  --model PATH      the model whose token embedding the blob compresses (required); the blob's shape
                    must equal the embedding's (vocab x hidden)
  --text FILE       evaluation text (Hugging Face folder)
  --tokens FILE     evaluation token ids (either kind of model)
  --ctx N           window length for --text (default ${DEFAULT_CTX}, at most the model's positions)
  --stride N        tokens between window starts for --text (default: --ctx)
  --sequences N     llama2.c sampled text: sequences (default ${D.sequences})
  --length N        llama2.c sampled text: tokens per sequence (default ${D.length}; at most seq_len - 1)
  --seed N          llama2.c sampled text: base seed (default ${D.seed})
  --threads N       threads for a Hugging Face model's matrix products (default: the machine's cores,
                    here ${defaultThreads()}); the figures are the same for any count
  --json            print one JSON object (keys ppl_orig, ppl, kl, tokens, ...)
  -h, --help        this text`;

type Values = Record<string, string | boolean | undefined>;

const usage = (message: string) => usageError("ppl", `${message} (see carvq ppl --help)`);

const RUNNABLE_MODELS = "a Hugging Face model folder (config.json + safetensors) or a llama2.c checkpoint (e.g. stories260K.bin)";

/** How a message names a file of each format ppl cannot run. */
const FORMAT_NAMES: Partial<Record<FileKind, string>> = {
  safetensors: "a safetensors file",
  gguf: "a GGUF file",
  npy: "an .npy array",
  npz: "an .npz archive",
  pytorch: "a PyTorch checkpoint",
  json: "a JSON file",
};

/**
 * Which kind of model --model is, by its content, before anything is loaded: a folder with
 * config.json (Hugging Face) or a llama2.c checkpoint; anything else is refused naming what it is.
 */
function modelKind(path: string): "folder" | "llama2c" {
  const folder = (() => {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false; // a missing file: the reader names it below
    }
  })();
  if (folder) {
    if (existsSync(join(path, "config.json"))) return "folder";
    throw usageError("ppl", `--model ${path} is a folder without config.json; ppl runs ${RUNNABLE_MODELS}`);
  }
  const format = withModelFile(path, detectFileKind);
  if (format === "llama2c") return "llama2c";
  throw usageError("ppl", `--model ${path} is ${FORMAT_NAMES[format] ?? `a ${format} file`}; ppl runs ${RUNNABLE_MODELS}`);
}

function checkShape(blob: Blob, blobPath: string, modelPath: string, vocab: number, hidden: number): void {
  const { rows, cols } = blob.header;
  if (rows !== vocab || cols !== hidden) {
    throw new CarvqError(
      `carvq ppl: blob ${blobPath} is ${rows} x ${cols} but ${modelPath}'s token embedding is ${vocab} x ${hidden}; the blob must compress this model's embedding`,
    );
  }
}

/** The blob's rows decoded on demand (a window needs only its tokens' rows, not a whole 128k table). */
function blobEmbedding(blob: Blob): InputEmbedding {
  return { rows: blob.header.rows, cols: blob.header.cols, rowInto: (t, out, at) => decodeToken(blob, t, out, at) };
}

function windowsFor(
  values: Values,
  model: { vocab: number; maxPositions: number; tokenizerDir: string | null },
): { windows: Window[]; described: string; ctx?: number; stride?: number } {
  if (typeof values.tokens === "string") {
    const windows = readTokenWindows(values.tokens, model.vocab, model.maxPositions);
    return { windows, described: `${count(windows.length, "sequence")} from ${values.tokens}` };
  }
  const textPath = values.text as string;
  if (model.tokenizerDir === null)
    throw usage("--text needs a Hugging Face folder (its tokenizer.json); for a llama2.c model give --tokens, or neither for sampled text");
  const ctx = intOption("ppl", "ctx", values.ctx as string | undefined, Math.min(DEFAULT_CTX, model.maxPositions), 2, model.maxPositions);
  const stride = intOption("ppl", "stride", values.stride as string | undefined, ctx, 1, ctx);
  note(`${textPath}: tokenizing with ${model.tokenizerDir}/tokenizer.json`);
  const { windows, tokens } = readTextWindows(textPath, model.tokenizerDir, ctx, stride);
  return {
    windows,
    described: `${count(tokens, "token")} of ${textPath} in ${count(windows.length, "window")} (ctx ${ctx}, stride ${stride})`,
    ctx,
    stride,
  };
}

function compareWithProgress(original: LogitsModel, modified: LogitsModel, windows: readonly Window[]): ComparisonResult {
  const progress = startProgress("carvq ppl: windows");
  try {
    return comparePerplexity({ original, modified, windows, onWindow: (done) => progress.update(done, windows.length) });
  } finally {
    progress.stop();
  }
}

async function runHf(values: Values, blobPath: string, blob: Blob, modelPath: string) {
  const backend = await openMatmulBackend(intOption("ppl", "threads", values.threads as string | undefined, defaultThreads(), 1, 256));
  try {
    let plan: ReturnType<typeof windowsFor> | undefined;
    const model: HfModel = await loadHfModel(modelPath, backend, (config) => {
      checkShape(blob, blobPath, modelPath, config.vocabSize, config.hiddenSize);
      plan = windowsFor(values, { vocab: config.vocabSize, maxPositions: config.maxPositions, tokenizerDir: modelPath });
    });
    if (plan === undefined) throw new Error("loadHfModel did not show the config");
    const { tiedEmbeddings } = model.config;
    const modified = withHfInputEmbedding(model, blobEmbedding(blob), blobPath);
    const result = compareWithProgress(hfLogitsModel(model), hfLogitsModel(modified), plan.windows);
    return {
      result,
      described: plan.described,
      tied: tiedEmbeddings,
      architecture: model.config.architecture,
      ctx: plan.ctx,
      stride: plan.stride,
    };
  } finally {
    await backend.close();
  }
}

function runLlama2c(values: Values, blobPath: string, blob: Blob, modelPath: string) {
  const model: Llama2cModel = loadLlama2cModel(modelPath);
  const { vocabSize, dim, seqLen } = model.config;
  checkShape(blob, blobPath, modelPath, vocabSize, dim);
  const tied = model.wcls === model.tokenEmbedding;
  if (values.tokens === undefined && values.text === undefined) {
    const sequences = intOption("ppl", "sequences", values.sequences as string | undefined, D.sequences, 1, 100_000);
    const seed = intOption("ppl", "seed", values.seed as string | undefined, D.seed, 0, 0xffffffff);
    const length = intOption("ppl", "length", values.length as string | undefined, Math.min(D.length, seqLen - 1), 1, seqLen - 1);
    const sampled = evaluatePerplexity(model, decodeAll(blob), { sequences, length, seed }, blobPath);
    const result: ComparisonResult = {
      ppl_orig: sampled.ppl_orig,
      ppl: sampled.ppl,
      kl: sampled.kl,
      tokens: sampled.tokens,
      windows: sampled.sequences,
    };
    return {
      result,
      described: `${count(sequences, "sequence")} x ${length} sampled from the model, seed ${seed}`,
      tied,
      architecture: "llama2.c",
      seed,
      length,
    };
  }
  const plan = windowsFor(values, { vocab: vocabSize, maxPositions: seqLen, tokenizerDir: null });
  const modified = withInputEmbedding(model, decodeAll(blob), blobPath);
  const result = compareWithProgress(llama2cLogitsModel(model), llama2cLogitsModel(modified), plan.windows);
  return { result, described: plan.described, tied, architecture: "llama2.c" };
}

export const pplCommand: Command = {
  name: "ppl",
  summary: "perplexity and KL of a model (Hugging Face folder or llama2.c) using a blob as its input embedding",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("ppl", argv, {
      model: { type: "string" },
      text: { type: "string" },
      tokens: { type: "string" },
      ctx: { type: "string" },
      stride: { type: "string" },
      sequences: { type: "string" },
      length: { type: "string" },
      seed: { type: "string" },
      threads: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1) throw usage(`expected one blob, got ${positionals.length}`);
    if (values.model === undefined) throw usage("--model is required");
    if (values.text !== undefined && values.tokens !== undefined) throw usage("give --text or --tokens, not both");
    const given = values.text !== undefined || values.tokens !== undefined;
    for (const flag of ["sequences", "length", "seed"] as const) {
      if (values[flag] !== undefined && given) throw usage(`--${flag} sets the sampled text; it does not go with --text or --tokens`);
    }
    for (const flag of ["ctx", "stride"] as const)
      if (values[flag] !== undefined && values.text === undefined) throw usage(`--${flag} cuts a --text into windows; it needs --text`);
    // Syntax and ranges that do not depend on the model, before any file is read.
    intOption("ppl", "sequences", values.sequences, D.sequences, 1, 100_000);
    intOption("ppl", "seed", values.seed, D.seed, 0, 0xffffffff);
    intOption("ppl", "threads", values.threads, defaultThreads(), 1, 256);
    for (const flag of ["ctx", "stride", "length"] as const) intOption("ppl", flag, values[flag], 1, 1, Number.MAX_SAFE_INTEGER);
    const folder = modelKind(values.model) === "folder";
    if (folder && !given) throw usage(`--model ${values.model} is a Hugging Face folder: give --text FILE or --tokens FILE.json`);
    if (!folder && values.threads !== undefined)
      throw usage("--threads sets a Hugging Face model's matrix-product threads; a llama2.c model runs on one");
    if (folder)
      for (const flag of ["sequences", "length", "seed"] as const)
        if (values[flag] !== undefined) throw usage(`--${flag} is for llama2.c models' sampled text`);

    const blobPath = positionals[0];
    const blob = readBlobFile(blobPath);
    const started = performance.now();
    const run = folder ? await runHf(values, blobPath, blob, values.model) : runLlama2c(values, blobPath, blob, values.model);
    const seconds = (performance.now() - started) / 1000;
    const { result } = run;
    const bpp = bitsPerParameter(blob).bpp;
    const change = (result.ppl / result.ppl_orig - 1) * 100;
    const head = run.tied
      ? "original weights (tied to the input embedding in this model; only the input embedding is replaced)"
      : "original weights (untied)";
    const { rows, cols } = blob.header;
    printResult(
      values.json === true,
      {
        blob: blobPath,
        model: values.model,
        architecture: run.architecture,
        method: blob.header.method,
        bpp,
        ppl_orig: result.ppl_orig,
        ppl: result.ppl,
        kl: result.kl,
        tokens: result.tokens,
        sequences: result.windows,
        ...("ctx" in run && run.ctx !== undefined ? { ctx: run.ctx, stride: run.stride } : {}),
        ...("seed" in run ? { seed: run.seed, length: run.length } : {}),
        head: run.tied ? "original, tied" : "original, untied",
        seconds: Number(seconds.toFixed(3)),
      },
      [
        `${blobPath}: ${blob.header.method}, ${rows} x ${cols}, ${fmt(bpp)} bpp, on ${values.model} (${run.architecture})`,
        `ppl_orig  ${fmt(result.ppl_orig)}`,
        `ppl       ${fmt(result.ppl)}  (${change >= 0 ? "+" : ""}${change.toFixed(1)} %)`,
        `kl        ${fmt(result.kl)}`,
        `tokens    ${result.tokens}  (${run.described}; ${seconds.toFixed(1)} s)`,
        `head      ${head}`,
      ],
    );
  },
};
