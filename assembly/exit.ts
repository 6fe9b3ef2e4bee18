// Status codes of the runtime, shared by its three faces (docs/RUNTIME.md; the hosts map them to
// CarvqError): the command exits with them, the library returns them, the component puts them in
// its `failure` record. A refusal is one message line (text.ts messageBegin) and one of these
// codes; the core never exits the process: only the command's shell does (die).
import { proc_exit } from "./wasi";
import { putStr, textBegin, textFlush, putByte, messageBegin, MESSAGE, messageLen } from "./text";

export const EXIT_OK: u32 = 0;
/** Bad command line or call: unknown command or flag, missing blob, no token, a token that is not a number, a call out of order. */
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

/** The code of the last refusal (0 = none since the last clearFailure). */
export let failure: u32 = EXIT_OK;

/** Starts the one-line failure message. Follow with put*() calls, then fail() (core) or die() (command). */
export function errBegin(): void {
  messageBegin(failure != EXIT_OK);
}

/** Records the refusal `code` for the message just written; returns false so callers can `return fail(...)`. */
export function fail(code: u32): bool {
  if (failure == EXIT_OK) failure = code;
  textBegin(2); // later put*() calls no longer append to the message
  return false;
}

export function clearFailure(): void {
  failure = EXIT_OK;
  messageBegin();
  textBegin(2);
}

/**
 * Command only. Prints the failure message to stderr as "carvq-rt: <message> [exit N]" and exits
 * the process with `code`. Does not return. The code is repeated in the text because some hosts
 * lose it: a component run through wasi:cli/exit (jco, wasmtime serve) only reports success or failure.
 */
export function die(code: u32): void {
  textBegin(2);
  putStr("carvq-rt: ");
  for (let i: usize = 0; i < messageLen; i++) putByte(<u32>load<u8>(MESSAGE + i));
  putStr(" [exit ");
  putU32(code);
  putStr("]");
  putByte(0x0a);
  textFlush();
  proc_exit(code);
  unreachable();
}

/** Command only: exits with the code and message of the last refusal (fail). */
export function dieFailed(): void {
  die(failure != EXIT_OK ? failure : EXIT_INTERNAL);
}

/** Wired in as AssemblyScript's `abort` in the command (asc --use abort=assembly/exit/onAbort). */
export function onAbort(message: usize, fileName: usize, line: u32, column: u32): void {
  errBegin();
  putStr("internal error (abort at line ");
  putU32(line);
  putStr(")");
  die(EXIT_INTERNAL);
}

/**
 * AssemblyScript's `abort` in the library and the component (asc --use
 * abort=assembly/exit/trapOnAbort): only a bug gets here. The message is recorded and the call
 * traps, the one way out of a broken state that cannot exit the host's process.
 */
export function trapOnAbort(message: usize, fileName: usize, line: u32, column: u32): void {
  errBegin();
  putStr("internal error (abort at line ");
  putU32(line);
  putStr(")");
  fail(EXIT_INTERNAL);
  unreachable();
}

export function putU32(v: u32): void {
  let div: u32 = 1;
  while (v / div >= 10) div *= 10;
  while (div > 0) {
    putByte(0x30 + (v / div) % 10);
    div /= 10;
  }
}
