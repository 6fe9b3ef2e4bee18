// Smoke test of `npm run bench`: the quick run (tiny shapes, one repetition) finishes, and its JSON
// holds every goal with finite figures. It asserts no time: the machines are shared, so
// a timing here would fail at random; the goals themselves are judged by `npm run bench`.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { buildDir, projectRoot } from "../host/common.ts";
import type { BenchReport } from "../tools/dev/bench/report.ts";

/** The lookup goals, for both shapes (tools/dev/bench/lookup-goals.ts). */
const LOOKUP_GOALS = [
  "rvq-vs-fp16",
  "jco.rvq-vs-fp16",
  "library-vs-decode",
  "adaptor-vs-gemm",
  "batch64-vs-single",
  "simd-vs-scalar",
  "streaming-vs-resident",
]
  .flatMap((g) => ["llama1b", "stories15m"].map((s) => `lookup.${g}.${s}`))
  .concat(["lookup.library-size-independence"]);

const script = join(buildDir(), "bench-smoke.mjs");
let report: BenchReport;

beforeAll(async () => {
  execFileSync(process.execPath, [
    join(projectRoot(), "tools/dev/bundle.mjs"),
    join(projectRoot(), "tools/dev/bench/main.ts"),
    script,
    "--packages=external",
  ]);
  const stdout = execFileSync(process.execPath, ["--no-warnings", script, "--quick", "--json"], {
    cwd: projectRoot(),
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 1 << 26,
  });
  report = JSON.parse(stdout) as BenchReport;
}, 120_000);

describe("npm run bench -- --quick --json", () => {
  it("describes the machine and the run", () => {
    expect(report.quick).toBe(true);
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.machine.cpu.length).toBeGreaterThan(0);
    expect(Number.isFinite(report.machine.loadAverageAtStart)).toBe(true);
  });

  it("has every group", () => {
    expect(report.groups.map((g) => g.name).sort()).toEqual(["compression", "forward", "lookup"]);
  });

  it("has every lookup goal, each with a finite ratio, a verdict that matches it and finite timings", () => {
    const lookup = report.groups.find((g) => g.name === "lookup")!;
    const ids = lookup.goals.map((g) => g.id);
    for (const id of LOOKUP_GOALS) expect(ids, id).toContain(id);
    for (const g of lookup.goals) {
      expect(Number.isFinite(g.measured) && g.measured > 0, g.id).toBe(true);
      expect(g.met, g.id).toBe(g.direction === "max" ? g.measured <= g.bound : g.measured >= g.bound);
      expect(g.timings.length, g.id).toBeGreaterThan(0);
      for (const t of g.timings) expect(Number.isFinite(t.median) && t.median > 0, `${g.id}: ${t.label}`).toBe(true);
    }
    expect(lookup.extra.length).toBeGreaterThan(0);
  });

  it("has compression goals with finite figures", () => {
    const compression = report.groups.find((g) => g.name === "compression")!;
    expect(compression.goals.length).toBeGreaterThan(0);
    for (const g of compression.goals) {
      expect(g.id.startsWith("compress."), g.id).toBe(true);
      expect(Number.isFinite(g.measured), g.id).toBe(true);
    }
  });
  it("has the forward's goal: a finite ratio of tokens/s to the kernel's bound, and the kernel's GFLOP/s", () => {
    const forward = report.groups.find((g) => g.name === "forward")!;
    const prefill = forward.goals.find((g) => g.id === "forward.prefill-vs-bound.llama1b")!;
    expect(Number.isFinite(prefill.measured) && prefill.measured > 0).toBe(true);
    expect(prefill.timings.map((t) => t.unit)).toEqual(["tokens/s", "tokens/s", "GFLOP/s"]);
    expect(forward.extra.map((t) => t.unit)).toEqual(["GFLOP/s", "GFLOP/s", "GFLOP/s", "GFLOP/s", "MiB"]);
    for (const t of [...prefill.timings, ...forward.extra]) expect(Number.isFinite(t.median) && t.median > 0, t.label).toBe(true);
  });
});
