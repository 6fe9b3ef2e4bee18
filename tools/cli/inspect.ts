import type { BlobMetadata } from "../blob/metadata.ts";
import { readBlobFile, SECTION_NAMES } from "../blob/reader.ts";
import { printable } from "../readers/modelFile.ts";
import { bitsPerParameter } from "../eval/bpp.ts";
import { parseCommandArgs, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, fmtBpw, printResult } from "./output.ts";
import { RVQ_METHOD } from "../quant/methods.ts";

const help = `carvq inspect <blob> [--json]

Validates a blob (header, section bounds, checksums) and prints its header, sections, sizes,
bits-per-parameter breakdown and metadata.

Options:
  --json       print one JSON object
  -h, --help   this text`;

/** "source: model.gguf 'token_embd.weight', Q4_K 4.5 bpw -> carvq 1.6 bpp", from what compress recorded. */
function sourceLine(metadata: BlobMetadata | null, bpp: number): string[] {
  if (metadata?.source === undefined) return [];
  const tensor = metadata.tensor !== undefined ? ` '${printable(String(metadata.tensor))}'` : "";
  // Compress records the stored type only when it is not float32, so its absence says nothing for blobs made elsewhere.
  const stored =
    typeof metadata.sourceDtype === "string"
      ? `, ${printable(metadata.sourceDtype, 20)}${typeof metadata.sourceBpw === "number" ? ` ${fmtBpw(metadata.sourceBpw)} bpw` : ""} -> carvq ${fmt(bpp)} bpp`
      : "";
  return [`source: ${printable(String(metadata.source))}${tensor}${stored}`];
}

export const inspectCommand: Command = {
  name: "inspect",
  summary: "show a blob's header, sections, size breakdown and metadata",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("inspect", argv, { json: { type: "boolean" } });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1) throw usageError("inspect", `expected one blob, got ${positionals.length} (see carvq inspect --help)`);
    const blob = readBlobFile(positionals[0]);
    const size = bitsPerParameter(blob);
    const sections = blob.sections.map((s) => ({ name: SECTION_NAMES[s.id], ...s, crc: `0x${s.crc.toString(16).padStart(8, "0")}` }));
    const h = blob.header;
    printResult(
      values.json === true,
      { blob: positionals[0], header: h, sections, bpp: size.bpp, bppBreakdown: size.parts, bytes: size.bytes, metadata: blob.metadata },
      [
        `${positionals[0]}: carvq blob v${h.versionMajor}.${h.versionMinor}, ${blob.byteLength} bytes, ${fmt(size.bpp)} bits per parameter`,
        `method ${h.method}, ${h.rows} x ${h.cols}` +
          (h.method === RVQ_METHOD
            ? `, h ${h.subvec}, L ${h.levels}, K ${h.codebookSize}, g ${h.group}, layout ${h.layout}, ${h.groupCount} groups`
            : `, ${h.codeBits}-bit codes, scale block ${h.group}`) +
          `, ${h.rowBytes} bytes per token`,
        ...sections.map(
          (s) => `  ${s.name.padEnd(10)} offset ${String(s.offset).padStart(10)}  length ${String(s.length).padStart(10)}  crc ${s.crc}`,
        ),
        `bpp: ${Object.entries(size.parts)
          .map(([part, bits]) => `${part} ${fmt(bits)}`)
          .join(", ")}`,
        ...sourceLine(blob.metadata, size.bpp),
        `metadata: ${JSON.stringify(blob.metadata)}`,
      ],
    );
  },
};
