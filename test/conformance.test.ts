// The device conformance kit (carvq conformance): it runs with no failure through its own run.sh
// under Node's WASI and through --run under jco, it catches a damaged blob, a wrong expected hash
// and a module of the wrong target, and the same command writes the same bytes.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDir, loadTarget, loadTargets } from "../host/common.ts";
import { MAX_KIT_BYTES, writeKit } from "../tools/conformance/kit.ts";
import { runKit } from "../tools/conformance/run.ts";
import type { KitCase } from "../tools/conformance/cases.ts";

const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "carvq-conformance-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every file of a folder, by path relative to it, with its bytes. */
function filesOf(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path));
    }
  };
  walk(dir);
  return out;
}

interface ShRun {
  code: number | null;
  lines: string[];
  stderr: string;
}

/** `sh run.sh [options] node host/run-wasi.mjs` with `cwd`, as a person would type it. */
function runSh(cwd: string, runSh: string, options: string[], runner: string): ShRun {
  const run = spawnSync("sh", [runSh, ...options, process.execPath, runner], { cwd, encoding: "utf8" });
  return { code: run.status, lines: run.stdout.split("\n").filter((l) => l !== ""), stderr: run.stderr };
}

function failedNames(run: ShRun): string[] {
  return run.lines.filter((l) => l.startsWith("FAIL ")).map((l) => l.slice(5, l.indexOf(":")));
}

function manifestCases(kit: string): KitCase[] {
  return (JSON.parse(readFileSync(join(kit, "manifest.json"), "utf8")) as { cases: KitCase[] }).cases;
}

/** A private copy of the kit for one test to break. */
function copyKit(kit: string, name: string): string {
  const copy = join(work, name);
  cpSync(kit, copy, { recursive: true });
  return copy;
}

describe.runIf(existsSync(cli))("carvq conformance", () => {
  const kit = join(work, "kit");
  let cases: KitCase[] = [];

  beforeAll(() => {
    const run = spawnSync(process.execPath, ["--no-warnings", cli, "conformance", "-o", kit, "--quick", "--target", "mcu-128k"], {
      encoding: "utf8",
    });
    expect(run.status, run.stderr).toBe(0);
    cases = manifestCases(kit);
  });

  it("writes a kit whose run.sh passes every case under Node's WASI (sh run.sh node host/run-wasi.mjs, from outside the kit)", () => {
    expect(cases.length).toBeGreaterThan(50);
    // cases.txt (what run.sh reads) holds exactly the manifest's cases.
    const lines = readFileSync(join(kit, "cases.txt"), "utf8")
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(lines.map((l) => l.split(" ")[0])).toEqual(cases.map((c) => c.name));
    const run = runSh(work, "kit/run.sh", [], "kit/host/run-wasi.mjs");
    expect(
      run.lines.filter((l) => !l.startsWith("PASS ")),
      run.stderr,
    ).toEqual([`${cases.length} passed, 0 failed`]);
    expect(run.code).toBe(0);
    // Every kind of case is there, and the refusals among them.
    for (const kind of ["variant", "hostile", "request", "budget"])
      expect(
        cases.some((c) => c.kind === kind),
        kind,
      ).toBe(true);
    for (const exit of [2, 3, 4, 5, 6])
      expect(
        cases.some((c) => c.expectedExit === exit),
        `exit ${exit}`,
      ).toBe(true);
    // A --quick kit keeps every blob under 1 MiB.
    for (const [name, bytes] of filesOf(join(kit, "blobs"))) expect(bytes.length, name).toBeLessThan(1 << 20);
  });

  it("runs under jco: through run.sh with the project's jco runner, and through --run (device modules skipped, with the reason)", async () => {
    const sh = spawnSync(
      "sh",
      ["kit/run.sh", "--only", "simd.rvq-odd-row.resident", process.execPath, "--no-warnings", cli, "conformance", "jco-run"],
      { cwd: work, encoding: "utf8" },
    );
    expect(
      sh.stdout.split("\n").filter((l) => l !== ""),
      sh.stderr,
    ).toEqual(["PASS simd.rvq-odd-row.resident", "1 passed, 0 failed"]);
    expect(sh.status).toBe(0);
    // jco itself exits 1 for every failure; the exit code is read back from the runtime's line.
    const refused = await runKit({ dir: kit, host: "jco", only: "simd.hostile-bad-crc" });
    expect(refused.results.map((r) => [r.name, r.exitCode, r.why])).toEqual([["simd.hostile-bad-crc.resident", 4, ""]]);
    await expect(runKit({ dir: kit, host: "jco", only: "mcu-128k.rvq-row" })).rejects.toThrow(
      /is skipped: device modules are not run under jco/,
    );
  });

  it("fails exactly the cases of a blob with one flipped byte, and exits non-zero", () => {
    const broken = copyKit(kit, "flipped");
    const blob = join(broken, "blobs", "rvq-col.carvq");
    const bytes = readFileSync(blob);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(blob, bytes);
    // Run from inside the kit this time: sh run.sh ... with relative words.
    const run = runSh(broken, "run.sh", ["--only", "rvq-[cr]o"], "host/run-wasi.mjs");
    const chosen = cases.filter((c) => c.name.includes("rvq-col") || c.name.includes("rvq-row"));
    expect(run.lines.filter((l) => /^(PASS|FAIL) /.test(l)).length).toBe(chosen.length);
    const want = chosen.filter((c) => c.blob === "blobs/rvq-col.carvq").map((c) => c.name);
    expect(want.length).toBeGreaterThanOrEqual(3);
    expect(failedNames(run)).toEqual(want);
    for (const name of want) expect(run.lines).toContain(`FAIL ${name}: expected exit 0, got 4`);
    expect(run.lines.at(-1)).toBe(`${chosen.length - want.length} passed, ${want.length} failed`);
    expect(run.code).toBe(1);
  });

  it("fails a case whose expected hash is wrong, saying the rows differ", () => {
    const broken = copyKit(kit, "wrong-hash");
    const path = join(broken, "cases.txt");
    const target = "scalar.int3.streaming";
    const text = readFileSync(path, "utf8");
    const line = text.split("\n").find((l) => l.startsWith(`${target} `))!;
    const [, , hash] = line.split(" ");
    const wrong = `${hash.slice(0, -1)}${hash.endsWith("0") ? "1" : "0"}`;
    writeFileSync(path, text.replace(line, line.replace(hash, wrong)));
    const run = runSh(work, "wrong-hash/run.sh", ["--only", "int3"], "wrong-hash/host/run-wasi.mjs");
    expect(failedNames(run)).toEqual([target]);
    expect(run.lines).toContain(`FAIL ${target}: rows differ (sha256 ${hash}, expected ${wrong})`);
    expect(run.code).toBe(1);
    // carvq conformance --run reads manifest.json, not cases.txt: break it there too.
    const manifest = join(broken, "manifest.json");
    const parsed = JSON.parse(readFileSync(manifest, "utf8")) as { cases: KitCase[] };
    parsed.cases.find((c) => c.name === target)!.expectedStdoutSha256 = wrong;
    writeFileSync(manifest, JSON.stringify(parsed));
    const viaRun = spawnSync(process.execPath, ["--no-warnings", cli, "conformance", "--run", broken, "--only", "int3"], {
      encoding: "utf8",
    });
    expect(viaRun.stdout).toContain(`FAIL ${target}: rows differ (sha256 ${hash}, expected ${wrong})`);
    expect(viaRun.stdout).toMatch(/\n\d+ passed, 1 failed\n$/);
    expect(viaRun.status).toBe(1);
  });

  it("fails the budget cases when a target's module is swapped for a larger target's", () => {
    const broken = copyKit(kit, "swapped");
    copyFileSync(join(buildDir(), "targets", "esp32s3-wamr.wasm"), join(broken, "modules", "mcu-128k.wasm"));
    // Its budget cases and, as a control, its int4/int3/int2 cases.
    const run = runSh(work, "swapped/run.sh", ["--only", "mcu-128k.[bi]"], "swapped/host/run-wasi.mjs");
    const failed = failedNames(run);
    // A 32768-wide row (128 KiB) cannot fit mcu-128k's 128 KiB with the runtime's static data, but fits esp32s3-wamr's 256 KiB.
    for (const mode of ["resident", "streaming"]) {
      expect(run.lines).toContain(`FAIL mcu-128k.budget-too-wide.${mode}: expected exit 6, got 0`);
    }
    expect(failed.every((n) => n.startsWith("mcu-128k.budget-"))).toBe(true);
    expect(run.lines.filter((l) => l.startsWith("PASS mcu-128k.int")).length).toBe(3);
    expect(run.code).toBe(1);
  });

  it("writes the same bytes twice (CLI and library, full kit of every target), under 20 MiB, blobs under 1 MiB but the budget ones", async () => {
    const first = join(work, "full-a");
    const second = join(work, "full-b");
    const run = spawnSync(process.execPath, ["--no-warnings", cli, "conformance", "-o", first], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    await writeKit({ dir: second, targets: loadTargets(), quick: false, force: false });
    const a = filesOf(first);
    const b = filesOf(second);
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [name, bytes] of a) expect(bytes.equals(b.get(name)!), name).toBe(true);
    const total = [...a.values()].reduce((s, x) => s + x.length, 0);
    expect(total).toBeLessThan(MAX_KIT_BYTES);
    for (const [name, bytes] of a)
      if (name.startsWith("blobs/") && !name.includes("budget-")) expect(bytes.length, name).toBeLessThan(256 * 1024);
    // Every target has its modules and its budget cases or a stated reason why not.
    const manifest = JSON.parse(a.get("manifest.json")!.toString("utf8")) as { cases: KitCase[]; notCovered: { target: string }[] };
    for (const t of loadTargets()) {
      expect(a.has(`modules/${t.name}.wasm`)).toBe(true);
      const budgetCases = manifest.cases.filter((c) => c.target === t.name && c.kind === "budget");
      expect(budgetCases.length > 0 || manifest.notCovered.some((n) => n.target === t.name), t.name).toBe(true);
      for (const c of manifest.cases.filter((x) => x.target === t.name)) expect(c.budgetBytes).toBe(loadTarget(t.name).memoryBudgetBytes);
    }
    // Refuses to replace a kit without --force.
    const again = spawnSync(process.execPath, ["--no-warnings", cli, "conformance", "-o", first], { encoding: "utf8" });
    expect(again.status).not.toBe(0);
    expect(again.stderr).toMatch(/already exists/);
  });
});
