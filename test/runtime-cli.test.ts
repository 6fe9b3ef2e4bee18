// `carvq lookup`: the CLI front of the device runtime (dist/carvq.mjs, built by npm run build).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parseBlob } from "../tools/blob/reader.ts";
import { parseTokenList } from "../tools/cli/lookup.ts";
import { compressMatrix } from "../tools/compress.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { CarvqError } from "../tools/errors.ts";
import { randomBlob } from "../tools/blob/random.ts";
import { randomMatrix } from "./helpers.ts";

const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "carvq-lookup-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function carvq(...args: string[]) {
  const run = spawnSync(process.execPath, ["--no-warnings", cli, ...args], { cwd: dir });
  return { code: run.status, stdout: new Uint8Array(run.stdout), stderr: run.stderr.toString("utf8") };
}

describe("parseTokenList", () => {
  it("reads ids and ranges in order, repeats kept", () => {
    expect(parseTokenList("3,1-4, 7 ,3")).toEqual([3, 1, 2, 3, 4, 7, 3]);
  });
  it("refuses junk with exit code 2", () => {
    for (const bad of ["", "1,,2", "a", "-1", "5-2", "1.5", "4294967296"]) {
      expect(() => parseTokenList(bad), bad).toThrow(CarvqError);
      try {
        parseTokenList(bad);
      } catch (e) {
        expect((e as CarvqError).exitCode).toBe(2);
      }
    }
  });
});

const lookupBlob = await compressMatrix(randomMatrix(30, 21, 5), { h: 8, levels: 2, group: 9, iters: 2 });

describe.runIf(existsSync(cli))("carvq lookup", () => {
  const { bytes } = lookupBlob;
  writeFileSync(join(dir, "m.carvq"), bytes);
  const ids = [29, 0, 3, 4, 5, 3];
  const want = Buffer.from(decodeTokens(parseBlob(bytes, "m"), ids).buffer);

  it("writes the rows to stdout (not a terminal) and to -o, bit-identical to the reference decoder, for builds and targets", () => {
    const piped = carvq("lookup", "m.carvq", "--tokens", "29,0,3-5,3");
    expect(piped.code, piped.stderr).toBe(0);
    expect(Buffer.from(piped.stdout).equals(want)).toBe(true);
    for (const flags of [
      ["--build", "scalar", "--mode", "streaming"],
      ["--target", "mcu-128k"],
      ["--target", "rpi4-wasmtime", "--mode", "streaming"],
    ]) {
      const out = join(dir, `${flags.join("_")}.f32`);
      const run = carvq("lookup", "m.carvq", "--tokens", "29,0,3-5,3", ...flags, "-o", out);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout.byteLength).toBe(0);
      expect(readFileSync(out).equals(want), flags.join(" ")).toBe(true);
    }
  });

  it("serves a gain-shape (v1.1) blob bit-identically, generic builds and a device target", async () => {
    const scaled = (await compressMatrix(randomMatrix(30, 21, 6), { h: 8, levels: 2, group: 9, iters: 2, rowScaleCount: 5 })).bytes;
    writeFileSync(join(dir, "s.carvq"), scaled);
    const wantScaled = Buffer.from(decodeTokens(parseBlob(scaled, "s"), [29, 0, 3, 4, 5, 3]).buffer);
    for (const flags of [[], ["--build", "scalar", "--mode", "streaming"], ["--target", "mcu-128k"]]) {
      const run = carvq("lookup", "s.carvq", "--tokens", "29,0,3-5,3", ...flags);
      expect(run.code, run.stderr).toBe(0);
      expect(Buffer.from(run.stdout).equals(wantScaled), flags.join(" ")).toBe(true);
    }
  });

  it("passes --adaptor-batch and --adaptor-tile to the runtime: an adapted (v1.2) blob bit-identical in tiles and batches; bad values refused", () => {
    const adapted = randomBlob({ rows: 40, cols: 24, subvec: 8, levels: 2, group: 16, adaptor: { widths: [6, 40, 24] }, seed: 8 });
    writeFileSync(join(dir, "a.carvq"), adapted);
    const tokens = [39, 0, 7, 7, 12];
    const wantAdapted = Buffer.from(decodeTokens(parseBlob(adapted, "a"), tokens).buffer);
    for (const flags of [
      ["--adaptor-batch", "1"],
      ["--adaptor-batch", "2", "--adaptor-tile", "512", "--mode", "streaming"],
      ["--build", "scalar", "--adaptor-tile", "256", "--mode", "streaming"],
    ]) {
      const run = carvq("lookup", "a.carvq", "--tokens", tokens.join(","), ...flags);
      expect(run.code, `${flags.join(" ")}: ${run.stderr}`).toBe(0);
      expect(Buffer.from(run.stdout).equals(wantAdapted), flags.join(" ")).toBe(true);
    }
    for (const bad of [
      ["--adaptor-batch", "0"],
      ["--adaptor-tile", "x"],
      ["--adaptor-batch", "4294967296"],
    ]) {
      const run = carvq("lookup", "a.carvq", "--tokens", "1", ...bad);
      expect(run.code, bad.join(" ")).toBe(2);
      expect(run.stderr).toMatch(new RegExp(`^carvq lookup: ${bad[0]} must be a whole number`));
    }
  });

  it("refuses to overwrite without --force", () => {
    const out = join(dir, "once.f32");
    expect(carvq("lookup", "m.carvq", "--tokens", "1", "-o", out).code).toBe(0);
    const again = carvq("lookup", "m.carvq", "--tokens", "1", "-o", out);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already exists/);
    expect(carvq("lookup", "m.carvq", "--tokens", "2", "-o", out, "--force").code).toBe(0);
  });

  it("exits with the runtime's code and one line naming the file", () => {
    const range = carvq("lookup", "m.carvq", "--tokens", "30");
    expect(range.code).toBe(5);
    expect(range.stderr.trim()).toBe("carvq: m.carvq: token 30 is out of range: the blob has 30 tokens (0 to 29)");
    const broken = new Uint8Array(bytes);
    broken[broken.length - 1] ^= 1;
    writeFileSync(join(dir, "broken.carvq"), broken);
    const bad = carvq("lookup", "broken.carvq", "--tokens", "1", "--build", "scalar");
    expect(bad.code).toBe(4);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/^carvq: broken\.carvq: bad blob: section 2 \(METADATA\): CRC mismatch/);
    expect(carvq("lookup", "none.carvq", "--tokens", "1").code).toBe(3);
    expect(carvq("lookup", "m.carvq", "--tokens", "1", "--target", "mcu-128k", "--mode", "resident").code).toBe(0);
  });

  it("refuses bad flags with exit code 2", () => {
    for (const args of [
      ["m.carvq"],
      ["--tokens", "1"],
      ["m.carvq", "--tokens", "x"],
      ["m.carvq", "--tokens", "1", "--host", "wasm3"],
      ["m.carvq", "--tokens", "1", "--host", "jco", "--target", "mcu-128k"],
      ["m.carvq", "--tokens", "1", "--target", "nope"],
    ]) {
      const run = carvq("lookup", ...args);
      expect(run.code, `${args.join(" ")}: ${run.stderr}`).not.toBe(0);
      expect(run.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(run.stderr).toMatch(/^carvq/);
    }
  });
});
