/**
 * Exit codes of every carvq command and of the runtime, in one place. The runtime's codes (2 to 6
 * and 70) are also written in AssemblyScript in assembly/exit.ts, which cannot import this file; a
 * test (test/exit-codes.test.ts) checks that the two agree. docs/RUNTIME.md and the README list them.
 */
export const EXIT = {
  ok: 0,
  /** An input file's content is wrong or does not fit the request (a bad model file, NaN, a shape that does not match). */
  input: 1,
  /** The command line is wrong: unknown option, bad value, missing or conflicting options, an input of a kind the command cannot use. */
  usage: 2,
  /** A file cannot be opened, read or written (an output folder that does not exist, stdout closed). */
  io: 3,
  /** The blob is not a valid carvq blob. */
  badBlob: 4,
  /** A requested token is not below the blob's row count. */
  tokenRange: 5,
  /** The blob or the request cannot be served inside the runtime's memory budget. */
  budget: 6,
  /** A bug. */
  internal: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** One line for `carvq --help`. */
export const EXIT_SUMMARY = `exit codes: ${EXIT.ok} ok, ${EXIT.input} bad input file, ${EXIT.usage} bad command line, ${EXIT.io} cannot read or write a file, ${EXIT.badBlob} bad blob, ${EXIT.tokenRange} token out of range, ${EXIT.budget} over the memory budget, ${EXIT.internal} internal error`;
