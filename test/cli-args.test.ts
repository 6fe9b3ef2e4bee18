// The one argument parser (tools/cli/args.ts): values that start with "-", unknown and repeated
// options, and number options, each refused in one line naming the option and the value, exit 2.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { choiceOption, intOption, parseCommandArgs, parseFlags } from "../tools/cli/args.ts";
import { CarvqError } from "../tools/errors.ts";
import { EXIT } from "../tools/exit-codes.ts";
import { count } from "../tools/text.ts";

const OPTIONS = {
  output: { type: "string", short: "o" },
  h: { type: "string" },
  levels: { type: "string" },
  tokens: { type: "string" },
  force: { type: "boolean" },
} as const;

/** The CarvqError `run` throws (the test fails when it throws nothing or something else). */
function refusal(run: () => unknown): CarvqError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(CarvqError);
    return err as CarvqError;
  }
  return expect.fail("expected a CarvqError");
}

function parse(...argv: string[]) {
  return parseCommandArgs("compress", argv, OPTIONS);
}

describe("parseCommandArgs", () => {
  it("reads long, short, = and boolean forms, and positionals in any place", () => {
    const { values, positionals } = parse("in.npy", "-o", "x.carvq", "--h=4", "--levels", "2", "--force", "more");
    expect(values).toEqual({ output: "x.carvq", h: "4", levels: "2", force: true });
    expect(positionals).toEqual(["in.npy", "more"]);
    expect(parse("--help").values.help).toBe(true);
    expect(parse("-h").values.help).toBe(true);
    expect(parse("--", "--force", "-o").positionals).toEqual(["--force", "-o"]);
    expect(parse("-").positionals).toEqual(["-"]);
  });

  it("takes a negative number as an option's value (node:util parseArgs calls it ambiguous)", () => {
    expect(parse("--h", "-3").values.h).toBe("-3");
    expect(parse("--tokens", "-1").values.tokens).toBe("-1");
    expect(parse("--levels", "-.5").values.levels).toBe("-.5");
    expect(parse("-o", "-").values.output).toBe("-");
  });

  it("refuses unknown options in one line, quoting what was typed and suggesting a near name", () => {
    expect(refusal(() => parse("--bogus")).message).toBe("carvq compress: unknown option '--bogus' (see carvq compress --help)");
    expect(refusal(() => parse("--levles", "2")).message).toBe(
      "carvq compress: unknown option '--levles'; did you mean --levels? (see carvq compress --help)",
    );
    expect(refusal(() => parse("-x")).message).toBe("carvq compress: unknown option '-x' (see carvq compress --help)");
    expect(refusal(() => parse("-3")).message).toMatch(/unknown option '-3'/);
    expect(refusal(() => parse("--bo\ngus")).message).toBe("carvq compress: unknown option '--bo\\u000agus' (see carvq compress --help)");
    expect(refusal(() => parse("--bogus")).exitCode).toBe(EXIT.usage);
  });

  it("refuses a missing value, a value on a switch, an option given twice", () => {
    const cases: [string[], string][] = [
      [["--h"], "carvq compress: --h needs a value (see carvq compress --help)"],
      [
        ["--output", "--force"],
        "carvq compress: --output needs a value, got the option '--force' (for a value starting with '-', write --output=VALUE) (see carvq compress --help)",
      ],
      [["-o"], "carvq compress: -o/--output needs a value (see carvq compress --help)"],
      [["--force=yes"], "carvq compress: --force takes no value, got 'yes' (see carvq compress --help)"],
      [["--h", "4", "--h=8"], "carvq compress: --h is given twice ('4', then '8') (see carvq compress --help)"],
      [["--force", "--force"], "carvq compress: --force is given twice (see carvq compress --help)"],
    ];
    for (const [argv, message] of cases) {
      const err = refusal(() => parse(...argv));
      expect(err.message, argv.join(" ")).toBe(message);
      expect(err.exitCode, argv.join(" ")).toBe(EXIT.usage);
    }
  });

  it("names the program given to parseFlags (the developer tools' command lines)", () => {
    expect(refusal(() => parseFlags("fuzz", ["--nope"], {}, "see npm run fuzz -- --help")).message).toBe(
      "fuzz: unknown option '--nope' (see npm run fuzz -- --help)",
    );
    expect(refusal(() => parseFlags("tool", ["--nope"], {})).message).toBe("tool: unknown option '--nope' (see tool --help)");
  });
});

describe("intOption and choiceOption", () => {
  it("refuse values outside the range, fractions and words, naming the option and the value, exit 2", () => {
    const cases: [string, number, number, string][] = [
      ["-3", 1, 256, "carvq compress: --h must be a whole number from 1 to 256, got '-3'"],
      ["0", 1, 0xffffffff, "carvq compress: --h must be a whole number >= 1, got '0'"],
      ["1.5", 1, 256, "carvq compress: --h must be a whole number from 1 to 256, got '1.5'"],
      ["1e3", 1, 256, "carvq compress: --h must be a whole number from 1 to 256, got '1e3'"],
      ["abc", 1, 256, "carvq compress: --h must be a whole number from 1 to 256, got 'abc'"],
      ["", 1, 256, "carvq compress: --h must be a whole number from 1 to 256, got ''"],
      ["257", 1, 256, "carvq compress: --h must be a whole number from 1 to 256, got '257'"],
    ];
    for (const [raw, min, max, message] of cases) {
      const err = refusal(() => intOption("compress", "h", raw, 8, min, max));
      expect(err.message, raw).toBe(message);
      expect(err.exitCode, raw).toBe(EXIT.usage);
    }
    expect(intOption("compress", "h", " 12 ", 8, 1, 256)).toBe(12);
    expect(intOption("compress", "h", "-2", 8, -5, 5)).toBe(-2);
    expect(intOption("compress", "h", undefined, 8, 1, 256)).toBe(8);
    const choice = refusal(() => choiceOption("compress", "method", "int7", "carvq", ["carvq", "int4"]));
    expect(choice.message).toBe("carvq compress: --method must be one of carvq, int4, got 'int7'");
    expect(choice.exitCode).toBe(EXIT.usage);
  });
});

describe("exit codes", () => {
  it("the runtime's codes in assembly/exit.ts are the ones in tools/exit-codes.ts", () => {
    const source = readFileSync(new URL("../assembly/exit.ts", import.meta.url), "utf8");
    const declared = Object.fromEntries([...source.matchAll(/export const EXIT_(\w+): u32 = (\d+);/g)].map((m) => [m[1], Number(m[2])]));
    expect(declared).toEqual({
      OK: EXIT.ok,
      USAGE: EXIT.usage,
      IO: EXIT.io,
      BAD_BLOB: EXIT.badBlob,
      TOKEN_RANGE: EXIT.tokenRange,
      BUDGET: EXIT.budget,
      INTERNAL: EXIT.internal,
    });
  });
});

describe("count", () => {
  it("puts the noun in the right number", () => {
    expect([0, 1, 2].map((n) => count(n, "row"))).toEqual(["0 rows", "1 row", "2 rows"]);
    expect(count(1, "matrix", "matrices")).toBe("1 matrix");
    expect(count(3, "matrix", "matrices")).toBe("3 matrices");
  });
});
