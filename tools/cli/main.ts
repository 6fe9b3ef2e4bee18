// `carvq`: one entry point, one module per subcommand. User errors (CarvqError) print one line and
// exit non-zero; anything else is a bug and says so (set CARVQ_DEBUG=1 for the stack).
import { TOOL_VERSION } from "../version.ts";
import { CarvqError } from "../errors.ts";
import { EXIT, EXIT_SUMMARY } from "../exit-codes.ts";
import { quoted } from "./args.ts";
import type { Command } from "./command.ts";
import { compressCommand } from "./compress.ts";
import { conformanceCommand } from "./conformance.ts";
import { dataCommand } from "./data.ts";
import { demoCommand } from "./demo.ts";
import { evalCommand } from "./eval.ts";
import { extractCommand } from "./extract.ts";
import { generateCommand } from "./generate.ts";
import { inspectCommand } from "./inspect.ts";
import { lookupCommand } from "./lookup.ts";
import { pplCommand } from "./ppl.ts";
import { reportCommand } from "./report.ts";
import { synthCommand } from "./synth.ts";
import { tensorsCommand } from "./tensors.ts";

const commands: readonly Command[] = [
  demoCommand,
  compressCommand,
  evalCommand,
  inspectCommand,
  pplCommand,
  generateCommand,
  reportCommand,
  lookupCommand,
  tensorsCommand,
  extractCommand,
  conformanceCommand,
  synthCommand,
  dataCommand,
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `carvq ${TOOL_VERSION}: compress an LLM's token-embedding table to ~1.6 bits per parameter and look tokens up from WASM`,
    "",
    "usage: carvq <command> [options]   (carvq <command> --help for its options)",
    "",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    EXIT_SUMMARY,
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`${usage()}\n`);
    return EXIT.usage;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage()}\n`);
    return EXIT.ok;
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write(`${TOOL_VERSION}\n`);
    return EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined)
    throw new CarvqError(
      `carvq: unknown command ${quoted(name)}; commands: ${commands.map((c) => c.name).join(", ")} (see carvq --help)`,
      EXIT.usage,
    );
  await command.run(rest);
  // A command that finished its work but reports a failure (e.g. a conformance case) sets exitCode itself.
  return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof CarvqError) {
    // Command errors already start with "carvq <command>:"; file errors start with the file's name.
    process.stderr.write(err.message.startsWith("carvq") ? `${err.message}\n` : `carvq: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else if (process.env.CARVQ_DEBUG) {
    throw err;
  } else {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`carvq: internal error: ${message}\n(this is a bug; run with CARVQ_DEBUG=1 for details)\n`);
    process.exitCode = EXIT.internal;
  }
}
