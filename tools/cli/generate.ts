import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { openTable, type Table, type TableBuild, type TableMode } from "../../host/table.ts";
import { targetNames } from "../../host/common.ts";
import { CarvqError } from "../errors.ts";
import { createForwardState, forward } from "../llama2c/forward.ts";
import { loadLlama2cModel, type Llama2cModel } from "../llama2c/model.ts";
import { generate } from "../llama2c/sample.ts";
import { BOS, encode, loadTokenizer, tokenBytes, type Tokenizer } from "../llama2c/tokenizer.ts";
import { choiceOption, intOption, parseCommandArgs } from "./args.ts";
import type { Command } from "./command.ts";
import { note } from "./output.ts";

const DEFAULT_STEPS = 256;
const DEFAULT_SEED = 42;

const help = `carvq generate <blob> --model <llama2c.bin> [options]

Runs a llama2.c model (e.g. ../shared/models/stories260K.bin) with its input embedding served by
the WASM runtime from the blob (the JS API, openTable: one open, one lookup per token), prints the
story to stdout as it is generated. Then, on stderr: tokens/s with the blob's rows and with the
model's original table (the story read again by each, in turn, the faster of two passes: the same
positions, so only where the rows come from differs), and how far the story the original table
samples with the same seed agrees with it. Generation stops after --steps tokens, at the model's
seq_len, or when the model starts a new story (BOS), as llama2.c does.
Example: carvq generate s.carvq --model stories260K.bin --prompt "Once upon a time" --steps 100

Options:
  --model FILE         the llama2.c checkpoint whose token embedding the blob compresses (required);
                       its output classifier keeps its original values
  --tokenizer FILE     its llama2.c tokenizer (default: tok<vocab>.bin, else tokenizer.bin, beside
                       the model)
  --prompt TEXT        the story's start (default: none, the model starts from BOS)
  --steps N            tokens to sample after the prompt (default ${DEFAULT_STEPS})
  --seed S             sampling seed (default ${DEFAULT_SEED}); the same seed gives the same story
  --temperature T      softmax temperature, 0 for greedy (default 1)
  --target NAME        the device profile whose module serves the rows: ${targetNames().join(", ")}
  --build simd|scalar  the generic build (default simd); implied by --target
  --mode resident|streaming
                       the runtime's mode (default: the target's, else resident when it fits)
  --json               print one JSON object (the story's text and tokens, both runs' tokens and
                       speeds) instead of the story
  -h, --help           this text`;

function tokenizerFor(model: Llama2cModel, given: string | undefined): Tokenizer {
  const vocab = model.config.vocabSize;
  if (given !== undefined) return loadTokenizer(given, vocab);
  const beside = [join(dirname(model.path), `tok${vocab}.bin`), join(dirname(model.path), "tokenizer.bin")];
  const found = beside.find((p) => existsSync(p));
  if (found === undefined)
    throw new CarvqError(
      `carvq generate: no tokenizer beside ${model.path} (looked for ${beside.join(" and ")}); give one with --tokenizer`,
      2,
    );
  return loadTokenizer(found, vocab);
}

function temperatureOption(raw: string | undefined): number {
  if (raw === undefined) return 1;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 100)
    throw new CarvqError(`carvq generate: --temperature must be a number from 0 to 100, got '${raw}'`, 2);
  return value;
}

/** One sampled story: `table` serves the input rows when given, else the model's own table does. */
function story(
  model: Llama2cModel,
  prompt: number[],
  steps: number,
  options: { seed: number; temperature: number; table?: Table; onToken?: (t: number) => void },
): number[] {
  return generate(model, prompt, steps, {
    seed: options.seed,
    temperature: options.temperature,
    input: options.table && rowsFrom(options.table),
    onToken: options.onToken,
    stopAt: (t) => t === BOS,
  });
}

/** An input-row callback over an open table: one single-token lookup into the model's row. */
function rowsFrom(table: Table): (token: number, row: Float32Array) => void {
  const ids = new Uint32Array(1);
  return (token, row) => {
    ids[0] = token;
    table.lookupInto(ids, row);
  };
}

/**
 * Seconds for the model to read `tokens` (every token but the last, teacher-forced), its input
 * rows from `table` or from its own table: the same positions and the same work but for where the
 * rows come from, so the two speeds compare like with like whatever the stories sampled.
 */
function readSeconds(model: Llama2cModel, tokens: number[], table?: Table): number {
  const state = createForwardState(model, Math.max(1, tokens.length - 1));
  const input = table && rowsFrom(table);
  const row = new Float32Array(model.config.dim);
  const started = performance.now();
  for (let pos = 0; pos + 1 < tokens.length; pos++) {
    input?.(tokens[pos], row);
    forward(state, tokens[pos], pos, input && row);
  }
  return (performance.now() - started) / 1000;
}

/** How many sampled tokens (after the prompt) agree before the first difference. */
function agreeing(a: number[], b: number[], from: number): number {
  let n = 0;
  while (from + n < a.length && from + n < b.length && a[from + n] === b[from + n]) n++;
  return n;
}

export const generateCommand: Command = {
  name: "generate",
  summary: "tell a story with a llama2.c model whose input embedding the runtime serves from a blob",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("generate", argv, {
      model: { type: "string" },
      tokenizer: { type: "string" },
      prompt: { type: "string" },
      steps: { type: "string" },
      seed: { type: "string" },
      temperature: { type: "string" },
      target: { type: "string" },
      build: { type: "string" },
      mode: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1)
      throw new CarvqError(`carvq generate: expected one blob, got ${positionals.length} (see carvq generate --help)`, 2);
    if (values.model === undefined) throw new CarvqError("carvq generate: --model is required (see carvq generate --help)", 2);
    const blob = positionals[0];
    const seed = intOption("generate", "seed", values.seed, DEFAULT_SEED, 0, 0xffffffff);
    const temperature = temperatureOption(values.temperature);
    const build =
      values.build === undefined ? undefined : choiceOption<TableBuild>("generate", "build", values.build, "simd", ["simd", "scalar"]);
    const mode =
      values.mode === undefined
        ? undefined
        : choiceOption<TableMode>("generate", "mode", values.mode, "resident", ["resident", "streaming"]);
    const model = loadLlama2cModel(values.model);
    const tokenizer = tokenizerFor(model, values.tokenizer);
    const prompt = encode(tokenizer, values.prompt ?? "");
    const room = model.config.seqLen - prompt.length;
    if (room < 1)
      throw new CarvqError(
        `carvq generate: the prompt is ${prompt.length} tokens; ${values.model} holds ${model.config.seqLen} positions`,
        2,
      );
    const steps = intOption("generate", "steps", values.steps, Math.min(DEFAULT_STEPS, room), 1, room);

    const json = values.json === true;
    const text: Uint8Array[] = [];
    const openStarted = performance.now();
    const table = await openTable(blob, { target: values.target, build, mode });
    const openSeconds = (performance.now() - openStarted) / 1000;
    let tokens: number[];
    let blobSeconds = Infinity;
    let originalSeconds = Infinity;
    try {
      const { vocabSize, dim } = model.config;
      if (table.rows !== vocabSize || table.cols !== dim) {
        throw new CarvqError(
          `carvq generate: blob ${blob} is ${table.rows} x ${table.cols} but ${values.model}'s token embedding is ${vocabSize} x ${dim}; the blob must compress this model's embedding`,
          2,
        );
      }
      let previous = -1;
      const show = (t: number) => {
        const bytes = tokenBytes(tokenizer, previous, t);
        if (json) text.push(bytes);
        else process.stdout.write(bytes);
        previous = t;
      };
      for (const t of prompt) show(t);
      tokens = story(model, prompt, steps, { seed, temperature, table, onToken: show });
      if (!json) process.stdout.write("\n");
      // Speeds: the story read again with the blob's rows and with the original table, in turn,
      // twice each (the first pair also warms the JIT up for both); the faster of each.
      for (let round = 0; round < 3; round++) {
        const b = readSeconds(model, tokens, table);
        const o = readSeconds(model, tokens);
        if (round === 0) continue;
        blobSeconds = Math.min(blobSeconds, b);
        originalSeconds = Math.min(originalSeconds, o);
      }
    } finally {
      table.close();
    }
    const original = story(model, prompt, steps, { seed, temperature });
    const sampled = tokens.length - prompt.length;
    const same = agreeing(tokens, original, prompt.length);
    const positions = Math.max(1, tokens.length - 1);
    const rate = (seconds: number) => positions / seconds;
    note(
      `carvq generate: ${sampled} tokens; ${rate(blobSeconds).toFixed(0)} tokens/s with the blob (${table.bitsPerParameter.toFixed(3)} bpp; opened in ${(openSeconds * 1000).toFixed(1)} ms), ${rate(originalSeconds).toFixed(0)} tokens/s with the original table (the same ${positions} positions)`,
    );
    note(
      `carvq generate: the original table's story ${same === sampled && original.length === tokens.length ? "is the same, token for token" : `agrees for the first ${same} of ${sampled} sampled tokens`}`,
    );
    if (json) {
      process.stdout.write(
        `${JSON.stringify({
          blob,
          text: Buffer.concat(text).toString("utf8"),
          model: values.model,
          seed,
          temperature,
          prompt,
          tokens,
          originalTokens: original,
          agreeing: same,
          bitsPerParameter: table.bitsPerParameter,
          openSeconds,
          tokensPerSecond: rate(blobSeconds),
          originalTokensPerSecond: rate(originalSeconds),
        })}\n`,
      );
    }
  },
};
