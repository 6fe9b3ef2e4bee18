import { printable } from "../readers/modelFile.ts";

// Results go to stdout (one JSON object with --json, else readable lines); messages go to stderr.

export function printResult(json: boolean, result: Record<string, unknown>, lines: string[]): void {
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${lines.join("\n")}\n`);
}

/** Says which tensor of which file is being read (names from a model file are escaped first). */
export function noteLoaded(input: string, loaded: { autoPicked: boolean; tensor: string; format: string; matrix: { rows: number; cols: number } }): void {
  note(`${input}: ${loaded.autoPicked ? "using tensor" : "tensor"} '${printable(loaded.tensor)}' (${loaded.format}, ${loaded.matrix.rows} x ${loaded.matrix.cols})`);
}

export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** A number for people: 4 significant digits. */
export function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}
