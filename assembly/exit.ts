// Exit codes of the runtime (documented in docs/RUNTIME.md; the hosts map them to CarvqError).
// Every non-zero exit writes exactly one line to stderr, starting with "carvq-rt: ".
import { proc_exit } from "./wasi";
import { putStr, textBegin, textFlush, putByte } from "./text";

export const EXIT_OK: u32 = 0;
/** Bad command line: unknown command or flag, missing blob, no token, a token that is not a number. */
export const EXIT_USAGE: u32 = 2;
/** The blob cannot be opened or read (missing, not a regular file, not under a preopened dir, read error), or stdout cannot be written. */
export const EXIT_IO: u32 = 3;
/** The blob is not a valid carvq v1 blob: magic, version, a header field, section bounds, CRC, truncation. */
export const EXIT_BAD_BLOB: u32 = 4;
/** A requested token is not below the blob's row count. */
export const EXIT_TOKEN_RANGE: u32 = 5;
/** The blob or the request cannot be served inside the module's memory budget. */
export const EXIT_BUDGET: u32 = 6;
/** A bug: the runtime reached a state it should not (AssemblyScript abort). */
export const EXIT_INTERNAL: u32 = 70;

/** Starts the one error line on stderr: "carvq-rt: ". Follow with put*() calls, then die(). */
export function errBegin(): void {
  textBegin(2);
  putStr("carvq-rt: ");
}

/**
 * Ends the error line with " [exit N]", flushes it and exits the process with `code`. Does not
 * return. The code is repeated in the text because some hosts lose it: a component run through
 * wasi:cli/exit (jco, wasmtime serve) only reports success or failure.
 */
export function die(code: u32): void {
  putStr(" [exit ");
  putU32(code);
  putStr("]");
  putByte(0x0a);
  textFlush();
  proc_exit(code);
  unreachable();
}

/** Wired in as AssemblyScript's `abort` (asc --use abort=assembly/exit/onAbort). */
export function onAbort(message: usize, fileName: usize, line: u32, column: u32): void {
  errBegin();
  putStr("internal error (abort at line ");
  putU32(line);
  putStr(")");
  die(EXIT_INTERNAL);
}

function putU32(v: u32): void {
  let div: u32 = 1;
  while (v / div >= 10) div *= 10;
  while (div > 0) {
    putByte(0x30 + (v / div) % 10);
    div /= 10;
  }
}
