// Named hostile model files: each lying header field gets one clear refusal (file, field, value,
// what was expected) before anything it claims is allocated or looped over, and in bounded time.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { FieldSink, writeField } from "../tools/dev/fuzz/fields.ts";
import { modelSeeds, type ModelSeed } from "../tools/dev/fuzz/seeds.ts";
import { listTensors, loadMatrix } from "../tools/readers/index.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "carvq-readers-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const seeds = modelSeeds();
function seed(name: string): ModelSeed {
  const s = seeds.find((x) => x.name === name);
  if (!s) throw new Error(`no model seed ${name}`);
  return s;
}

/** The seed with field `field` (by name) set to `value`. */
function withField(name: string, field: string, value: bigint): Uint8Array {
  const s = seed(name);
  const f = s.fields.find((x) => x.name === field);
  if (!f) throw new Error(`${name} has no field ${field}: ${s.fields.map((x) => x.name).join(", ")}`);
  const bytes = s.bytes.slice();
  writeField(bytes, f, value);
  return bytes;
}

/** The seed's text header (JSON or Python dict) replaced, its length field updated. */
function withText(name: string, edit: (text: string) => string): Uint8Array {
  const s = seed(name);
  const region = s.text[0];
  const text = new TextDecoder("latin1").decode(s.bytes.subarray(region.offset, region.offset + region.length));
  const edited = new TextEncoder().encode(edit(text));
  const out = new Uint8Array(s.bytes.length - region.length + edited.length);
  out.set(s.bytes.subarray(0, region.offset));
  out.set(edited, region.offset);
  out.set(s.bytes.subarray(region.offset + region.length), region.offset + edited.length);
  if (region.lengthField) writeField(out, region.lengthField, BigInt(edited.length));
  return out;
}

/** A GGUF file whose only metadata value nests arrays `depth` deep. */
function deepGguf(depth: number): Uint8Array {
  const s = new FieldSink();
  s.u32("magic", 0x46554747);
  s.u32("version", 3);
  s.u64("tensor count", 0);
  s.u64("metadata count", 1);
  s.string("key", "fuzz.deep");
  s.u32("type", 9);
  for (let d = 0; d < depth; d++) {
    s.u32("element type", d + 1 < depth ? 9 : 0);
    s.u64("length", 1);
  }
  s.bytes(new Uint8Array(1));
  return s.result();
}

const U64_MAX = (1n << 64n) - 1n;

const cases: [string, string, () => Uint8Array, RegExp][] = [
  // safetensors
  [
    "safetensors",
    "header length 2^64 - 1",
    () => withField("safetensors-f32", "header length", U64_MAX),
    /header length is 18446744073709551615 bytes; expected at most 100000000/,
  ],
  [
    "safetensors",
    "header length past the end of the file",
    () => withField("safetensors-f32", "header length", 100_000n),
    /header length is 100000 bytes but the file has only \d+ after it/,
  ],
  [
    "safetensors",
    "data_offsets beyond 2^53",
    () => withText("safetensors-f32", (t) => t.replace(/"data_offsets":\[0,768\]/, `"data_offsets":[0,9007199254740993]`)),
    /data_offsets is \[0,9007199254740992\]|data_offsets is \[0,9007199254740993\]|expected \[begin, end\]/,
  ],
  [
    "safetensors",
    "data_offsets past the end of the file",
    () => withText("safetensors-f32", (t) => t.replace(/"data_offsets":\[0,768\]/, `"data_offsets":[0,1000000]`)),
    /data_offsets \[0, 1000000\] end at byte \d+ but the file has \d+ bytes/,
  ],
  [
    "safetensors",
    "a shape of 2^32 x 2 values",
    () => withText("safetensors-f32", (t) => t.replace(/"shape":\[12,16\]/, `"shape":[4294967296,2]`)),
    /has shape \[4294967296, 2\], 8589934592 values; the readers accept at most 2147483648/,
  ],
  [
    "safetensors",
    "data_offsets that disagree with dtype x shape",
    () => withText("safetensors-f32", (t) => t.replace(/"shape":\[12,16\]/, `"shape":[12,15]`)),
    /data_offsets span 768 bytes; expected 720/,
  ],
  [
    "safetensors",
    "a negative dimension",
    () => withText("safetensors-f32", (t) => t.replace(/"shape":\[12,16\]/, `"shape":[-12,16]`)),
    /shape is \[-12,16\]; expected an array of non-negative integers/,
  ],
  [
    "safetensors",
    "an unsupported dtype",
    () => withText("safetensors-f32", (t) => t.replace(/"F32","shape":\[12,16\]/, `"I32","shape":[12,16]`)),
    /has dtype I32; expected F32, F16, BF16, F64/,
  ],
  [
    "safetensors",
    "a JSON header nested 50,000 deep",
    () => withText("safetensors-f16", (t) => "[".repeat(50_000) + "]".repeat(50_000) + " ".repeat(Math.max(0, t.length - 100_000))),
    /safetensors header is (not valid JSON|an array)/,
  ],
  // GGUF
  [
    "gguf",
    "tensor count 2^63",
    () => withField("gguf-v3-f32", "tensor count", 1n << 63n),
    /tensor count is 9223372036854775808; expected at most \d+ \(limit 1000000/,
  ],
  [
    "gguf",
    "metadata count 2^40",
    () => withField("gguf-v3-f32", "metadata count", 1n << 40n),
    /metadata count is 1099511627776; expected at most/,
  ],
  [
    "gguf",
    "a key length of 2^64 - 1",
    () => withField("gguf-v3-f32", "key general.architecture length", U64_MAX),
    /metadata key #0 length is 18446744073709551615 bytes; expected at most 65536/,
  ],
  [
    "gguf",
    "a skipped string value of 2^62 bytes",
    () => withField("gguf-v3-f32", "token length", 1n << 62n),
    /'tokenizer.ggml.tokens'\[0\] needs 4611686018427387904 bytes at offset \d+ but only \d+ remain/,
  ],
  [
    "gguf",
    "an array of 2^62 u8 values",
    () => withField("gguf-v3-f32", "nested array length", 1n << 62n),
    /array length is 4611686018427387904; expected at most/,
  ],
  ["gguf", "arrays nested 9 deep", () => deepGguf(9), /nests arrays 9 deep; expected at most 8/],
  ["gguf", "n_dims 5", () => withField("gguf-v3-f32", "tensor 0 n_dims", 5n), /n_dims 5; expected 1..4/],
  ["gguf", "a zero dimension", () => withField("gguf-v3-f32", "tensor 0 ne[0]", 0n), /ne\[0\] is 0; expected 1..9007199254740991/],
  [
    "gguf",
    "a dimension of 2^63",
    () => withField("gguf-v3-f32", "tensor 0 ne[1]", 1n << 63n),
    /ne\[1\] is 9223372036854775808; expected 1..9007199254740991/,
  ],
  [
    "gguf",
    "a tensor offset of 2^64 - 32",
    () => withField("gguf-v3-f32", "tensor 0 offset", U64_MAX - 31n),
    /has offset 18446744073709551584, past the end of the file/,
  ],
  [
    "gguf",
    "a tensor offset that is not aligned",
    () => withField("gguf-v3-f32", "tensor 0 offset", 4n),
    /has offset 4; expected a multiple of general.alignment 32/,
  ],
  [
    "gguf",
    "general.alignment 48",
    () => withField("gguf-v2-f16-align64", "general.alignment value", 48n),
    /general.alignment' is 48; expected a power of two/,
  ],
  [
    "gguf",
    "a block-quantized embedding whose rows are not whole blocks",
    () => withField("gguf-v3-f32", "tensor 0 type", 12n),
    /has ne\[0\] 16; Q4_K stores whole blocks of 256 values/,
  ],
  [
    "gguf",
    "a dimension that runs the embedding into the next tensor's data",
    () => withField("gguf-v3-f32", "tensor 0 ne[1]", 13n),
    /tensor 'token_embd.weight' \(F32 \[16, 13\] at byte \d+\) runs into tensor 'output_norm.weight' at byte \d+/,
  ],
  ["gguf", "two tensors at the same offset", () => withField("gguf-v3-f32", "tensor 1 offset", 0n), /runs into tensor/],
  [
    "gguf",
    "data running past the end of the file",
    () => withField("gguf-v2-f16-align64", "tensor 1 ne[1]", 10n),
    /tensor 'token_embd.weight' data spans bytes \d+\.\.\d+ but the file has \d+ bytes/,
  ],
  [
    "safetensors",
    "two tensors whose data_offsets overlap",
    () => withText("safetensors-bf16", (t) => t.replace(/"data_offsets":\[160,176\]/, `"data_offsets":[150,166]`)),
    /data at bytes \[\d+, \d+\) overlaps tensor 'lm_head.weight'|tensor 'positions' data at bytes/,
  ],
  // npy
  [
    "npy",
    "a v2 header length of 2^32 - 1",
    () => withField("npy-v2-f2", "header length", 0xffffffffn),
    /npy header length is 4294967295 bytes; expected at most 1048576/,
  ],
  [
    "npy",
    "a shape of 2^32 x 2",
    () => withText("npy-v1-f4", (t) => t.replace(/\(10, 8\)/, "(4294967296, 2)")),
    /npy shape \(4294967296, 2\) needs 34359738368 data bytes but the file has 320 after the header; the file is truncated/,
  ],
  [
    "npy",
    "a shape one row short (extra bytes)",
    () => withText("npy-v1-f4", (t) => t.replace(/\(10, 8\)/, "(9, 8)")),
    /needs 288 data bytes but the file has 320 after the header; the file has extra bytes/,
  ],
  [
    "npy",
    "a complex dtype",
    () => withText("npy-v1-f4", (t) => t.replace("'<f4'", "'<c8'")),
    /descr is '<c8'; expected a numeric type such as '<f4', '>f8' or '<f2'/,
  ],
  ["npy", "an object dtype", () => withText("npy-v1-f4", (t) => t.replace("'<f4'", "'|O'")), /descr is '\|O'; expected a numeric type/],
  ["npy", "version 4", () => withField("npy-v1-f4", "major version", 4n), /npy version is 4.0; expected 1.0, 2.0 or 3.0/],
  // llama2.c
  [
    "llama2c",
    "dim 2^20 (a header implying terabytes)",
    () => withField("llama2c-shared", "dim", 1n << 20n),
    /implies \d+ bytes but the file has \d+|impossible byte size/,
  ],
  [
    "llama2c",
    "n_layers 2^20 and hidden_dim 2^20",
    () => {
      const b = withField("llama2c-shared", "n_layers", 1n << 20n);
      new DataView(b.buffer).setInt32(4, 1 << 20, true);
      return b;
    },
    /implies \d+ bytes but the file has \d+|impossible byte size/,
  ],
  [
    "llama2c",
    "a negative n_heads",
    () => withField("llama2c-shared", "n_heads", -2n),
    /n_heads is -2; expected a value between 1 and 1048576/,
  ],
  [
    "llama2c",
    "vocab_size 0",
    () => withField("llama2c-separate", "vocab_size", 0n),
    /vocab_size is 0; expected a non-zero value between 1 and 1048576 in magnitude/,
  ],
];

describe("named hostile model files: one clear refusal each, before allocating", () => {
  for (const [format, what, make, message] of cases) {
    it(`${format}: ${what}`, () => {
      const ext = { safetensors: ".safetensors", gguf: ".gguf", npy: ".npy", llama2c: ".bin" }[format]!;
      const path = join(dir, `hostile${ext}`);
      writeFileSync(path, make());
      const before = process.memoryUsage().arrayBuffers;
      const t0 = performance.now();
      let err: unknown;
      try {
        loadMatrix(path);
      } catch (e) {
        err = e;
      }
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(err, `${what}: accepted`).toBeInstanceOf(CarvqError);
      const text = (err as Error).message;
      expect(text.startsWith(path), text).toBe(true);
      expect(text.includes("\n"), text).toBe(false);
      expect(text).toMatch(message);
      // Nothing the header claims was allocated (the files are a few kB).
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 2 ** 20);
      // Listing the tensors is as safe.
      try {
        listTensors(path);
      } catch (e) {
        expect(e).toBeInstanceOf(CarvqError);
      }
    });
  }

  it("names from the file reach messages escaped and cut: no terminal escapes, no bidi overrides, one line", () => {
    const evil = `\u001b]0;pwned\u0007\u001b[2J\u202eevil\u009b31m\n${"x".repeat(5000)}`;
    const path = join(dir, "evil.gguf");
    const s = new FieldSink();
    s.u32("magic", 0x46554747);
    s.u32("version", 3);
    s.u64("tensor count", 2);
    s.u64("metadata count", 0);
    for (const name of [evil, `${evil}2`]) {
      s.string("name", name);
      s.u32("n_dims", 2);
      s.u64("ne0", 2);
      s.u64("ne1", 2);
      s.u32("type", 0);
      s.u64("offset", name === evil ? 0 : 32);
    }
    s.padTo(32);
    s.bytes(new Uint8Array(48));
    writeFileSync(path, s.result());
    let message = "";
    try {
      loadMatrix(path);
    } catch (e) {
      expect(e).toBeInstanceOf(CarvqError);
      message = (e as Error).message;
    }
    expect(message).toMatch(/no token embedding among 2 tensors/);
    expect(message).toContain("\\x1b]0;pwned\\x07\\x1b[2J\\u{202e}evil\\x9b31m\\x0a");
    expect(message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    expect(message.length).toBeLessThan(2000);
  });

  it("the unmutated seeds read back exactly", () => {
    for (const s of seeds) {
      const path = join(dir, `seed${s.ext}`);
      writeFileSync(path, s.bytes);
      const loaded = loadMatrix(path);
      expect(loaded.tensor, s.name).toBe(s.expect.tensor);
      expect([loaded.matrix.rows, loaded.matrix.cols]).toEqual([s.expect.rows, s.expect.cols]);
      expect(Array.from(loaded.matrix.data)).toEqual(Array.from(s.expect.values));
    }
  });
});
