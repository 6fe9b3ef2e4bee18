import { EXIT } from "./exit-codes.ts";

/**
 * An error caused by the user's input (a file, a flag, a blob), as opposed to a bug.
 * The CLI prints `message` alone on one line and exits with `exitCode`; no stack trace.
 * Messages name the file, the field and the value, and say what was expected.
 */
export class CarvqError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.input) {
    super(message);
    this.name = "CarvqError";
    this.exitCode = exitCode;
  }
}

/** Throws a CarvqError naming `where` when `condition` is false. */
export function check(condition: boolean, where: string, what: string): asserts condition {
  if (!condition) throw new CarvqError(`${where}: ${what}`);
}
