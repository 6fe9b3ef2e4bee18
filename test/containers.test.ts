import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectSameMatrix, refusal } from "./helpers.ts";
import { afterAll, describe, expect, it } from "vitest";
import type { Matrix } from "../tools/matrix.ts";
import { openCheckpoint } from "../tools/readers/checkpoint.ts";
import { listTensors, loadMatrix } from "../tools/readers/index.ts";
import { PickleWriter, stateDictPickle, torchZipBytes, zipBytes, type TorchTensor } from "./fixtures/checkpoints.ts";
import { encodeMatrix, exactMatrix, npyBytes } from "./fixtures/writers.ts";

const dir = mkdtempSync(join(tmpdir(), "carvq-containers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
function fixture(name: string, bytes: Uint8Array): string {
  const path = join(dir, `${counter++}-${name}`);
  writeFileSync(path, bytes);
  return path;
}

/** `matrix` as `bytes`-wide floats, little- or big-endian, in C or Fortran order. */
function encodeFloats(matrix: Matrix, bytes: 2 | 4 | 8, bigEndian: boolean, fortran: boolean): Uint8Array {
  const order: number[] = [];
  for (let i = 0; i < matrix.rows * matrix.cols; i++) {
    const [r, c] = fortran ? [i % matrix.rows, Math.floor(i / matrix.rows)] : [Math.floor(i / matrix.cols), i % matrix.cols];
    order.push(matrix.data[r * matrix.cols + c]);
  }
  const ordered = { rows: matrix.rows, cols: matrix.cols, data: Float32Array.from(order) };
  let out: Uint8Array;
  if (bytes === 2) out = encodeMatrix(ordered, "F16");
  else if (bytes === 4) out = encodeMatrix(ordered, "F32");
  else out = new Uint8Array(Float64Array.from(order).buffer);
  if (bigEndian) for (let at = 0; at < out.length; at += bytes) out.subarray(at, at + bytes).reverse();
  return out;
}

describe(".npy in every float form numpy writes for a 2-D array", () => {
  const forms = [2, 4, 8].flatMap((size) =>
    ["<", ">"].flatMap((order) => [false, true].map((fortran) => ({ size: size as 2 | 4 | 8, order, fortran }))),
  );
  it.each(forms)("reads $order f$size, fortran_order $fortran", ({ size, order, fortran }) => {
    const matrix = exactMatrix(5, 3, size);
    const path = fixture(
      "table.npy",
      npyBytes({
        descr: `${order}f${size}`,
        fortranOrder: fortran,
        shape: [5, 3],
        data: encodeFloats(matrix, size, order === ">", fortran),
      }),
    );
    const loaded = loadMatrix(path);
    expect(loaded.dtype).toBe({ 2: "F16", 4: "F32", 8: "F64" }[size]);
    expectSameMatrix(loaded.matrix, matrix);
  });
});

describe(".npz", () => {
  it.each([false, true])("reads stored and deflated members (deflate: %s), picking the embedding by name", (deflate) => {
    const embedding = exactMatrix(6, 4);
    const other = exactMatrix(2, 4, 1);
    const path = fixture(
      "weights.npz",
      zipBytes([
        { name: "lm_head.weight.npy", data: npyBytes({ shape: [2, 4], data: encodeMatrix(other, "F32") }), deflate },
        {
          name: "model.embed_tokens.weight.npy",
          data: npyBytes({ descr: "<f2", shape: [6, 4], data: encodeMatrix(embedding, "F16") }),
          deflate,
        },
      ]),
    );
    const loaded = loadMatrix(path);
    expect(loaded).toMatchObject({ tensor: "model.embed_tokens.weight", format: "npz", dtype: "F16" });
    expectSameMatrix(loaded.matrix, embedding);
    expectSameMatrix(loadMatrix(path, { tensor: "lm_head.weight" }).matrix, other);
  });

  it("takes the only member of np.save-style archives whatever its name", () => {
    const matrix = exactMatrix(3, 3, 2);
    const path = fixture(
      "table.npz",
      zipBytes([
        {
          name: "arr_0.npy",
          data: npyBytes({ descr: ">f8", fortranOrder: true, shape: [3, 3], data: encodeFloats(matrix, 8, true, true) }),
          deflate: true,
        },
      ]),
    );
    expectSameMatrix(loadMatrix(path).matrix, matrix);
  });

  it("refuses a deflated member that states far more bytes than its compressed size allows (a zip bomb), before inflating", () => {
    const bytes = zipBytes([{ name: "emb.npy", data: npyBytes({ shape: [4, 4], data: new Uint8Array(64) }), deflate: true }]).slice();
    const view = new DataView(bytes.buffer);
    let central = bytes.length - 22;
    while (view.getUint32(central, true) !== 0x02014b50) central--;
    view.setUint32(central + 24, 2 ** 30, true); // the directory's uncompressed size: 1 GiB
    const path = fixture("bomb.npz", bytes);
    expect(refusal(() => loadMatrix(path), path)).toMatch(
      /member 'emb\.npy' states 1073741824 bytes from \d+ compressed \(\d+:1\); refusing more than 32:1/,
    );
  });

  it("refuses a member whose data disagrees with its header, and a truncated archive", () => {
    const good = zipBytes([{ name: "a.npy", data: npyBytes({ shape: [4, 4], data: new Uint8Array(60) }) }]);
    const short = fixture("short.npz", good);
    expect(refusal(() => loadMatrix(short), short)).toContain(
      "member 'a.npy': npy shape (4, 4) needs 64 data bytes but the file has 60 after the header",
    );
    const whole = zipBytes([{ name: "a.npy", data: npyBytes({ shape: [4, 4], data: new Uint8Array(64) }) }]);
    const cut = fixture("cut.npz", whole.subarray(0, whole.length - 30));
    expect(refusal(() => loadMatrix(cut), cut)).toContain("zip end-of-central-directory record not found");
  });
});

/** Storages as torch writes them: one little-endian member per key. */
function storagesOf(entries: [string, Uint8Array][]): Map<string, Uint8Array> {
  return new Map(entries);
}

describe("PyTorch zip checkpoints (pytorch_model.bin)", () => {
  const embedding = exactMatrix(8, 4);
  const head = exactMatrix(8, 4, 3);

  function checkpoint(
    tensors: TorchTensor[],
    storages: Map<string, Uint8Array>,
    options: { byteorder?: string; archive?: string; zip64?: boolean } = {},
  ): string {
    return fixture("pytorch_model.bin", torchZipBytes(stateDictPickle(tensors), storages, options));
  }

  it("reads a state dict of F32, F16 and BF16 tensors without running anything", () => {
    const path = checkpoint(
      [
        { name: "model.embed_tokens.weight", storageType: "BFloat16Storage", key: "0", storageNumel: 32, shape: [8, 4] },
        { name: "lm_head.weight", storageType: "HalfStorage", key: "1", storageNumel: 32, shape: [8, 4] },
        { name: "model.norm.weight", storageType: "FloatStorage", key: "2", storageNumel: 4, shape: [4] },
      ],
      storagesOf([
        ["0", encodeMatrix(embedding, "BF16")],
        ["1", encodeMatrix(head, "F16")],
        ["2", encodeMatrix(exactMatrix(1, 4, 5), "F32")],
      ]),
    );
    const loaded = loadMatrix(path);
    expect(loaded).toMatchObject({ tensor: "model.embed_tokens.weight", format: "pytorch", dtype: "BF16" });
    expectSameMatrix(loaded.matrix, embedding);
    expectSameMatrix(loadMatrix(path, { tensor: "lm_head.weight" }).matrix, head);
    expect(listTensors(path).tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([
      ["model.embed_tokens.weight", "BF16", [8, 4]],
      ["lm_head.weight", "F16", [8, 4]],
      ["model.norm.weight", "F32", [4]],
    ]);
  });

  it("reads views: a storage shared at an offset, a transposed view, a big-endian archive", async () => {
    const both = new Float32Array([...embedding.data, ...head.data]);
    const transposedSource = exactMatrix(4, 8, 7); // stored 4 x 8; the tensor is its transpose, 8 x 4
    const transposed = { rows: 8, cols: 4, data: new Float32Array(32) };
    for (let r = 0; r < 8; r++) for (let c = 0; c < 4; c++) transposed.data[r * 4 + c] = transposedSource.data[c * 8 + r];
    const path = checkpoint(
      [
        { name: "model.embed_tokens.weight", storageType: "FloatStorage", key: "0", storageNumel: 64, shape: [8, 4] },
        { name: "lm_head.weight", storageType: "FloatStorage", key: "0", storageNumel: 64, offset: 32, shape: [8, 4] },
        { name: "proj.weight", storageType: "FloatStorage", key: "1", storageNumel: 32, shape: [8, 4], stride: [1, 8] },
      ],
      storagesOf([
        ["0", new Uint8Array(both.buffer)],
        ["1", encodeMatrix(transposedSource, "F32")],
      ]),
    );
    const opened = await openCheckpoint(path);
    expect(Array.from(await opened.readF32("lm_head.weight"))).toEqual(Array.from(head.data));
    expect(Array.from(await opened.readF32("proj.weight"))).toEqual(Array.from(transposed.data));
    expect(Array.from(await opened.readRaw("proj.weight"))).toEqual(Array.from(encodeMatrix(transposedSource, "F32")));
    const big = encodeMatrix(embedding, "F32").slice();
    for (let at = 0; at < big.length; at += 4) big.subarray(at, at + 4).reverse();
    const bigPath = checkpoint(
      [{ name: "wte.weight", storageType: "FloatStorage", key: "0", storageNumel: 32, shape: [8, 4] }],
      storagesOf([["0", big]]),
      { byteorder: "big", archive: "pytorch_model" },
    );
    expectSameMatrix(loadMatrix(bigPath).matrix, embedding);
  });

  it("reads a bare pickled tensor (torch.save(tensor)) as 'tensor'", () => {
    const pickle = new PickleWriter()
      .proto(2)
      .global("torch._utils", "_rebuild_tensor_v2")
      .mark()
      .mark()
      .string("storage")
      .global("torch", "FloatStorage")
      .string("0")
      .string("cpu")
      .int(32)
      .tuple()
      .op(0x51)
      .int(0)
      .ints([8, 4])
      .ints([4, 1])
      .op(0x89)
      .global("collections", "OrderedDict")
      .emptyTuple()
      .reduce()
      .tuple()
      .reduce()
      .stop()
      .bytes();
    const path = fixture("table.pt", torchZipBytes(pickle, storagesOf([["0", encodeMatrix(embedding, "F32")]])));
    const loaded = loadMatrix(path);
    expect(loaded.tensor).toBe("tensor");
    expectSameMatrix(loaded.matrix, embedding);
  });

  it("reads the ZIP64 form torch.save writes for checkpoints over 4 GiB", () => {
    const path = checkpoint(
      [{ name: "model.embed_tokens.weight", storageType: "FloatStorage", key: "0", storageNumel: 32, shape: [8, 4] }],
      storagesOf([["0", encodeMatrix(embedding, "F32")]]),
      { zip64: true },
    );
    expectSameMatrix(loadMatrix(path).matrix, embedding);
  });

  it("refuses a view that runs past its storage, naming the tensor", () => {
    const path = checkpoint(
      [{ name: "wte.weight", storageType: "FloatStorage", key: "0", storageNumel: 32, offset: 8, shape: [8, 4] }],
      storagesOf([["0", encodeMatrix(embedding, "F32")]]),
    );
    expect(refusal(() => loadMatrix(path), path)).toContain(
      "tensor 'wte.weight': spans bytes 32..160 of its storage 'archive/data/0', which has 128",
    );
  });
});

describe("hostile pickles: refused in one line naming the opcode or global, nothing run", () => {
  const command = (module: string, name: string) =>
    new PickleWriter().proto(2).global(module, name).string("touch /tmp/carvq-pwned").op(0x85).reduce().stop().bytes();
  const hostile: [string, Uint8Array, string][] = [
    ["a __reduce__ to os.system", command("posix", "system"), "global 'posix.system' is not one a tensor state dict uses"],
    ["builtins.eval", command("builtins", "eval"), "global 'builtins.eval' is not one a tensor state dict uses"],
    [
      "an unknown global (numpy's array reconstructor)",
      command("numpy.core.multiarray", "_reconstruct"),
      "global 'numpy.core.multiarray._reconstruct' is not one",
    ],
    [
      "NEWOBJ",
      new PickleWriter().proto(2).global("collections", "OrderedDict").emptyTuple().op(0x81).stop().bytes(),
      "opcode NEWOBJ (0x81) would construct an arbitrary object",
    ],
    [
      "STACK_GLOBAL to subprocess",
      new PickleWriter().proto(4).string("subprocess").string("Popen").op(0x93).stop().bytes(),
      "global 'subprocess.Popen' is not one",
    ],
    ["REDUCE on a string", new PickleWriter().proto(2).string("os").emptyTuple().reduce().stop().bytes(), "REDUCE on 'os'"],
    [
      "a pickle cut short",
      stateDictPickle([{ name: "w", storageType: "FloatStorage", key: "0", storageNumel: 4, shape: [2, 2] }]).subarray(0, 40),
      "truncated",
    ],
  ];
  it.each(hostile)("%s", (_what, pickle, fragment) => {
    const path = fixture("pytorch_model.bin", torchZipBytes(pickle, new Map([["0", new Uint8Array(16)]])));
    const message = refusal(() => loadMatrix(path), path);
    expect(message).toContain(`pickle 'archive/data.pkl' at byte`);
    expect(message).toContain(fragment);
  });

  it("refuses a truncated zip, and a bare (legacy) pickle", () => {
    const whole = torchZipBytes(
      stateDictPickle([{ name: "w", storageType: "FloatStorage", key: "0", storageNumel: 4, shape: [2, 2] }]),
      new Map([["0", new Uint8Array(16)]]),
    );
    const cut = fixture("pytorch_model.bin", whole.subarray(0, whole.length - 40));
    expect(refusal(() => loadMatrix(cut), cut)).toContain("zip end-of-central-directory record not found in the last");
    const legacy = fixture("old.pt", command("posix", "system"));
    expect(refusal(() => loadMatrix(legacy), legacy)).toContain("a bare pickle (PyTorch's legacy format");
  });
});
