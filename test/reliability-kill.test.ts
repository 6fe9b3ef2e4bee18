// Nothing lost: `carvq compress` killed at random moments (SIGINT and SIGKILL) leaves at the output
// path either nothing or the previous complete blob, never a partial one, and never replaces a file
// without --force. Runs the built CLI (dist/carvq.mjs, built by `npm test`'s pretest).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileAtomic } from "../tools/atomic.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { Rng } from "../tools/dev/fuzz/rng.ts";
import { seedMatrix } from "../tools/dev/fuzz/seeds.ts";
import { writeNpy } from "../tools/readers/npy.ts";

const CLI = resolve("dist/carvq.mjs");

interface Job {
  name: string;
  input: string;
  args: string[];
  /** The complete blob the job writes (it is deterministic). */
  reference: Uint8Array;
  /** Wall time of a complete run, ms. */
  duration: number;
}

function runCli(args: string[]): { status: number | null; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ["--no-warnings", CLI, ...args], { encoding: "utf8" });
  return { status: r.status, stderr: r.stderr, ms: performance.now() - t0 };
}

/** Starts the job and sends `signal` after `delay` ms; resolves when the process is gone. */
function killAfter(
  job: Job,
  out: string,
  extra: string[],
  signal: NodeJS.Signals,
  delay: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ["--no-warnings", CLI, "compress", job.input, "-o", out, ...job.args, ...extra], {
      stdio: "ignore",
    });
    const timer = setTimeout(() => child.kill(signal), delay);
    child.on("exit", (code, sig) => {
      clearTimeout(timer);
      done({ code, signal: sig });
    });
  });
}

function strayTemps(dir: string, name: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(`.${name}.`) && f.endsWith(".tmp"));
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe("carvq compress killed at random moments", () => {
  let dir: string;
  const jobs: Job[] = [];

  beforeAll(() => {
    expect(existsSync(CLI), `${CLI} is not built (npm run build)`).toBe(true);
    dir = mkdtempSync(join(tmpdir(), "carvq-kill-"));
    // A medium RVQ job (most of its time in fitting) and an int4 job with a 7 MB blob, so that some
    // kills land while the output is being written and flushed.
    const specs: [string, number, number, string[]][] = [
      ["rvq", 16000, 128, []],
      ["int4", 24000, 512, ["--method", "int4"]],
    ];
    for (const [name, rows, cols, args] of specs) {
      const input = join(dir, `${name}.npy`);
      writeNpy(input, seedMatrix(rows, cols, 3), true);
      const out = join(dir, `${name}-reference.carvq`);
      const run = runCli(["compress", input, "-o", out, ...args]);
      expect(run.status, run.stderr).toBe(0);
      const reference = new Uint8Array(readFileSync(out));
      parseBlob(reference, out);
      jobs.push({ name, input, args, reference, duration: run.ms });
    }
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("leaves nothing or the previous complete blob at the output path, never a partial one", async () => {
    const rng = new Rng(20261123, 7);
    const outcomes: Record<string, number> = {};
    const tally = (key: string) => (outcomes[key] = (outcomes[key] ?? 0) + 1);
    let strays = 0;
    const kills = Number(process.env.CARVQ_KILL_COUNT ?? 12); // more for a long run
    for (let k = 0; k < kills; k++) {
      const job = jobs[k % jobs.length];
      const signal: NodeJS.Signals = k % 4 < 2 ? "SIGINT" : "SIGKILL";
      // Half the kills anywhere in the run, half in its last tenth (the write and flush).
      const delay = k % 2 === 0 ? rng.range(30, Math.round(job.duration * 1.05)) : Math.round(job.duration * (0.88 + 0.14 * rng.float()));
      const withPrevious = rng.chance(0.5);
      const out = join(dir, `out-${k}.carvq`);
      const previous = withPrevious ? jobs[(k + 1) % jobs.length].reference : null;
      if (previous) writeFileSync(out, previous);
      const exit = await killAfter(job, out, previous ? ["--force"] : [], signal, delay);
      const finished = exit.code === 0;
      let state: string;
      if (!existsSync(out)) state = "nothing";
      else {
        const bytes = new Uint8Array(readFileSync(out));
        if (previous && same(bytes, previous)) state = "previous blob";
        else if (same(bytes, job.reference)) state = "new complete blob";
        else state = `PARTIAL OR FOREIGN (${bytes.length} bytes)`;
      }
      const stray = strayTemps(dir, `out-${k}.carvq`);
      strays += stray.length;
      tally(
        `${signal} ${finished ? "after it finished" : "while running"}, ${previous ? "previous file + --force" : "no previous file"}: ${state}`,
      );
      expect(state, `kill ${k}: ${signal} at ${delay} ms of ~${job.duration.toFixed(0)} ms`).not.toMatch(/PARTIAL/);
      if (previous === null) expect(state).not.toBe("previous blob");
      if (finished) expect(state).toBe("new complete blob");
      if (!finished && previous === null) expect(["nothing", "new complete blob"]).toContain(state);
      if (!finished && previous !== null) expect(["previous blob", "new complete blob"]).toContain(state);
    }
    console.log(
      `kill test: ${kills} kills, stray temporary files left by killed runs: ${strays}\n${Object.entries(outcomes)
        .map(([k, v]) => `  ${v} x ${k}`)
        .join("\n")}`,
    );
  });

  it("refuses to replace an existing file without --force, before doing the work, and leaves it untouched", () => {
    const out = join(dir, "existing.carvq");
    const previous = jobs[1].reference;
    writeFileSync(out, previous);
    const run = runCli(["compress", jobs[0].input, "-o", out]);
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toMatch(/existing\.carvq: already exists \(pass --force to overwrite\)$/);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.ms).toBeLessThan(jobs[0].duration + 1000);
    expect(same(new Uint8Array(readFileSync(out)), previous)).toBe(true);
  });

  it("a later write of the same path removes the temporary files of killed runs, not those of live ones", () => {
    const out = join(dir, "sweep.carvq");
    // A pid that is certainly gone: a child that has exited.
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout.trim();
    // And one that is alive: a process still running.
    const live = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    const liveTemp = `.sweep.carvq.${live.pid}.tmp`;
    writeFileSync(join(dir, `.sweep.carvq.${gone}.tmp`), "partial");
    writeFileSync(join(dir, liveTemp), "being written");
    writeFileSync(join(dir, ".sweep.carvq.notapid.tmp"), "not ours to judge");
    try {
      writeFileAtomic(out, jobs[0].reference, false);
    } finally {
      live.kill("SIGKILL");
    }
    expect(same(new Uint8Array(readFileSync(out)), jobs[0].reference)).toBe(true);
    expect(strayTemps(dir, "sweep.carvq").sort()).toEqual([".sweep.carvq.notapid.tmp", liveTemp].sort());
    rmSync(join(dir, liveTemp));
    // Without --force an existing file is refused at the last step too (link(2) cannot replace it).
    expect(() => writeFileAtomic(out, jobs[1].reference, false)).toThrow(/already exists/);
    expect(same(new Uint8Array(readFileSync(out)), jobs[0].reference)).toBe(true);
    expect(strayTemps(dir, "sweep.carvq")).toEqual([".sweep.carvq.notapid.tmp"]);
    writeFileAtomic(out, jobs[1].reference, true);
    expect(same(new Uint8Array(readFileSync(out)), jobs[1].reference)).toBe(true);
  });
});
