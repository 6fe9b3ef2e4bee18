import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expectSameMatrix, refusal } from "./helpers.ts";
import { afterAll, describe, expect, it } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { createRandom, deriveSeed } from "../tools/random.ts";
import { EMBEDDING_TENSOR_NAMES, listTensors, loadMatrix } from "../tools/readers/index.ts";
import { LLAMA2C_EMBEDDING_NAME, readLlama2cHeader } from "../tools/readers/llama2c.ts";
import { writeNpy } from "../tools/readers/npy.ts";
import {
  encodeMatrix,
  exactMatrix,
  ggufBytes,
  ggufQ8Tensor,
  ggufTensor,
  llama2cBytes,
  npyBytes,
  safetensorsBytes,
  safetensorsTensor,
  type FixtureDtype,
} from "./fixtures/writers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-readers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
/** Writes `bytes` to a fresh file in the temp dir and returns its path. */
function fixture(name: string, bytes: Uint8Array): string {
  const path = join(dir, `${fileCounter++}-${name}`);
  writeFileSync(path, bytes);
  return path;
}

/** Asserts `run` throws a one-line CarvqError whose message names the file and contains every fragment. */
function expectCarvqError(run: () => unknown, path: string, ...fragments: string[]): void {
  const message = refusal(run, path);
  for (const fragment of fragments) expect(message).toContain(fragment);
}

const DTYPES: readonly FixtureDtype[] = ["F32", "F16", "BF16"];

describe("safetensors", () => {
  it.each(DTYPES)("round-trips %s and auto-picks model.embed_tokens.weight", (dtype) => {
    const embedding = exactMatrix(12, 8);
    const path = fixture(
      "model.safetensors",
      safetensorsBytes([
        safetensorsTensor("lm_head.weight", exactMatrix(12, 8, 1), dtype),
        safetensorsTensor("model.embed_tokens.weight", embedding, dtype),
        { name: "model.norm.weight", dtype, shape: [8], data: new Uint8Array(8 * (dtype === "F32" ? 4 : 2)) },
      ]),
    );
    const loaded = loadMatrix(path, {});
    expect(loaded).toMatchObject({ tensor: "model.embed_tokens.weight", format: "safetensors", path, autoPicked: true });
    expectSameMatrix(loaded.matrix, embedding);
  });

  it("reads the tensor named by --tensor", () => {
    const head = exactMatrix(5, 4, 3);
    const path = fixture(
      "model.safetensors",
      safetensorsBytes([safetensorsTensor("model.embed_tokens.weight", exactMatrix(5, 4)), safetensorsTensor("lm_head.weight", head)]),
    );
    const loaded = loadMatrix(path, { tensor: "lm_head.weight" });
    expect(loaded.autoPicked).toBe(false);
    expect(loaded.tensor).toBe("lm_head.weight");
    expectSameMatrix(loaded.matrix, head);
  });

  it("is detected by content whatever the extension", () => {
    const path = fixture("weights.dat", safetensorsBytes([safetensorsTensor("wte.weight", exactMatrix(3, 2))]));
    expect(loadMatrix(path).format).toBe("safetensors");
  });

  it("refuses a tensor name that is not there, listing available names", () => {
    const path = fixture("model.safetensors", safetensorsBytes([safetensorsTensor("model.embed_tokens.weight", exactMatrix(4, 4))]));
    expectCarvqError(() => loadMatrix(path, { tensor: "nope" }), path, "tensor 'nope' not found", "model.embed_tokens.weight [4x4]");
  });

  it("refuses a 3-D tensor", () => {
    const path = fixture(
      "model.safetensors",
      safetensorsBytes([{ name: "conv", dtype: "F32", shape: [2, 3, 4], data: new Uint8Array(96) }]),
    );
    expectCarvqError(() => loadMatrix(path, { tensor: "conv" }), path, "tensor 'conv'", "[2, 3, 4]", "3-D", "expected a 2-D");
  });

  it("refuses an integer dtype, naming it", () => {
    const path = fixture("model.safetensors", safetensorsBytes([{ name: "x", dtype: "I64", shape: [2, 2], data: new Uint8Array(32) }]));
    expectCarvqError(() => loadMatrix(path, { tensor: "x" }), path, "tensor 'x' has dtype I64; expected F32, F16, BF16, F64");
  });

  it("refuses a header length past the 100 MB cap or past the file end", () => {
    const bytes = safetensorsBytes([safetensorsTensor("wte.weight", exactMatrix(3, 2))]);
    const huge = bytes.slice();
    new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
    const hugePath = fixture("model.safetensors", huge);
    expectCarvqError(() => loadMatrix(hugePath), hugePath, "header length is 1099511627776 bytes; expected at most 100000000");
    const long = bytes.slice();
    new DataView(long.buffer).setBigUint64(0, BigInt(bytes.length), true);
    const longPath = fixture("model.safetensors", long);
    expectCarvqError(() => loadMatrix(longPath), longPath, "header length", "truncated");
  });

  it("refuses a truncated file", () => {
    const bytes = safetensorsBytes([safetensorsTensor("wte.weight", exactMatrix(30, 20))]);
    const path = fixture("model.safetensors", bytes.subarray(0, bytes.length - 100));
    expectCarvqError(() => loadMatrix(path), path, "tensor 'wte.weight'", "data_offsets", "truncated");
  });

  it("refuses data_offsets that do not match dtype x shape", () => {
    const tensor = { ...safetensorsTensor("wte.weight", exactMatrix(4, 4)), dataOffsets: [0, 60] as const };
    const path = fixture("model.safetensors", safetensorsBytes([tensor]));
    expectCarvqError(() => loadMatrix(path), path, "tensor 'wte.weight'", "data_offsets span 60 bytes; expected 64");
  });

  it("refuses malformed header entries", () => {
    const badShape = { name: "wte.weight", dtype: "F32", shape: [-1, 4], data: new Uint8Array(16) };
    const path = fixture("model.safetensors", safetensorsBytes([badShape]));
    expectCarvqError(() => loadMatrix(path), path, "tensor 'wte.weight'", "shape is [-1,4]");
    const bytes = safetensorsBytes([safetensorsTensor("wte.weight", exactMatrix(2, 2))]);
    bytes[9] = 0x21; // break the JSON right after '{'
    const brokenPath = fixture("model.safetensors", bytes);
    expectCarvqError(() => loadMatrix(brokenPath), brokenPath, "header is not valid JSON");
  });

  it("refuses NaN and Inf, naming row and column", () => {
    const withNaN = exactMatrix(4, 5);
    withNaN.data[2 * 5 + 3] = Number.NaN;
    const nanPath = fixture("model.safetensors", safetensorsBytes([safetensorsTensor("wte.weight", withNaN)]));
    expectCarvqError(() => loadMatrix(nanPath), nanPath, "tensor 'wte.weight' has NaN at row 2, column 3; expected finite values");
    const withInf = exactMatrix(4, 5);
    withInf.data[3 * 5 + 0] = -Infinity;
    const infPath = fixture("model.safetensors", safetensorsBytes([safetensorsTensor("wte.weight", withInf, "F16")]));
    expectCarvqError(() => loadMatrix(infPath), infPath, "has -Infinity at row 3, column 0");
  });
});

describe("embedding auto-pick", () => {
  it.each(EMBEDDING_TENSOR_NAMES)("finds %s among other tensors", (name) => {
    const path = fixture(
      "model.safetensors",
      safetensorsBytes([safetensorsTensor("lm_head.weight", exactMatrix(2, 2)), safetensorsTensor(name, exactMatrix(3, 2))]),
    );
    const loaded = loadMatrix(path);
    expect(loaded.tensor).toBe(name);
    expect(loaded.autoPicked).toBe(true);
  });

  it("finds an embedding nested under a wrapper module", () => {
    const name = "model.language_model.embed_tokens.weight";
    const path = fixture(
      "model.safetensors",
      safetensorsBytes([safetensorsTensor("lm_head.weight", exactMatrix(2, 2)), safetensorsTensor(name, exactMatrix(3, 2))]),
    );
    expect(loadMatrix(path).tensor).toBe(name);
  });

  it("uses the only tensor of a file whatever its name", () => {
    const path = fixture("vectors.safetensors", safetensorsBytes([safetensorsTensor("vectors", exactMatrix(3, 2))]));
    expect(loadMatrix(path)).toMatchObject({ tensor: "vectors", autoPicked: true });
  });

  it("asks for --tensor when nothing looks like an embedding", () => {
    const path = fixture(
      "model.safetensors",
      safetensorsBytes([safetensorsTensor("a.weight", exactMatrix(2, 2)), safetensorsTensor("b.weight", exactMatrix(2, 2))]),
    );
    expectCarvqError(
      () => loadMatrix(path),
      path,
      "no token embedding among 2 tensors",
      "--tensor NAME",
      "a.weight [2x2]",
      "b.weight [2x2]",
    );
  });
});

describe("GGUF", () => {
  const vocabulary = ["<s>", "</s>", "hello", "wörld"];

  it.each(DTYPES)("round-trips %s, reading ne [cols, rows] as rows x cols", (dtype) => {
    const embedding = exactMatrix(6, 8);
    const path = fixture(
      "model.gguf",
      ggufBytes([ggufTensor("output_norm.weight", exactMatrix(1, 8)), ggufTensor("token_embd.weight", embedding, dtype)], { vocabulary }),
    );
    const loaded = loadMatrix(path);
    expect(loaded).toMatchObject({ tensor: "token_embd.weight", format: "gguf", autoPicked: true });
    expectSameMatrix(loaded.matrix, embedding);
  });

  it.each([2, 3])("reads version %i with a custom general.alignment", (version) => {
    const embedding = exactMatrix(5, 3);
    const path = fixture(
      "model.gguf",
      ggufBytes([ggufTensor("a", exactMatrix(1, 3)), ggufTensor("token_embd.weight", embedding, "F16")], { version, alignment: 64 }),
    );
    expectSameMatrix(loadMatrix(path).matrix, embedding);
  });

  it("lists tensors with outermost-first shapes", () => {
    const path = fixture(
      "model.gguf",
      ggufBytes([ggufTensor("token_embd.weight", exactMatrix(6, 8)), ggufQ8Tensor("blk.0.attn_q.weight", 8, 32)]),
    );
    expect(listTensors(path).tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ["token_embd.weight", "F32", [6, 8]],
      ["blk.0.attn_q.weight", "Q8_0", [8, 32]],
    ]);
  });

  it("refuses a block type it does not dequantize, naming its type", () => {
    const path = fixture("model.gguf", ggufBytes([{ name: "token_embd.weight", type: 16, ne: [256, 4], data: new Uint8Array(66 * 4) }]));
    expectCarvqError(
      () => loadMatrix(path),
      path,
      "tensor 'token_embd.weight' has dtype IQ2_XXS; expected F32, F16, BF16, F64 or a supported block type",
      "Q4_K",
    );
  });

  it("refuses a wrong version", () => {
    const path = fixture("model.gguf", ggufBytes([ggufTensor("token_embd.weight", exactMatrix(2, 2))], { version: 1 }));
    expectCarvqError(() => loadMatrix(path), path, "GGUF version is 1; expected 2 or 3");
  });

  it("refuses a tensor count the file cannot hold", () => {
    const bytes = ggufBytes([ggufTensor("token_embd.weight", exactMatrix(2, 2))]);
    new DataView(bytes.buffer).setBigUint64(8, 1n << 50n, true);
    const path = fixture("model.gguf", bytes);
    expectCarvqError(() => loadMatrix(path), path, "tensor count is 1125899906842624; expected at most");
  });

  it("refuses a string length past the end of the file", () => {
    const bytes = ggufBytes([ggufTensor("token_embd.weight", exactMatrix(2, 2))]);
    new DataView(bytes.buffer).setBigUint64(24, 1n << 40n, true); // length of the first metadata key
    const path = fixture("model.gguf", bytes);
    expectCarvqError(() => loadMatrix(path), path, "metadata key #0 length is 1099511627776 bytes; expected at most");
  });

  it("refuses a metadata array longer than the file", () => {
    const bytes = ggufBytes([ggufTensor("token_embd.weight", exactMatrix(2, 2))], { vocabulary });
    const arrayLengthAt = findBytes(bytes, new TextEncoder().encode("tokenizer.ggml.tokens")) + "tokenizer.ggml.tokens".length + 8;
    new DataView(bytes.buffer).setBigUint64(arrayLengthAt, 1n << 60n, true);
    const path = fixture("model.gguf", bytes);
    expectCarvqError(
      () => loadMatrix(path),
      path,
      "metadata 'tokenizer.ggml.tokens' array length is 1152921504606846976; expected at most",
    );
  });

  it("refuses a truncated file", () => {
    const bytes = ggufBytes([ggufTensor("token_embd.weight", exactMatrix(16, 16))]);
    const path = fixture("model.gguf", bytes.subarray(0, bytes.length - 10));
    expectCarvqError(() => loadMatrix(path), path, "tensor 'token_embd.weight' data", "truncated");
    const headerOnly = fixture("model.gguf", bytes.subarray(0, 70)); // cut inside the second metadata key
    expectCarvqError(
      () => loadMatrix(headerOnly),
      headerOnly,
      "metadata key #1 length needs 8 bytes at offset 69 but only 1 remain",
      "truncated",
    );
  });

  it("refuses offsets that are misaligned or past the end", () => {
    const tensors = [ggufTensor("token_embd.weight", exactMatrix(2, 2))];
    const misaligned = fixture("model.gguf", ggufBytes(tensors, { offsetOverrides: new Map([[0, 3n]]) }));
    expectCarvqError(
      () => loadMatrix(misaligned),
      misaligned,
      "tensor 'token_embd.weight' has offset 3; expected a multiple of general.alignment 32",
    );
    const past = fixture("model.gguf", ggufBytes(tensors, { offsetOverrides: new Map([[0, 1n << 62n]]) }));
    expectCarvqError(() => loadMatrix(past), past, "tensor 'token_embd.weight' has offset 4611686018427387904, past the end of the file");
  });

  it("refuses a 3-D tensor", () => {
    const path = fixture("model.gguf", ggufBytes([{ name: "t", type: 0, ne: [2, 2, 2], data: new Uint8Array(32) }]));
    expectCarvqError(() => loadMatrix(path, { tensor: "t" }), path, "tensor 't' has shape [2, 2, 2] (3-D)");
  });
});

function findBytes(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("needle not found");
}

describe("npy", () => {
  it("round-trips writeNpy (<f4, v1) and reports the array", () => {
    const matrix = exactMatrix(9, 7);
    const path = join(dir, "written.npy");
    writeNpy(path, matrix, false);
    const bytes = readFileSync(path);
    expect((bytes.length - 9 * 7 * 4) % 64).toBe(0); // data starts on a 64-byte boundary
    const loaded = loadMatrix(path);
    expect(loaded).toMatchObject({ tensor: "array", format: "npy", autoPicked: true });
    expectSameMatrix(loaded.matrix, matrix);
    expectCarvqError(() => writeNpy(path, matrix, false), path, "already exists");
  });

  it.each([1, 2, 3])("reads <f2 with a version %i header", (version) => {
    const matrix = exactMatrix(4, 6);
    const path = fixture("half.npy", npyBytes({ descr: "<f2", shape: [4, 6], data: encodeMatrix(matrix, "F16"), version }));
    expectSameMatrix(loadMatrix(path).matrix, matrix);
  });

  it("refuses non-numeric and integer dtypes", () => {
    const data = new Uint8Array(4 * 4 * 8);
    const complex = fixture("a.npy", npyBytes({ descr: "<c8", shape: [4, 4], data }));
    expectCarvqError(() => loadMatrix(complex), complex, "descr is '<c8'; expected a numeric type such as '<f4', '>f8' or '<f2'");
    const ints = fixture("a.npy", npyBytes({ descr: "<i8", shape: [4, 4], data: data.subarray(0, 128) }));
    expectCarvqError(() => loadMatrix(ints), ints, "tensor 'array' has dtype I64; expected F32, F16, BF16, F64");
  });

  it("refuses data shorter or longer than the shape", () => {
    const short = fixture("a.npy", npyBytes({ shape: [4, 4], data: new Uint8Array(60) }));
    expectCarvqError(() => loadMatrix(short), short, "npy shape (4, 4) needs 64 data bytes but the file has 60", "truncated");
    const long = fixture("a.npy", npyBytes({ shape: [4, 4], data: new Uint8Array(68) }));
    expectCarvqError(() => loadMatrix(long), long, "extra bytes");
  });

  it("refuses a 1-D array and a header without shape", () => {
    const flat = fixture("a.npy", npyBytes({ shape: [16], data: new Uint8Array(64) }));
    expectCarvqError(() => loadMatrix(flat), flat, "tensor 'array' has shape [16] (1-D)");
    const bytes = npyBytes({ shape: [2, 2], data: new Uint8Array(16) });
    bytes.set(new TextEncoder().encode("'shapf'"), findBytes(bytes, new TextEncoder().encode("'shape'")));
    const noShape = fixture("a.npy", bytes);
    expectCarvqError(() => loadMatrix(noShape), noShape, "lacks 'descr', 'fortran_order' or 'shape'");
  });

  it("refuses --tensor names other than its one array", () => {
    const path = fixture("a.npy", npyBytes({ shape: [2, 2], data: new Uint8Array(16) }));
    expectCarvqError(() => loadMatrix(path, { tensor: "embed" }), path, "tensor 'embed' not found; available: array [2x2]");
  });
});

describe("llama2.c", () => {
  const config = { dim: 8, hiddenDim: 12, nLayers: 2, nHeads: 2, nKvHeads: 1, seqLen: 4 };

  it.each([false, true])("round-trips the token embedding (separate classifier: %s)", (separateClassifier) => {
    const embedding = exactMatrix(10, 8);
    const path = fixture("model.bin", llama2cBytes({ ...config, separateClassifier }, embedding));
    const loaded = loadMatrix(path);
    expect(loaded).toMatchObject({ tensor: LLAMA2C_EMBEDDING_NAME, format: "llama2c", autoPicked: true });
    expectSameMatrix(loaded.matrix, embedding);
    const checkpoint = readLlama2cHeader(path);
    expect(checkpoint.config).toMatchObject({ dim: 8, vocabSize: 10, sharedClassifier: !separateClassifier });
    expect(checkpoint.classifierName).toBe(separateClassifier ? "wcls" : LLAMA2C_EMBEDDING_NAME);
    expect(checkpoint.tensors[1]).toMatchObject({ name: "rms_att_weight", shape: [2, 8], offset: 28 + 10 * 8 * 4 });
  });

  it("reads another weight by name", () => {
    const path = fixture("model.bin", llama2cBytes(config, exactMatrix(10, 8)));
    const rmsAtt = loadMatrix(path, { tensor: "rms_att_weight" }).matrix;
    expect([rmsAtt.rows, rmsAtt.cols]).toEqual([2, 8]);
  });

  it("refuses a file whose size does not match its header", () => {
    const bytes = llama2cBytes(config, exactMatrix(10, 8));
    const path = fixture("model.bin", bytes.subarray(0, bytes.length - 4));
    expectCarvqError(() => loadMatrix(path), path, "implies", `bytes but the file has ${bytes.length - 4}`);
  });

  it("refuses a nonsense header", () => {
    const bytes = new Uint8Array(256).fill(0xff);
    const path = fixture("random.bin", bytes);
    expectCarvqError(() => loadMatrix(path), path, "llama2.c header dim is -1");
  });
});

describe("files that are not models", () => {
  it("refuses a missing file", () => {
    const path = join(dir, "missing.safetensors");
    expectCarvqError(() => loadMatrix(path), path, "cannot open (no such file)");
  });

  it("refuses a folder with no model file, listing what it holds", () => {
    const path = join(dir, "folder");
    mkdirSync(path);
    expectCarvqError(() => loadMatrix(path), path, "a folder with no model.safetensors.index.json, model.safetensors", "(files: none)");
  });

  it("refuses an empty file and unknown content", () => {
    const empty = fixture("empty.safetensors", new Uint8Array(0));
    expectCarvqError(() => loadMatrix(empty), empty, "file is empty");
    const text = fixture("notes.txt", new TextEncoder().encode("just some text, not a model at all"));
    expectCarvqError(
      () => loadMatrix(text),
      text,
      "unknown format (first bytes 6a 75 73 74",
      "expected safetensors, GGUF, .npy, .npz, a PyTorch .bin, a llama2.c checkpoint or a Hugging Face model folder",
    );
  });

  it("names the path as given in messages", () => {
    const path = fixture("x.txt", new TextEncoder().encode("nope nope nope"));
    expect(() => loadMatrix(path)).toThrow(basename(path));
  });
});

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "..");
const storiesPath = resolve(repoRoot, "../shared/models/stories260K.bin");
const storiesPresent = existsSync(storiesPath);

describe.skipIf(!storiesPresent)(
  storiesPresent
    ? "stories260K.bin (real llama2.c model)"
    : `stories260K.bin: skipped, ${storiesPath} not found (the models folder ../shared/models sits beside the checkout)`,
  () => {
    it("reads the 512 x 64 token embedding with finite values", () => {
      const loaded = loadMatrix(storiesPath);
      expect(loaded).toMatchObject({ format: "llama2c", tensor: LLAMA2C_EMBEDDING_NAME, autoPicked: true });
      expect([loaded.matrix.rows, loaded.matrix.cols]).toEqual([512, 64]);
      expect(loaded.matrix.data.every(Number.isFinite)).toBe(true);
      const spread = Math.max(...loaded.matrix.data) - Math.min(...loaded.matrix.data);
      expect(spread).toBeGreaterThan(0.1); // real trained weights, not zeros
      const checkpoint = readLlama2cHeader(storiesPath);
      expect(checkpoint.config).toEqual({
        dim: 64,
        hiddenDim: 172,
        nLayers: 5,
        nHeads: 8,
        nKvHeads: 4,
        vocabSize: 512,
        seqLen: 512,
        sharedClassifier: true,
      });
    });
  },
);

describe("corrupted headers", () => {
  // Seeded byte flips in the first 200 bytes of valid files: each load must succeed or throw a
  // CarvqError naming the file; never a RangeError, a hang or a huge allocation.
  const originals: [string, Uint8Array][] = [
    ["m.safetensors", safetensorsBytes([safetensorsTensor("model.embed_tokens.weight", exactMatrix(8, 8), "BF16")])],
    [
      "m.gguf",
      ggufBytes([ggufTensor("token_embd.weight", exactMatrix(8, 8), "F16"), ggufQ8Tensor("q", 2, 32)], {
        vocabulary: ["a", "b", "c"],
        alignment: 16,
      }),
    ],
    ["m.npy", npyBytes({ shape: [8, 8], data: encodeMatrix(exactMatrix(8, 8), "F32") })],
    ["m.bin", llama2cBytes({ dim: 8, hiddenDim: 12, nLayers: 1, nHeads: 2, nKvHeads: 1, seqLen: 4 }, exactMatrix(8, 8))],
  ];
  it.each(originals)("%s: 300 mutations give a matrix or a CarvqError", (name, original) => {
    const random = createRandom(deriveSeed(original.length));
    for (let trial = 0; trial < 300; trial++) {
      const bytes = original.slice();
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) bytes[Math.floor(random() * Math.min(200, bytes.length))] = Math.floor(random() * 256);
      const path = fixture(name, bytes);
      try {
        loadMatrix(path);
      } catch (err) {
        expect(err, String(err)).toBeInstanceOf(CarvqError);
        expect((err as Error).message.startsWith(path)).toBe(true);
      }
      rmSync(path);
    }
  });
});
