// Results go to stdout (one JSON object with --json, else readable lines); messages go to stderr.

export function printResult(json: boolean, result: Record<string, unknown>, lines: string[]): void {
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${lines.join("\n")}\n`);
}

export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** A number for people: 4 significant digits. */
export function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}
