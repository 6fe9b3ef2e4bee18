import { loadTarget, loadTargets, targetNames } from "../../host/common.ts";
import { writeKit, caseTable } from "../conformance/kit.ts";
import { runKit, runUnderJco } from "../conformance/run.ts";
import { CarvqError } from "../errors.ts";
import { EXIT } from "../exit-codes.ts";
import { choiceOption, parseCommandArgs, quoted, usageError } from "./args.ts";
import type { Command } from "./command.ts";
import { note } from "./output.ts";

const help = `carvq conformance -o DIR [--target NAME ...] [--quick] [--force]
carvq conformance --run DIR [--host node|jco] [--only PATTERN]
carvq conformance jco-run MODULE ARGS...

Writes a device conformance kit: a self-contained folder that checks that a WASI engine on a
device (wasmtime on a Raspberry Pi, WAMR's iwasm, wasm3, ...) runs the runtime's modules exactly:
every format variant gives the reference decoder's rows bit for bit, hostile blobs and bad
requests get the right exit code, and each target's memory budget (the modules' declared maximum
memory) holds what it must and refuses what it cannot hold. On the device, from the kit's folder:

  sh run.sh wasmtime run --dir=.       sh run.sh iwasm --heap-size=0 --dir=.
  sh run.sh wasm3                      sh run.sh node host/run-wasi.mjs

The kit holds modules/, blobs/, manifest.json, cases.txt, run.sh, host/run-wasi.mjs and README.md;
the same command gives the same bytes.
Example: carvq conformance -o kit && sh kit/run.sh node kit/host/run-wasi.mjs

Options:
  -o, --output DIR   write the kit to DIR (refused if it exists, unless --force)
  --target NAME      a target to include (repeatable, or NAME,NAME; default all:
                     ${targetNames().join(", ")})
  --quick            a smaller kit: one mode per generic build, hostile blobs on the generic
                     builds only, no blob over 1 MiB
  --force            replace an existing DIR
  --run DIR          run a kit here instead, through the project's own hosts
  --host node|jco    with --run: node (Node's WASI, default) or jco (each generic module
                     wrapped as a WASI command component and run by jco, ~1 s a case; the
                     device modules are skipped: jco's preview1 adapter takes pages of their
                     memory budget)
  --only PATTERN     with --run: only cases whose name contains PATTERN (* ? [...] allowed)
  -h, --help         this text

jco-run MODULE ARGS... runs one WASI command module under jco, from the current folder (preopened
as "."), with its stdout, stderr and the runtime's exit code: an engine for a kit's run.sh, e.g.
  sh kit/run.sh --only simd. node dist/carvq.mjs conformance jco-run

Exit code: 0 when the kit is written, or when every case of --run passes; 1 when a case fails.`;

export const conformanceCommand: Command = {
  name: "conformance",
  summary: "write (or run) a device conformance kit for any WASI engine",
  help,
  async run(argv) {
    if (argv[0] === "jco-run") return jcoRun(argv.slice(1));
    const { values, positionals } = parseCommandArgs("conformance", argv, {
      output: { type: "string", short: "o" },
      target: { type: "string", multiple: true },
      quick: { type: "boolean" },
      force: { type: "boolean" },
      run: { type: "string" },
      host: { type: "string" },
      only: { type: "string" },
    });
    if (values.help) return void process.stdout.write(`${help}\n`);
    if (positionals.length > 0)
      throw usageError("conformance", `unexpected argument ${quoted(positionals[0])} (see carvq conformance --help)`);
    if (values.run !== undefined) {
      if (values.output !== undefined || values.target !== undefined || values.quick || values.force)
        throw usageError(
          "conformance",
          "--run runs an existing kit; -o, --target, --quick and --force make one (see carvq conformance --help)",
        );
      const host = choiceOption("conformance", "host", values.host, "node", ["node", "jco"] as const);
      const started = Date.now();
      const result = await runKit({ dir: values.run, host, only: values.only, onLine: (line) => process.stdout.write(`${line}\n`) });
      process.stdout.write(
        `${result.passed} passed, ${result.failed} failed${result.skipped ? `, ${result.skipped.names.length} skipped` : ""}\n`,
      );
      if (result.skipped) note(`carvq conformance: ${result.skipped.names.length} cases skipped: ${result.skipped.reason}`);
      note(`carvq conformance: ${result.results.length} cases under ${host} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (result.failed > 0) process.exitCode = 1; // as the kit's run.sh: a case failed
      return;
    }
    if (values.host !== undefined || values.only !== undefined)
      throw usageError("conformance", "--host and --only go with --run DIR (see carvq conformance --help)");
    if (values.output === undefined)
      throw usageError("conformance", "give -o DIR to write a kit, or --run DIR to run one (see carvq conformance --help)");
    const names = (values.target ?? [])
      .flatMap((v) => v.split(","))
      .map((v) => v.trim())
      .filter((v) => v !== "");
    const unknown = names.find((n) => !targetNames().includes(n));
    if (unknown !== undefined)
      throw usageError("conformance", `--target ${quoted(unknown)} is not a target (known: ${targetNames().join(", ")})`);
    const targets = names.length === 0 ? loadTargets() : [...new Set(names)].sort().map((n) => loadTarget(n));
    const started = Date.now();
    const kit = await writeKit({ dir: values.output, targets, quick: values.quick === true, force: values.force === true });
    process.stdout.write(
      `${[`${values.output}: ${kit.cases} cases, ${kit.plan.modules.length} modules, ${kit.plan.blobs.length} blobs, ${kit.bytes} bytes`, "", ...caseTable(kit.plan), ...kit.plan.notCovered.map((n) => `not covered: ${n.target}: ${n.check} (${n.reason})`)].join("\n")}\n`,
    );
    note(
      `carvq conformance: wrote ${values.output} in ${((Date.now() - started) / 1000).toFixed(1)} s; run it with: sh ${values.output}/run.sh ENGINE WORDS... (e.g. node ${values.output}/host/run-wasi.mjs)`,
    );
  },
};

/** `jco-run MODULE ARGS...`: everything after the module goes to it untouched. */
async function jcoRun(argv: string[]): Promise<void> {
  const [module, ...args] = argv;
  if (module === undefined)
    throw usageError("conformance jco-run", "give the module to run, then its arguments (see carvq conformance --help)");
  const run = await runUnderJco(module, args);
  process.stderr.write(run.stderr);
  await new Promise<void>((resolve, reject) =>
    process.stdout.write(run.stdout, (err) =>
      err ? reject(new CarvqError(`carvq conformance jco-run: cannot write to stdout (${err.message})`, EXIT.io)) : resolve(),
    ),
  );
  process.exitCode = run.exitCode;
}
