// The fuzzing CLI itself: worker threads, the report, and the watchdog that stops an iteration that
// hangs, reports it with its input, and carries on with the rest.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

let bundle: string;
let out: string;
beforeAll(async () => {
  // Next to the runtime modules (build/), where the bundle finds them.
  bundle = resolve("build", `fuzz-test-${process.pid}.mjs`);
  execFileSync(process.execPath, ["tools/dev/bundle.mjs", "tools/dev/fuzz/main.ts", bundle, "--packages=external"]);
  out = mkdtempSync(join(tmpdir(), "carvq-fuzz-cli-"));
});
afterAll(() => {
  if (bundle) rmSync(bundle, { force: true });
  if (out) rmSync(out, { recursive: true, force: true });
});

function fuzz(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ["--no-warnings", bundle, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
}

describe("npm run fuzz", () => {
  it("runs a campaign on two workers and reports runs per module and mode, rejections by reason, and no findings", () => {
    const r = fuzz(["--iterations", "60", "--seed", "5", "--workers", "2", "--json", "--out", out]);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      stats: { iterations: number; runtime: Record<string, unknown>; tsBlobReasons: Record<string, number> };
      findings: unknown[];
    };
    expect(report.stats.iterations).toBe(60);
    expect(Object.keys(report.stats.runtime).sort()).toEqual(["esp32s3-wamr", "mcu-128k", "rpi-zero2w", "rpi4-wasmtime", "scalar", "simd"]);
    expect(Object.keys(report.stats.tsBlobReasons).length).toBeGreaterThan(3);
    expect(report.findings).toEqual([]);
  });

  it("stops an iteration that hangs, reports it as a finding with its input, and finishes the others", () => {
    const r = fuzz(["--iterations", "8", "--seed", "5", "--workers", "2", "--hang-seconds", "2", "--out", out], {
      CARVQ_FUZZ_TEST_HANG: "3",
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/ {2}8 iterations in/);
    expect(r.stdout).toMatch(/findings: 1 \(1 hangs\)/);
    expect(r.stdout).toMatch(/hang: iteration # ran for more than # s/);
    const saved = readdirSync(out).filter((f) => f.startsWith("hang-s5-i3"));
    expect(saved.length).toBe(2);
    const description = JSON.parse(readFileSync(join(out, saved.find((f) => f.endsWith(".json"))!), "utf8")) as {
      iteration: number;
      type: string;
    };
    expect(description).toMatchObject({ iteration: 3, type: "hang" });
  });

  it("replays one iteration and saves its input", () => {
    const r = fuzz(["--seed", "5", "--replay", "4", "--out", out]);
    expect(r.status, r.stderr).toBe(0);
    const replay = JSON.parse(r.stdout) as { iteration: number; saved: string; findings: unknown[] };
    expect(replay.iteration).toBe(4);
    expect(existsSync(replay.saved)).toBe(true);
    expect(replay.findings).toEqual([]);
  });

  it("refuses bad arguments with exit 2", () => {
    for (const args of [["--iterations", "-5"], ["--seed", "abc"], ["--bogus"]]) {
      const r = fuzz(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/^fuzz: /);
    }
    // A negative value is read as the option's value and refused by number, in one line.
    expect(fuzz(["--iterations", "-5"]).stderr).toBe("fuzz: --iterations must be a whole number from 1 to 10000000000, got '-5'\n");
    expect(fuzz(["--bogus"]).stderr).toBe("fuzz: unknown option '--bogus' (see npm run fuzz -- --help)\n");
  });
});
