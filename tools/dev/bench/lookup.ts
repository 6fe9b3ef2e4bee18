// npm run bench:lookup — lookups per second of the WASM runtime under Node's WASI, SIMD vs
// scalar and resident vs streaming on a Llama-3.2-1B-shaped blob (128256 x 2048, h 8, L 2,
// g 1024: random codes, ~49 MB), the same four on that shape with 256 row scales (blob v1.1,
// gain-shape: one more byte a record, one f32 multiply a value) and with the paper's corrective
// adaptor (blob v1.2, 16 -> 384 -> 512 -> 2048, int8: ~1.25 M multiply-adds a token), streaming
// with the adaptor's MLP in 64 KiB tiles in batches and one token at a time, then each device
// target on its representative blob, plain and with an adaptor, with the peak linear memory of
// every run. All figures come from one run of this script, so the ratios compare like with like
// on the same machine.
//
// A lookup here is what a device does: read the token's record (and, streaming, its codebook
// groups), decode the row, write it to stdout (/dev/null, so the host's reading is not timed). Per configuration: one run with 1 token
// (start-up, blob validation with every CRC, resident load) and runs with N tokens; lookups/s =
// (N - 1) / (t_N - t_1), best of R repeats. Options: --tokens N (default 8192; at most budget / 64
// on small targets; N / 8 with an adaptor), --repeats R (default 5), --json.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { guestPath, loadTargets, type BuildName, type ModeName, type Target } from "../../../host/common.ts";
import { runWasiCommand, wasmPath } from "../../../host/node.ts";
import { randomBlob, type RandomBlobOptions } from "../../blob/random.ts";
import { createRandom } from "../../random.ts";

interface Measure {
  label: string;
  wasm: string;
  build: BuildName;
  mode: ModeName;
  budgetBytes: number;
  blobBytes: number;
  /** Tokens per timed run. */
  tokens: number;
  lookupsPerSecond: number;
  /** Seconds of a 1-token run: instantiate, validate (all CRCs), load if resident. */
  openSeconds: number;
  peakMemoryBytes: number;
}

const { values } = parseArgs({ options: { tokens: { type: "string" }, repeats: { type: "string" }, json: { type: "boolean" } } });
const N = Number(values.tokens ?? 8192);
const R = Number(values.repeats ?? 5);
if (!Number.isInteger(N) || N < 2 || !Number.isInteger(R) || R < 1) throw new Error("--tokens must be >= 2 and --repeats >= 1");

const dir = mkdtempSync(join(tmpdir(), "carvq-bench-"));
const blobs = new Map<string, { path: string; bytes: number; rows: number }>();

function blobFor(shape: RandomBlobOptions): { path: string; bytes: number; rows: number } {
  const key = JSON.stringify(shape);
  let blob = blobs.get(key);
  if (blob === undefined) {
    const bytes = randomBlob({ seed: 1, ...shape });
    const path = join(
      dir,
      `${shape.rows}x${shape.cols}${shape.rowScales ? `-r${shape.rowScales}` : ""}${shape.adaptor ? `-a${shape.adaptor.widths.join("-")}` : ""}.carvq`,
    );
    writeFileSync(path, bytes);
    blob = { path, bytes: bytes.length, rows: shape.rows };
    blobs.set(key, blob);
  }
  return blob;
}

const scratchDir = mkdtempSync(join(tmpdir(), "carvq-bench-out-"));

function timedRun(wasm: string, args: string[]): { seconds: number; peak: number } {
  const started = performance.now();
  const run = runWasiCommand(wasm, args, { "/blob": dir }, { scratchDir, discardStdout: true });
  const seconds = (performance.now() - started) / 1000;
  if (run.exitCode !== 0) throw new Error(`${wasm} ${args.slice(0, 4).join(" ")} ...: ${run.stderr.trim()}`);
  return { seconds, peak: run.peakMemoryBytes };
}

function measure(
  label: string,
  wasm: string,
  build: BuildName,
  mode: ModeName,
  budgetBytes: number,
  blob: { path: string; bytes: number; rows: number },
  options: { tokens?: number; extra?: string[] } = {},
): Measure {
  const random = createRandom(12345);
  // The token ids are the command line, which lives in linear memory: ~10 bytes per token must
  // leave room under small budgets (mcu-128k: 2048 tokens take ~20 KiB of its 128 KiB).
  const n = Math.max(2, Math.min(options.tokens ?? N, Math.floor(budgetBytes / 64)));
  const ids = Array.from({ length: n }, () => String(Math.floor(random() * blob.rows)));
  const base = ["lookup", "--mode", mode, ...(options.extra ?? []), guestPath(blob.path)];
  let one = Infinity;
  let many = Infinity;
  let peak = 0;
  for (let r = 0; r < R; r++) {
    const a = timedRun(wasm, [...base, ids[0]]);
    const b = timedRun(wasm, [...base, ...ids]);
    one = Math.min(one, a.seconds);
    many = Math.min(many, b.seconds);
    peak = Math.max(peak, a.peak, b.peak);
  }
  return {
    label,
    wasm,
    build,
    mode,
    budgetBytes,
    blobBytes: blob.bytes,
    tokens: n,
    lookupsPerSecond: (n - 1) / Math.max(many - one, 1e-9),
    openSeconds: one,
    peakMemoryBytes: peak,
  };
}

const llama: RandomBlobOptions = { rows: 128256, cols: 2048, subvec: 8, levels: 2, group: 1024, layout: "row" };
/** The paper's adaptor sizes, its output width the table's. */
const paperAdaptor = (cols: number): RandomBlobOptions["adaptor"] => ({
  widths: cols >= 2048 ? [16, 384, 512, cols] : cols >= 512 ? [16, 128, 128, cols] : [16, 64, 64, cols],
  precision: "int8",
});
/** Tokens per timed run with an adaptor (its MLP costs far more than the rest of a lookup). */
const NA = Math.max(2, Math.floor(N / 8));
const results: Measure[] = [];
try {
  const big = blobFor(llama);
  for (const build of ["simd", "scalar"] as const) {
    for (const mode of ["resident", "streaming"] as const) {
      results.push(measure(`generic ${build} ${mode}`, wasmPath({ build }), build, mode, 2 ** 32, big));
    }
  }
  const scaled = blobFor({ ...llama, rowScales: 256 });
  for (const build of ["simd", "scalar"] as const) {
    for (const mode of ["resident", "streaming"] as const) {
      results.push(measure(`generic ${build} ${mode} +rowscale`, wasmPath({ build }), build, mode, 2 ** 32, scaled));
    }
  }
  const adapted = blobFor({ ...llama, adaptor: paperAdaptor(llama.cols) });
  for (const build of ["simd", "scalar"] as const) {
    for (const mode of ["resident", "streaming"] as const) {
      results.push(measure(`generic ${build} ${mode} +adaptor`, wasmPath({ build }), build, mode, 2 ** 32, adapted, { tokens: NA }));
    }
  }
  results.push(
    measure("generic simd streaming +adaptor 64K tiles", wasmPath({ build: "simd" }), "simd", "streaming", 2 ** 32, adapted, {
      tokens: NA,
      extra: ["--adaptor-tile", "65536"],
    }),
  );
  results.push(
    measure(
      "generic simd streaming +adaptor 64K tiles, 1 token/batch",
      wasmPath({ build: "simd" }),
      "simd",
      "streaming",
      2 ** 32,
      adapted,
      { tokens: NA, extra: ["--adaptor-tile", "65536", "--adaptor-batch", "1"] },
    ),
  );
  const targets: Target[] = loadTargets();
  for (const t of targets) {
    const build: BuildName = t.simd ? "simd" : "scalar";
    results.push(
      measure(
        `target ${t.name}`,
        wasmPath({ target: t.name }),
        build,
        t.mode,
        t.memoryBudgetBytes,
        blobFor(t.representative as RandomBlobOptions),
      ),
    );
  }
  for (const t of targets) {
    const build: BuildName = t.simd ? "simd" : "scalar";
    const shape = t.representative as RandomBlobOptions;
    results.push(
      measure(
        `target ${t.name} +adaptor`,
        wasmPath({ target: t.name }),
        build,
        t.mode,
        t.memoryBudgetBytes,
        blobFor({ ...shape, adaptor: paperAdaptor(shape.cols) }),
        { tokens: NA },
      ),
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(scratchDir, { recursive: true, force: true });
}

const by = (label: string) => results.find((m) => m.label === label)!;
const ratio = (a: string, b: string) => by(a).lookupsPerSecond / by(b).lookupsPerSecond;
const ratios = {
  simdOverScalarResident: ratio("generic simd resident", "generic scalar resident"),
  simdOverScalarStreaming: ratio("generic simd streaming", "generic scalar streaming"),
  residentOverStreamingSimd: ratio("generic simd resident", "generic simd streaming"),
  residentOverStreamingScalar: ratio("generic scalar resident", "generic scalar streaming"),
  rowScaleOverPlain: Object.fromEntries(
    ["simd resident", "simd streaming", "scalar resident", "scalar streaming"].map((c) => [
      c,
      ratio(`generic ${c} +rowscale`, `generic ${c}`),
    ]),
  ) as Record<string, number>,
  adaptorOverPlain: Object.fromEntries(
    ["simd resident", "simd streaming", "scalar resident", "scalar streaming"].map((c) => [
      c,
      ratio(`generic ${c} +adaptor`, `generic ${c}`),
    ]),
  ) as Record<string, number>,
  adaptorBatchedOverSingle: ratio("generic simd streaming +adaptor 64K tiles", "generic simd streaming +adaptor 64K tiles, 1 token/batch"),
};

const mib = (b: number) => (b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 1);
if (values.json) {
  process.stdout.write(`${JSON.stringify({ tokensPerRun: N, repeats: R, node: process.version, results, ratios }, null, 2)}\n`);
} else {
  const lines = [
    `carvq-rt lookups under Node ${process.version} WASI: random tokens, best of ${R} runs; a lookup decodes the row and writes it to stdout (/dev/null)`,
    "",
    "configuration                                             blob MiB  tokens   lookups/s   open s   peak MiB   budget MiB   peak/budget",
    ...results.map((m) =>
      [
        m.label.padEnd(57),
        mib(m.blobBytes).padStart(8),
        String(m.tokens).padStart(7),
        Math.round(m.lookupsPerSecond).toString().padStart(11),
        m.openSeconds.toFixed(3).padStart(8),
        mib(m.peakMemoryBytes).padStart(10),
        mib(m.budgetBytes).padStart(12),
        (m.peakMemoryBytes / m.budgetBytes).toFixed(4).padStart(13),
      ].join(" "),
    ),
    "",
    `SIMD / scalar:        resident ${ratios.simdOverScalarResident.toFixed(2)}x, streaming ${ratios.simdOverScalarStreaming.toFixed(2)}x`,
    `resident / streaming: simd ${ratios.residentOverStreamingSimd.toFixed(2)}x, scalar ${ratios.residentOverStreamingScalar.toFixed(2)}x`,
    `row scales / none:    ${Object.entries(ratios.rowScaleOverPlain)
      .map(([c, r]) => `${c} ${r.toFixed(2)}x`)
      .join(", ")}`,
    `adaptor / none:       ${Object.entries(ratios.adaptorOverPlain)
      .map(([c, r]) => `${c} ${r.toFixed(4)}x`)
      .join(", ")}`,
    `adaptor, 64 KiB tiles, batched / one token per batch: ${ratios.adaptorBatchedOverSingle.toFixed(2)}x`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
