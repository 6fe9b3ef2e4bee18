import { evaluate, parseBlob, readTable } from "../index.ts";
import { parseCommandArgs, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, fmtBpw, printResult } from "./output.ts";

const help = `carvq eval <blob> --ref <input> [--tensor NAME] [--json]

Decodes a blob and compares it with the original table.
  bpp      the blob's total size in bits over V x n (every byte counted), with a per-section breakdown
  relMSE   sum of squared error / sum of squares
  cosine   mean over rows of cos(original, decoded)
  nn10     mean share of each query row's 10 nearest rows (cosine) that survive compression;
           queries: rows 0, 20, 40, ... below min(V, 20000); candidates: the first min(V, 50000) rows

Options:
  --ref FILE       the original model file or matrix (required)
  --tensor NAME    the tensor in --ref (default: the token embedding, found by its usual names)
  --json           print one JSON object
  -h, --help       this text`;

export const evalCommand: Command = {
  name: "eval",
  summary: "measure a blob's size and error against the original table",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("eval", argv, {
      ref: { type: "string" },
      tensor: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1) throw usageError("eval", `expected one blob, got ${positionals.length} (see carvq eval --help)`);
    if (values.ref === undefined) throw usageError("eval", "--ref is required (see carvq eval --help)");
    const blob = await parseBlob(positionals[0]);
    const reference = await readTable(values.ref, { tensor: values.tensor });
    const e = await evaluate(blob, { reference: reference.matrix, referenceName: values.ref });
    const parts = Object.entries(e.bppBreakdown)
      .map(([part, bits]) => `${part} ${fmt(bits)}`)
      .join(", ");
    const source = `${reference.dtype}${reference.bitsPerWeight !== undefined ? ` ${fmtBpw(reference.bitsPerWeight)} bpw` : ""}`;
    printResult(
      values.json === true,
      {
        blob: positionals[0],
        ref: values.ref,
        tensor: reference.tensor,
        sourceDtype: reference.dtype,
        ...(reference.bitsPerWeight !== undefined ? { sourceBpw: reference.bitsPerWeight } : {}),
        ...e,
      },
      [
        `${positionals[0]}: ${e.method}, ${e.shape[0]} x ${e.shape[1]}`,
        `source  ${source} -> carvq ${fmt(e.bpp)} bpp`,
        `bpp     ${fmt(e.bpp)}  (${parts})`,
        `relMSE  ${fmt(e.relMSE)}`,
        `cosine  ${fmt(e.cosine)}`,
        `nn10    ${fmt(e.nn10)}`,
      ],
    );
  },
};
