// The one argument parser of every carvq command (and of the developer tools' command lines).
// node:util parseArgs refuses "--h -3" as "ambiguous" and words its errors for programmers; here
// an option that takes a value takes the next word even when it is a negative number, and every
// failure is one line naming the option and the value, with exit code 2 (EXIT.usage).
import { CarvqError } from "../errors.ts";
import { EXIT } from "../exit-codes.ts";

/** One option: `--name VALUE` (string) or `--name` (boolean), optionally with a one-letter `-x` form. */
export interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  /** A string option that may be given several times; its value is the list, in order. */
  readonly multiple?: boolean;
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** The parsed options: a string or `true` for each option given, absent otherwise. */
export type FlagValues<O extends FlagSpecs> = {
  -readonly [K in keyof O]?: O[K]["type"] extends "boolean" ? boolean : O[K]["multiple"] extends true ? string[] : string;
};

export interface ParsedArgs<O extends FlagSpecs> {
  values: FlagValues<O> & { help?: boolean };
  positionals: string[];
}

const HELP_FLAG = { help: { type: "boolean", short: "h" } } as const;

/** A usage error of `carvq <command>`: one line, exit code 2. */
export function usageError(command: string, message: string): CarvqError {
  return new CarvqError(`carvq ${command}: ${message}`, EXIT.usage);
}

/** A value as the user typed it, quoted, with control characters escaped and long values cut. */
export function quoted(value: string, limit = 80): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this escapes
  const safe = value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return `'${safe.length > limit ? `${safe.slice(0, limit)}...` : safe}'`;
}

/** Whether a word can be an option's value although it starts with "-": "-", "-3", "-1.5", "-.5", "-1e3". */
function negativeNumberLike(word: string): boolean {
  return word === "-" || /^-(\d|\.\d)/.test(word);
}

/** Levenshtein distance, for "did you mean" on a mistyped option. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}

function suggestion(name: string, known: string[]): string {
  const close = known.filter((k) => k.startsWith(name) || distance(name, k) <= (k.length >= 5 ? 2 : 1));
  return close.length === 0 ? "" : `; did you mean ${close.map((k) => `--${k}`).join(" or ")}?`;
}

/**
 * Parses `argv` against `options`. `program` starts every error line ("carvq compress", "fuzz");
 * `hint` ends it, saying where the options are listed. Words after "--" are positionals.
 */
export function parseFlags<O extends FlagSpecs>(
  program: string,
  argv: readonly string[],
  options: O,
  hint = `see ${program} --help`,
): { values: FlagValues<O>; positionals: string[] } {
  const fail = (message: string) => new CarvqError(`${program}: ${message} (${hint})`, EXIT.usage);
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  const byShort = new Map(
    Object.entries(options).flatMap(([name, spec]) => (spec.short === undefined ? [] : [[spec.short, name] as const])),
  );
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (word === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith("-") || word === "-") {
      positionals.push(word);
      continue;
    }
    const long = word.startsWith("--");
    const eq = word.indexOf("=");
    const written = eq >= 0 ? word.slice(0, eq) : word;
    const name = long ? written.slice(2) : byShort.get(written.slice(1));
    const spec = name === undefined ? undefined : options[name];
    if (name === undefined || spec === undefined || (!long && written.length !== 2)) {
      throw fail(`unknown option ${quoted(written)}${long ? suggestion(written.slice(2), Object.keys(options)) : ""}`);
    }
    const shown = long ? written : `${written}/--${name}`;
    let value: string | boolean;
    if (spec.type === "boolean") {
      if (eq >= 0) throw fail(`${shown} takes no value, got ${quoted(word.slice(eq + 1))}`);
      value = true;
    } else if (eq >= 0) {
      value = word.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw fail(`${shown} needs a value`);
      if (next.startsWith("-") && !negativeNumberLike(next))
        throw fail(`${shown} needs a value, got the option ${quoted(next)} (for a value starting with '-', write ${written}=VALUE)`);
      value = next;
      i++;
    }
    if (spec.multiple === true) {
      values[name] = [...((values[name] as string[] | undefined) ?? []), value as string];
      continue;
    }
    if (name in values) {
      const before = values[name];
      throw fail(`${shown} is given twice${typeof before === "string" ? ` (${quoted(before)}, then ${quoted(value as string)})` : ""}`);
    }
    values[name] = value;
  }
  return { values: values as FlagValues<O>, positionals };
}

/** Parses `carvq <command>`'s arguments; `-h/--help` is added to every command and comes back as `values.help`. */
export function parseCommandArgs<O extends FlagSpecs>(command: string, argv: readonly string[], options: O): ParsedArgs<O> {
  return parseFlags(`carvq ${command}`, argv, { ...options, ...HELP_FLAG }) as ParsedArgs<O>;
}

/** "a whole number from 1 to 8", or "a whole number >= 1" when the upper bound is only the type's. */
function wholeNumberRange(min: number, max: number): string {
  return max >= 0xffffffff ? `a whole number >= ${min}` : `a whole number from ${min} to ${max}`;
}

/** Parses an integer option, refusing anything that is not a whole number in [min, max]. */
export function intOption(command: string, flag: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = /^\s*[-+]?\d{1,16}\s*$/.test(raw) ? Number(raw) : NaN;
  if (!(value >= min && value <= max)) throw usageError(command, `--${flag} must be ${wholeNumberRange(min, max)}, got ${quoted(raw)}`);
  return value;
}

/** Parses a choice option against its allowed values. */
export function choiceOption<T extends string>(
  command: string,
  flag: string,
  raw: string | undefined,
  fallback: T,
  allowed: readonly T[],
): T {
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw))
    throw usageError(command, `--${flag} must be one of ${allowed.join(", ")}, got ${quoted(raw)}`);
  return raw as T;
}
