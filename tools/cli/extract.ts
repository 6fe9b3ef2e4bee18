import { checkOverwrite } from "../atomic.ts";
import { CarvqError } from "../errors.ts";
import { EXIT } from "../exit-codes.ts";
import { loadMatrix } from "../readers/index.ts";
import { writeNpy } from "../readers/npy.ts";
import { startProgress } from "../progress.ts";
import { parseCommandArgs } from "./args.ts";
import type { Command } from "./command.ts";
import { fmt, fmtBpw, noteLoaded, printResult } from "./output.ts";

const help = `carvq extract <file|folder> [--tensor NAME] -o <table.npy> [--force] [--json]

Writes one tensor of a model as a float32 .npy file, exactly the table compress would read: the
same tensor choice, F16/BF16/F64 widened, GGUF blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
Q4_K, Q5_K, Q6_K) dequantized as ggml does. The file is written whole or not at all.

Options:
  -o, --output FILE    the .npy file to write (required); refused if it exists, unless --force
  --tensor NAME        the tensor to extract (default: the token embedding, found by its usual names;
                       see carvq tensors)
  --force              overwrite an existing output file
  --json               print what was written as one JSON object
  -h, --help           this text`;

/** Stored sizes from which reading shows a progress bar. */
const PROGRESS_FROM_BYTES = 256 << 20;

export const extractCommand: Command = {
  name: "extract",
  summary: "write a model's embedding (or any 2-D tensor) as a float32 .npy, as compress reads it",
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs("extract", argv, {
      output: { type: "string", short: "o" },
      tensor: { type: "string" },
      force: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length !== 1)
      throw new CarvqError(
        `carvq extract: expected one model file or folder, got ${positionals.length} (see carvq extract --help)`,
        EXIT.usage,
      );
    if (values.output === undefined) throw new CarvqError("carvq extract: -o/--output is required (see carvq extract --help)", EXIT.usage);
    const input = positionals[0];
    const force = values.force === true;
    checkOverwrite(values.output, force); // before reading a multi-gigabyte tensor, not after
    const bar = startProgress("reading the tensor (MiB)");
    let loaded;
    try {
      // Only tables worth waiting for get a bar; small ones would just flash one.
      const onProgress = (done: number, total: number) => {
        if (total >= PROGRESS_FROM_BYTES) bar.update(Math.round(done / 2 ** 20), Math.round(total / 2 ** 20));
      };
      loaded = loadMatrix(input, { tensor: values.tensor, onProgress });
    } finally {
      bar.stop();
    }
    noteLoaded(input, loaded);
    writeNpy(values.output, loaded.matrix, force);
    const { rows, cols } = loaded.matrix;
    printResult(
      values.json === true,
      {
        output: values.output,
        input,
        tensor: loaded.tensor,
        file: loaded.file,
        sourceDtype: loaded.dtype,
        ...(loaded.bitsPerWeight !== undefined ? { sourceBitsPerWeight: loaded.bitsPerWeight } : {}),
        shape: [rows, cols],
        dtype: "float32",
      },
      [
        `wrote ${values.output}: ${rows} x ${cols} float32 from '${loaded.tensor}' (${loaded.dtype}${loaded.bitsPerWeight !== undefined ? `, ${fmtBpw(loaded.bitsPerWeight)} bpw` : ""}), ${fmt((rows * cols * 4) / 2 ** 20)} MiB`,
      ],
    );
  },
};
