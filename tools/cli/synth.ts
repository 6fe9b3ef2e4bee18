import { checkOverwrite } from "../atomic.ts";
import { writeNpy } from "../readers/npy.ts";
import { MAX_SYNTH_ELEMENTS, synthMatrix } from "../synth.ts";
import { intOption, parseCommandArgs, quoted, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, note, printResult } from "./output.ts";

const help = `carvq synth --shape ROWSxCOLS -o <file.npy> [options]

Writes a seeded synthetic embedding table as a float32 .npy file, with the traits real tables
have: a shared mean offset, a decaying spectrum along random directions, clustered directions, row
norms that vary by token (smaller for later, rarer ids) and a few outlier dimensions. For speed and
memory tests at LLM scale; synthetic data never stands in for a quality claim.
Example: carvq synth --shape 128256x2048 --seed 1 -o llama-like.npy

Options:
  --shape RxC          rows x columns, e.g. 128256x2048 (required; at most ${MAX_SYNTH_ELEMENTS} values)
  -o, --output FILE    the .npy file to write (required); refused if it exists, unless --force
  --seed N             random seed, 0 to 4294967295 (default 1); the same seed gives the same bytes
  --force              overwrite an existing output file
  --json               print what was written as one JSON object on stdout
  -h, --help           this text`;

export const synthCommand: Command = {
  name: "synth",
  summary: "write a seeded synthetic embedding table (.npy) for speed and memory tests",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("synth", argv, {
      shape: { type: "string" },
      output: { type: "string", short: "o" },
      seed: { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length > 0) throw usageError("synth", `unexpected argument ${quoted(positionals[0])} (see carvq synth --help)`);
    if (values.shape === undefined) throw usageError("synth", "--shape is required, e.g. --shape 128256x2048 (see carvq synth --help)");
    const { rows, cols } = parseShape(values.shape);
    if (values.output === undefined) throw usageError("synth", "-o/--output is required (see carvq synth --help)");
    const seed = intOption("synth", "seed", values.seed, 1, 0, 0xffffffff);
    const force = values.force === true;
    checkOverwrite(values.output, force); // before the work, not only at the end
    const started = performance.now();
    const matrix = synthMatrix({ rows, cols, seed });
    writeNpy(values.output, matrix, force);
    const seconds = (performance.now() - started) / 1000;
    const bytes = matrix.data.byteLength;
    note(
      `carvq synth: wrote ${values.output} (${rows} x ${cols} float32, ${fmt(bytes / 2 ** 20)} MiB of data, seed ${seed}) in ${fmt(seconds)} s`,
    );
    if (values.json) printResult(true, { output: values.output, rows, cols, seed, dtype: "float32", dataBytes: bytes, seconds }, []);
  },
};

/** Parses "ROWSxCOLS" into positive whole numbers whose product the generator accepts. */
export function parseShape(raw: string): { rows: number; cols: number } {
  const match = /^\s*(\d{1,10})\s*[xX]\s*(\d{1,10})\s*$/.exec(raw);
  if (!match) throw usageError("synth", `--shape must look like ROWSxCOLS (e.g. 128256x2048), got ${quoted(raw)}`);
  const rows = Number(match[1]);
  const cols = Number(match[2]);
  if (rows < 1 || cols < 1) throw usageError("synth", `--shape ${quoted(raw)} must have at least 1 row and 1 column`);
  if (rows * cols > MAX_SYNTH_ELEMENTS)
    throw usageError("synth", `--shape ${quoted(raw)} has ${rows * cols} values; at most ${MAX_SYNTH_ELEMENTS} are allowed`);
  return { rows, cols };
}
