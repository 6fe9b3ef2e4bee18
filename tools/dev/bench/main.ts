// npm run bench [-- --json] [-- --quick] [-- --full] [-- --repetitions N] [-- --only lookup|compression|forward]
//
// Runs every benchmark group (lookup: tools/dev/bench/lookup-goals.ts, compression:
// tools/dev/bench/compress.ts), prints a table of the goals (measured ratio, bound, met or not, the
// absolute medians beside), writes the JSON to build/bench.json (and to stdout with --json, the
// table then going to stderr) and regenerates docs/PERFORMANCE.md. --quick runs tiny shapes once
// (the smoke test in npm test): it writes build/bench-quick.json and leaves the docs alone, as
// does --only (a partial run must not replace the full table).
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { buildDir, projectRoot } from "../../../host/common.ts";
import { parseFlags } from "../../cli/args.ts";
import { CarvqError } from "../../errors.ts";
import { EXIT } from "../../exit-codes.ts";
import { benchCompression, type CompressBenchOptions } from "./compress.ts";
import { benchForward } from "./forward.ts";
import { benchLookup } from "./lookup-goals.ts";
import { describeMachine, formatMarkdown, formatTable, type BenchReport } from "./report.ts";
import type { BenchGroup, BenchOptions } from "./types.ts";

const GROUPS: Record<string, (o: BenchOptions) => Promise<BenchGroup>> = {
  lookup: benchLookup,
  compression: benchCompression,
  forward: benchForward,
};

interface Args {
  json: boolean;
  quick: boolean;
  repetitions: number;
  only: string | undefined;
  /** The whole 128256 x 2048 compression instead of 1/32 of its rows (about 20 minutes more). */
  full: boolean;
}

function parse(argv: string[]): Args {
  const options = {
    json: { type: "boolean" },
    quick: { type: "boolean" },
    full: { type: "boolean" },
    repetitions: { type: "string" },
    only: { type: "string" },
  } as const;
  const { values } = parseFlags(
    "npm run bench",
    argv,
    options,
    `options: --json, --quick, --full, --repetitions N, --only ${Object.keys(GROUPS).join("|")}`,
  );
  const repetitions = Number(values.repetitions ?? 5);
  if (!Number.isInteger(repetitions) || repetitions < 1 || repetitions > 100)
    throw new CarvqError(`npm run bench: --repetitions must be a whole number from 1 to 100, got ${values.repetitions}`, EXIT.usage);
  if (values.only !== undefined && !(values.only in GROUPS))
    throw new CarvqError(`npm run bench: --only must be ${Object.keys(GROUPS).join(" or ")}, got ${values.only}`, EXIT.usage);
  if (values.full === true && values.quick === true)
    throw new CarvqError("npm run bench: --full and --quick contradict each other", EXIT.usage);
  return {
    json: values.json === true,
    quick: values.quick === true,
    repetitions: values.quick ? 1 : repetitions,
    only: values.only,
    full: values.full === true,
  };
}

/** Writes through a temporary file, so an interrupted run never leaves half a report. */
function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const machine = describeMachine();
  const started = performance.now();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const options: CompressBenchOptions = {
    quick: args.quick,
    repetitions: args.repetitions,
    threads: Math.min(2, availableParallelism()),
    log,
    full: args.full,
  };
  log(
    `bench: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load average ${machine.loadAverageAtStart}${args.quick ? " (quick: tiny shapes, one repetition)" : ""}`,
  );
  const groups: BenchGroup[] = [];
  for (const [name, run] of Object.entries(GROUPS)) {
    if (args.only !== undefined && args.only !== name) continue;
    groups.push(await run(options));
  }
  const report: BenchReport = {
    command: process.argv.length > 2 ? `npm run bench -- ${process.argv.slice(2).join(" ")}` : "npm run bench",
    machine,
    quick: args.quick,
    repetitions: args.repetitions,
    startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
    seconds: (performance.now() - started) / 1000,
    groups,
  };
  const json = `${JSON.stringify(report, null, 2)}\n`;
  const jsonPath = join(buildDir(), args.quick ? "bench-quick.json" : "bench.json");
  writeAtomic(jsonPath, json);
  const table = formatTable(report);
  if (args.json) {
    process.stderr.write(`${table}\n`);
    process.stdout.write(json);
  } else {
    process.stdout.write(`${table}\n`);
  }
  log(`wrote ${jsonPath}`);
  if (!args.quick && args.only === undefined) {
    const doc = join(projectRoot(), "docs", "PERFORMANCE.md");
    writeAtomic(doc, formatMarkdown(report));
    log(`wrote ${doc}`);
  }
}

main().catch((e: unknown) => {
  // Bad options and runtime refusals are CarvqErrors: one line. Anything else is a bug: its message, still one line.
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${message.startsWith("npm run bench") ? "" : "npm run bench: "}${message}\n`);
  process.exitCode = e instanceof CarvqError ? e.exitCode : EXIT.internal;
});
