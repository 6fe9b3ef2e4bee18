// npm run bench:compress [-- --quick] [--full] [--fraction F] [--threads N] [--repetitions R] [--json]
// The compression group of `npm run bench` on its own: the goals one per line on stdout (or the
// group as one JSON object), progress on stderr. --full compresses the whole 128256 x 2048 table
// (see the goal's note for the last full run's time) instead of 1/32 of its rows. Bad options and
// failures print one line and exit non-zero.
import { availableParallelism } from "node:os";
import { parseFlags } from "../../cli/args.ts";
import { CarvqError } from "../../errors.ts";
import { EXIT } from "../../exit-codes.ts";
import { benchCompression, DEFAULT_COMPRESS_FRACTION } from "./compress.ts";

function positive(flag: string, text: string | undefined, fallback: number, integer: boolean): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(value > 0) || (integer && !Number.isInteger(value)))
    fail(`--${flag} ${text} must be a positive ${integer ? "whole number" : "number"}`);
  return value;
}

function fail(message: string): never {
  process.stderr.write(`bench:compress: ${message}\n`);
  process.exit(EXIT.usage);
}

function parse() {
  const options = {
    quick: { type: "boolean" },
    full: { type: "boolean" },
    json: { type: "boolean" },
    fraction: { type: "string" },
    threads: { type: "string" },
    repetitions: { type: "string" },
  } as const;
  try {
    return parseFlags(
      "bench:compress",
      process.argv.slice(2),
      options,
      "options: --quick, --full, --fraction F, --threads N, --repetitions R, --json",
    );
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(EXIT.usage);
  }
}

const { values } = parse();
const fraction = positive("fraction", values.fraction, DEFAULT_COMPRESS_FRACTION, false);
if (fraction > 1) fail(`--fraction ${values.fraction} must be at most 1`);
/** The group, or one line on stderr and a non-zero exit (no stack trace) if it fails. */
async function run(options: Parameters<typeof benchCompression>[0]): Promise<Awaited<ReturnType<typeof benchCompression>>> {
  try {
    return await benchCompression(options);
  } catch (e) {
    process.stderr.write(`bench:compress: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(e instanceof CarvqError ? e.exitCode : EXIT.internal);
  }
}

const group = await run({
  quick: values.quick === true,
  full: values.full === true,
  fraction,
  threads: positive("threads", values.threads, Math.min(2, availableParallelism()), true),
  repetitions: positive("repetitions", values.repetitions, 5, true),
  log: (line) => process.stderr.write(`${line}\n`),
});
if (values.json === true) process.stdout.write(`${JSON.stringify(group, null, 2)}\n`);
else {
  for (const g of group.goals) {
    process.stdout.write(`${g.met ? "met    " : "not met"}  ${g.goal}: ${g.measured.toPrecision(4)}\n`);
    for (const t of g.timings)
      process.stdout.write(
        `           ${t.label}: ${t.median.toPrecision(4)} ${t.unit}${t.repetitions > 1 ? ` (spread ${(100 * t.spread).toFixed(0)} %, ${t.repetitions} runs)` : ""}\n`,
      );
    if (g.note) process.stdout.write(`           ${g.note}\n`);
  }
  process.stdout.write(`compression group: ${group.seconds.toFixed(1)} s\n`);
}
