import { parseArgs, type ParseArgsConfig } from "node:util";
import { CarvqError } from "../errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/**
 * node:util parseArgs with every failure turned into a one-line CarvqError that names the command,
 * and `--help` handled by the caller through `values.help`.
 */
export function parseCommandArgs<O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: true, strict: true });
  } catch (err) {
    const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new CarvqError(`carvq ${command}: ${message} (see carvq ${command} --help)`);
  }
}

/** Parses an integer flag, refusing anything that is not a whole number in [min, max]. */
export function intOption(command: string, flag: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new CarvqError(`carvq ${command}: --${flag} must be a whole number, got '${raw}'`);
  const value = Number(raw);
  if (value < min || value > max) throw new CarvqError(`carvq ${command}: --${flag} must be between ${min} and ${max}, got ${value}`);
  return value;
}

/** Parses a choice flag against its allowed values. */
export function choiceOption<T extends string>(command: string, flag: string, raw: string | undefined, fallback: T, allowed: readonly T[]): T {
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new CarvqError(`carvq ${command}: --${flag} must be one of ${allowed.join(", ")}, got '${raw}'`);
  }
  return raw as T;
}
