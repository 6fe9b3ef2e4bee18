// `npm run hf:export -- <llama2c.bin> <out folder> [--tokenizer tok.bin] [--tokens FILE.json]`: a llama2.c
// checkpoint as a Hugging Face Llama folder (config.json, model.safetensors, tokenizer.json with
// --tokenizer), e.g. to run `carvq ppl --model <folder>` on stories260K. With --tokens, also writes the
// evaluation text `carvq ppl --model <llama2c.bin>` samples by default (8 x 300 tokens) as token ids,
// so both paths can be measured on the same sequences.
import { existsSync, writeFileSync } from "node:fs";
import { CarvqError } from "../errors.ts";
import { originalEvaluation } from "../eval/perplexity.ts";
import { loadLlama2cModel } from "../llama2c/model.ts";
import { loadTokenizer } from "../llama2c/tokenizer.ts";
import { parseCommandArgs } from "../cli/args.ts";
import { llama2cToHf, writeHfFolder } from "../hf/write.ts";

const HELP = `npm run hf:export -- <llama2c.bin> <out folder> [--tokenizer tok.bin] [--tokens FILE.json] [--force]

Writes the llama2.c checkpoint as a Hugging Face LlamaForCausalLM folder: config.json,
model.safetensors (f32; q and k rows permuted to the rotate-half RoPE layout) and, with
--tokenizer, tokenizer.json built from the llama2.c tokenizer file (same ids as its encoder).
  --tokens FILE   also write the sampled evaluation text of carvq ppl's llama2.c default as a JSON
                  array of token-id arrays (for carvq ppl --tokens)
  --force         write into an existing folder`;

function main(argv: string[]): void {
  const { values, positionals } = parseCommandArgs("hf:export", argv, {
    tokenizer: { type: "string" },
    tokens: { type: "string" },
    force: { type: "boolean" },
  });
  if (values.help) return void process.stdout.write(`${HELP}\n`);
  if (positionals.length !== 2)
    throw new CarvqError(`hf:export: expected <llama2c.bin> <out folder>, got ${positionals.length} arguments (see --help)`, 2);
  const [modelPath, out] = positionals;
  if (existsSync(out) && !values.force) throw new CarvqError(`hf:export: ${out} exists; use --force to write into it`, 2);
  const model = loadLlama2cModel(modelPath);
  const tokenizer = values.tokenizer === undefined ? undefined : loadTokenizer(values.tokenizer, model.config.vocabSize);
  writeHfFolder(out, llama2cToHf(model, tokenizer));
  process.stderr.write(`${out}: config.json, model.safetensors${tokenizer ? ", tokenizer.json" : ""}\n`);
  if (values.tokens !== undefined) {
    const { sequences } = originalEvaluation(model);
    writeFileSync(values.tokens, JSON.stringify(sequences.map((s) => Array.from(s))));
    process.stderr.write(`${values.tokens}: ${sequences.length} sequences of ${sequences[0].length} tokens\n`);
  }
}

try {
  main(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof CarvqError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exitCode = err.exitCode;
}
