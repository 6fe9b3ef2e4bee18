// npm run bench:compress [-- --quick] [--full] [--fraction F] [--threads N] [--repetitions R] [--json]
// The compression group of `npm run bench` on its own: the goals one per line on stdout (or the
// group as one JSON object), progress on stderr. --full compresses the whole 128256 x 2048 table
// (about 15 minutes on two cores) instead of 1/16 of its rows.
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { benchCompression } from "./compress.ts";

function positive(flag: string, text: string | undefined, fallback: number, integer: boolean): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!(value > 0) || (integer && !Number.isInteger(value))) {
    process.stderr.write(`bench:compress: --${flag} ${text} must be a positive ${integer ? "whole number" : "number"}\n`);
    process.exit(2);
  }
  return value;
}

const { values } = parseArgs({ options: { quick: { type: "boolean" }, full: { type: "boolean" }, json: { type: "boolean" }, fraction: { type: "string" }, threads: { type: "string" }, repetitions: { type: "string" } } });
const fraction = positive("fraction", values.fraction, 1 / 16, false);
if (fraction > 1) {
  process.stderr.write(`bench:compress: --fraction ${values.fraction} must be at most 1\n`);
  process.exit(2);
}
const group = await benchCompression({
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
    for (const t of g.timings) process.stdout.write(`           ${t.label}: ${t.median.toPrecision(4)} ${t.unit}${t.repetitions > 1 ? ` (spread ${(100 * t.spread).toFixed(0)} %, ${t.repetitions} runs)` : ""}\n`);
    if (g.note) process.stdout.write(`           ${g.note}\n`);
  }
  process.stdout.write(`compression group: ${group.seconds.toFixed(1)} s\n`);
}
