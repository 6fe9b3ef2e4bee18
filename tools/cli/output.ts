import { printable } from "../readers/modelFile.ts";

// Results go to stdout (one JSON object with --json, else readable lines); messages go to stderr.

export function printResult(json: boolean, result: Record<string, unknown>, lines: string[]): void {
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${lines.join("\n")}\n`);
}

/** What noteLoaded says about a table read from a model (tools/readers/index.ts's LoadedMatrix). */
interface LoadedNote {
  autoPicked: boolean;
  tensor: string;
  format: string;
  matrix: { rows: number; cols: number };
  file?: string;
  dtype?: string;
  bitsPerWeight?: number;
  tiedEmbeddings?: boolean;
}

/** Says which tensor of which file is being read, its stored type and, for a sharded folder, its shard (names from a model file are escaped first). */
export function noteLoaded(input: string, loaded: LoadedNote): void {
  const stored =
    loaded.dtype === undefined ? "" : ` ${loaded.dtype}${loaded.bitsPerWeight !== undefined ? ` ${fmtBpw(loaded.bitsPerWeight)} bpw` : ""}`;
  const shard = loaded.file !== undefined && loaded.file !== input ? ` from ${printable(loaded.file)}` : "";
  const tied = loaded.tiedEmbeddings === undefined ? "" : `; config.json: tie_word_embeddings ${loaded.tiedEmbeddings}`;
  note(
    `${input}: ${loaded.autoPicked ? "using tensor" : "tensor"} '${printable(loaded.tensor)}'${shard} (${loaded.format}${stored}, ${loaded.matrix.rows} x ${loaded.matrix.cols})${tied}`,
  );
}

export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Bits per weight for people: "4.5", "6.5625", "16" (exact for every ggml type, no trailing zeros). */
export function fmtBpw(bits: number): string {
  return String(Number(bits.toPrecision(6)));
}

/** A number for people: 4 significant digits. */
export function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}
