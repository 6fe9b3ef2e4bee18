// carvq-rt lookup --stdin <blob>: one validation, then a row per token read from stdin as it
// comes; rows identical to the one-shot command; a bad id stops it after the rows before it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RUNTIME_EXIT, type BuildName } from "../host/common.ts";
import { runWasiCommand, wasmPath } from "../host/node.ts";
import { randomBlob } from "../tools/blob/random.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { decodeTokens } from "../tools/decoder.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-stdin-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const GUEST = "/blob";
const preopens = { [GUEST]: dir };

const bytes = randomBlob({ rows: 50, cols: 40, subvec: 8, levels: 2, group: 6, rowScales: 5, adaptor: { widths: [8, 16, 40] }, seed: 21 });
writeFileSync(join(dir, "s.carvq"), bytes);
const blob = `${GUEST}/s.carvq`;

function withStdin(text: string, args: string[], build: BuildName = "simd") {
  const file = join(dir, `stdin-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  return runWasiCommand(wasmPath({ build }), ["lookup", ...args, "--stdin", blob], preopens, { stdinFile: file });
}

describe("lookup --stdin", () => {
  const ids = [5, 0, 17, 49, 17, 3, 0];
  const text = "5 0\n\t17\r\n49   17\n3\f0";
  for (const build of ["simd", "scalar"] as const) {
    for (const mode of ["resident", "streaming"]) {
      it(`${build}, ${mode}: the rows of the one-shot command for ids separated by any white space, the last without a newline`, () => {
        const run = withStdin(text, ["--mode", mode], build);
        expect(run.stderr).toBe("");
        expect(run.exitCode).toBe(0);
        const oneShot = runWasiCommand(wasmPath({ build }), ["lookup", "--mode", mode, blob, ...ids.map(String)], preopens);
        expect(Buffer.from(run.stdout).equals(Buffer.from(oneShot.stdout))).toBe(true);
        const want = decodeTokens(parseBlob(bytes, "stdin"), ids);
        expect(Buffer.from(run.stdout).equals(Buffer.from(want.buffer))).toBe(true);
      });
    }
  }

  it("a token out of range mid-stream: exit 5 after exactly the rows before it", () => {
    const run = withStdin("1 2\n50 4\n", []);
    expect(run.exitCode).toBe(RUNTIME_EXIT.tokenRange);
    expect(run.stderr).toBe("carvq-rt: /blob/s.carvq: token 50 is out of range: the blob has 50 tokens (0 to 49) [exit 5]\n");
    expect(Buffer.from(run.stdout).equals(Buffer.from(decodeTokens(parseBlob(bytes, "stdin"), [1, 2]).buffer))).toBe(true);
  });

  it("a token that is not a whole number below 2^32: exit 2 after the rows before it", () => {
    const notNumber = withStdin("7 8x 9", []);
    expect(notNumber.exitCode).toBe(RUNTIME_EXIT.usage);
    expect(notNumber.stderr).toMatch(/^carvq-rt: lookup --stdin: token 2 is not a whole number/);
    expect(notNumber.stdout.byteLength).toBe(40 * 4);
    const tooBig = withStdin("7 4294967296", []);
    expect(tooBig.exitCode).toBe(RUNTIME_EXIT.usage);
    expect(tooBig.stderr).toMatch(/token 2 is not a whole number below 2\^32/);
    expect(tooBig.stdout.byteLength).toBe(40 * 4);
  });

  it("an empty stdin writes nothing and succeeds; a bad blob is refused before stdin is read; tokens on the command line are refused", () => {
    const empty = withStdin("", []);
    expect([empty.exitCode, empty.stdout.byteLength, empty.stderr]).toEqual([0, 0, ""]);
    const corrupt = bytes.slice();
    corrupt[corrupt.length - 1] ^= 1;
    writeFileSync(join(dir, "bad.carvq"), corrupt);
    const file = join(dir, "stdin-bad");
    writeFileSync(file, "1 2 3");
    const bad = runWasiCommand(wasmPath({ build: "simd" }), ["lookup", "--stdin", `${GUEST}/bad.carvq`], preopens, { stdinFile: file });
    expect(bad.exitCode).toBe(RUNTIME_EXIT.badBlob);
    expect(bad.stdout.byteLength).toBe(0);
    const extra = runWasiCommand(wasmPath({ build: "simd" }), ["lookup", "--stdin", blob, "1"], preopens);
    expect(extra.exitCode).toBe(RUNTIME_EXIT.usage);
    expect(extra.stderr).toMatch(/the tokens come from stdin, not the command line/);
  });
});
