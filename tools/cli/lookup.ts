import { checkOverwrite, writeFileAtomic } from "../atomic.ts";
import { CarvqError } from "../errors.ts";
import { EXIT } from "../exit-codes.ts";
import { count } from "../text.ts";
import { openJcoRuntime } from "../../host/jco.ts";
import { openRuntime } from "../../host/node.ts";
import { openTable } from "../../host/table.ts";
import { targetNames, type BuildName, type ModeName } from "../../host/common.ts";
import { choiceOption, parseCommandArgs } from "./args.ts";
import type { Command } from "./command.ts";
import { note } from "./output.ts";

const help = `carvq lookup <blob> --tokens 1,2,3 [options]

Looks tokens up with the device runtime (the WASM module, not the TypeScript decoder) and writes
their rows, in the order asked, as raw little-endian float32: tokens x cols values. The runtime
validates the blob (header, section bounds, CRC-32s) before it answers and never uses more linear
memory than its budget. The node host opens the blob in a library module (build/lib/, the JS API's
openTable); with --adaptor-batch or --adaptor-tile it runs the command module (build/), whose knobs
they are.
Example: carvq lookup model.carvq --tokens 0,1,2,100-103 --target rpi-zero2w -o rows.f32

Options:
  --tokens LIST        token ids: comma-separated whole numbers and ranges A-B (required)
  --host node|jco      node: Node's WASI (default); jco: the WASI component under jco run (~1 s)
  --build simd|scalar  the generic build to run (default simd); implied by --target
  --target NAME        a device profile: ${targetNames().join(", ")}
                       (its module, memory budget and default mode; node host only)
  --mode resident|streaming
                       resident: the blob in linear memory; streaming: read per lookup with fd_pread
                       (default: the target's mode, else resident when the blob fits)
  --adaptor-batch N    with an adaptor (blob v1.2): at most N tokens evaluated together (default:
                       as many as the memory budget allows, up to 64)
  --adaptor-tile BYTES with an adaptor: at most BYTES of its MLP in memory at once; streaming reads
                       the layers in tiles of that size, raised to the smallest tile that
                       holds one output channel (default: the whole MLP when it fits)
  -o, --output FILE    write the rows to FILE (refused if it exists, unless --force); without it
                       the rows go to stdout, which must not be a terminal
  --force              overwrite an existing output file
  -h, --help           this text

Exit codes are the runtime's: 2 usage, 3 cannot open/read/write, 4 bad blob, 5 token out of
range, 6 memory budget exceeded (docs/RUNTIME.md).`;

/** A whole-number option from 1 to 2^32 - 1, or undefined when absent. */
function wholeNumber(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,10}$/.test(raw) || Number(raw) < 1 || Number(raw) > 0xffffffff)
    throw new CarvqError(`carvq lookup: --${flag} must be a whole number from 1 to 4294967295, got '${raw}'`, EXIT.usage);
  return Number(raw);
}

/** Parses "1,2,5-7" into [1, 2, 5, 6, 7]. */
export function parseTokenList(raw: string): number[] {
  const ids: number[] = [];
  for (const part of raw.split(",")) {
    const item = part.trim();
    const range = /^(\d{1,10})\s*-\s*(\d{1,10})$/.exec(item);
    if (range) {
      const from = Number(range[1]);
      const to = Number(range[2]);
      if (to < from) throw new CarvqError(`carvq lookup: --tokens range '${item}' runs backwards`, EXIT.usage);
      if (to > 0xffffffff) throw new CarvqError(`carvq lookup: --tokens range '${item}' goes past 4294967295`, EXIT.usage);
      if (ids.length + (to - from + 1) > 1_000_000)
        throw new CarvqError("carvq lookup: --tokens lists more than 1,000,000 tokens", EXIT.usage);
      for (let t = from; t <= to; t++) ids.push(t);
    } else if (/^\d{1,10}$/.test(item) && Number(item) <= 0xffffffff) {
      ids.push(Number(item));
    } else {
      throw new CarvqError(`carvq lookup: --tokens must be whole numbers or ranges A-B separated by commas, got '${item}'`, EXIT.usage);
    }
  }
  if (ids.length === 0) throw new CarvqError("carvq lookup: --tokens is empty", EXIT.usage);
  return ids;
}

export const lookupCommand: Command = {
  name: "lookup",
  summary: "look tokens up with the WASM device runtime (raw float32 rows)",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("lookup", argv, {
      tokens: { type: "string" },
      host: { type: "string" },
      build: { type: "string" },
      target: { type: "string" },
      mode: { type: "string" },
      "adaptor-batch": { type: "string" },
      "adaptor-tile": { type: "string" },
      output: { type: "string", short: "o" },
      force: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length === 0) throw new CarvqError("carvq lookup: give the blob file (see carvq lookup --help)", EXIT.usage);
    if (positionals.length > 1)
      throw new CarvqError(`carvq lookup: unexpected argument '${positionals[1]}' (see carvq lookup --help)`, EXIT.usage);
    if (values.tokens === undefined)
      throw new CarvqError("carvq lookup: --tokens is required, e.g. --tokens 1,2,3 (see carvq lookup --help)", EXIT.usage);
    const blob = positionals[0];
    const ids = parseTokenList(values.tokens);
    const host = choiceOption("lookup", "host", values.host, "node", ["node", "jco"] as const);
    const build =
      values.build === undefined ? undefined : choiceOption<BuildName>("lookup", "build", values.build, "simd", ["simd", "scalar"]);
    const mode =
      values.mode === undefined ? undefined : choiceOption<ModeName>("lookup", "mode", values.mode, "resident", ["resident", "streaming"]);
    const tuning = {
      adaptorBatch: wholeNumber("adaptor-batch", values["adaptor-batch"]),
      adaptorTile: wholeNumber("adaptor-tile", values["adaptor-tile"]),
    };
    const force = values.force === true;
    if (host === "jco" && (values.target !== undefined || build === "scalar")) {
      throw new CarvqError(
        "carvq lookup: --host jco runs the SIMD component (build/carvq-rt.component.wasm); --target and --build scalar need --host node",
        EXIT.usage,
      );
    }
    if (values.output !== undefined) checkOverwrite(values.output, force);
    else if (process.stdout.isTTY) {
      throw new CarvqError(
        "carvq lookup: refusing to print binary float32 rows to a terminal; use -o FILE or redirect stdout (e.g. > rows.f32)",
        EXIT.usage,
      );
    }
    let rows: Float32Array;
    if (host === "jco") {
      const runtime = await openJcoRuntime({ blob, mode, ...tuning });
      rows = await runtime.lookup(ids);
      runtime.close();
    } else if (tuning.adaptorBatch !== undefined || tuning.adaptorTile !== undefined) {
      // The adaptor's batch and tile are the command's own knobs: the library plans them itself.
      const runtime = await openRuntime({ blob, target: values.target, build, mode, ...tuning });
      rows = runtime.lookup(ids);
      note(
        `carvq lookup: ${count(ids.length, "row")} of ${count(rows.length / ids.length, "value")} from ${blob} (${values.target ?? build ?? "simd"}, peak linear memory ${runtime.peakMemoryBytes} bytes)`,
      );
      runtime.close();
    } else {
      const table = await openTable(blob, { target: values.target, build, mode });
      try {
        rows = table.lookup(ids);
        note(
          `carvq lookup: ${count(ids.length, "row")} of ${count(table.cols, "value")} from ${blob} (${values.target ?? build ?? "simd"}, peak linear memory ${table.memoryBytes} bytes)`,
        );
      } finally {
        table.close();
      }
    }
    const bytes = new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
    if (values.output !== undefined) {
      writeFileAtomic(values.output, bytes, force);
    } else {
      await new Promise<void>((resolve, reject) =>
        process.stdout.write(bytes, (err) =>
          err ? reject(new CarvqError(`carvq lookup: cannot write to stdout (${err.message})`, EXIT.io)) : resolve(),
        ),
      );
    }
  },
};
