// The valid inputs the fuzzer mutates: carvq blobs of every kind the tools write (v1.0 and v1.1
// with ROW_SCALES, RVQ in the row and column-block layouts, scalar int4/int3/int2, edge shapes),
// blobs of random shapes, and small model files of every format the readers take, each with a map
// of its header fields so the mutator can edit them one at a time.
import * as F from "../../../assembly/format.ts";
import { randomBlob } from "../../blob/random.ts";
import { drawFloatAdaptor, type DrawScales } from "../../adaptor/model.ts";
import { quantizeAdaptor } from "../../adaptor/quantize.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "../../blob/adaptor.ts";
import { deriveHeader } from "../../blob/header.ts";
import { assembleBlob } from "../../blob/writer.ts";
import { compressMatrix, type CompressOptions } from "../../compress.ts";
import { f32ToF16 } from "../../fp16.ts";
import type { Matrix } from "../../matrix.ts";
import type { ModelFormat } from "../../readers/tensor.ts";
import { FieldSink, type Field, type TextRegion } from "./fields.ts";
import type { Rng } from "./rng.ts";
import { RVQ_METHOD } from "../../quant/methods.ts";

/** Value spreads of the fuzzer's random adaptors. */
const ADAPTOR_SCALES: DrawScales = { table: 2, weights: 1, bias: 0.2 };

// ---------------------------------------------------------------------------------------------- blobs

export interface BlobSeed {
  name: string;
  bytes: Uint8Array;
}

/** A matrix of smooth, varied values (some rows longer than others), the same on every machine. */
export function seedMatrix(rows: number, cols: number, salt: number): Matrix {
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const gain = 0.25 + ((r * 7 + salt) % 11) / 4;
    for (let c = 0; c < cols; c++) data[r * cols + c] = gain * Math.sin(0.37 * (r + 1) * (c + 1 + salt) + 0.11 * salt);
  }
  return { rows, cols, data };
}

/** Blobs written by `compressMatrix` (the real writer), one of each kind. Takes well under a second. */
export async function compressedBlobSeeds(): Promise<BlobSeed[]> {
  const kinds: [string, number, number, Partial<CompressOptions>][] = [
    ["rvq-row-v1.0", 48, 37, { h: 8, levels: 2, group: 12, layout: "row" }],
    ["rvq-col-v1.0", 40, 37, { h: 8, levels: 3, group: 5, layout: "col" }],
    ["rvq-row-v1.1-rowscale16", 48, 37, { h: 4, levels: 2, group: 16, layout: "row", rowScaleCount: 16 }],
    ["rvq-col-v1.1-rowscale16", 40, 24, { h: 8, levels: 2, group: 6, layout: "col", rowScaleCount: 16 }],
    ["rvq-V1", 1, 16, { h: 8, levels: 2, group: 4 }],
    ["int4", 24, 37, { method: "int4", block: 16 }],
    ["int3", 24, 37, { method: "int3", block: 8 }],
    ["int2", 24, 37, { method: "int2", block: 37 }],
  ];
  const seeds: BlobSeed[] = [];
  for (const [i, [name, rows, cols, options]] of kinds.entries()) {
    seeds.push({
      name,
      bytes: (await compressMatrix(seedMatrix(rows, cols, i), { iters: 2, seed: i, ...options }, { source: `${name}.npy` })).bytes,
    });
  }
  return [...seeds, ...(await adaptorBlobSeeds())];
}

/** v1.2 blobs with a corrective adaptor (int8 and FP16), over an RVQ blob with and without row scales. */
async function adaptorBlobSeeds(): Promise<BlobSeed[]> {
  const out: BlobSeed[] = [];
  for (const [k, precision, rowScale] of [
    [0, "int8", 0],
    [1, "fp16", 8],
  ] as const) {
    const rows = 30;
    const cols = 12;
    const { blob: base, bytes: file } = await compressMatrix(seedMatrix(rows, cols, 20 + k), {
      h: 4,
      levels: 2,
      group: 16,
      iters: 2,
      rowScaleCount: rowScale,
    });
    const widths = k === 0 ? [4, 8, cols] : [3, 6, 5, cols];
    let state = 0x1234 + k;
    const value = (scale: number) => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return ((state >>> 8) / 2 ** 24 - 0.5) * scale;
    };
    const adaptor = drawFloatAdaptor(rows, widths, value, ADAPTOR_SCALES);
    const stored = quantizeAdaptor(adaptor, precision);
    const section = (id: number) => {
      const e = base.sections.find((x) => x.id === id);
      return e ? [{ id, bytes: file.slice(e.offset, e.offset + e.length) }] : [];
    };
    const bytes = assembleBlob(deriveHeader({ ...base.header, adapted: true }), [
      ...section(F.SECTION_CODES),
      ...section(F.SECTION_CODEBOOKS),
      ...section(F.SECTION_ROW_SCALES),
      { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(stored) },
      { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(stored) },
      ...section(F.SECTION_METADATA),
    ]);
    out.push({ name: `rvq-v1.2-adaptor-${precision}${rowScale ? "-rowscale" : ""}`, bytes });
  }
  return out;
}

/** A valid blob of a random small shape (any method, layout, h, L, g, R; n < h, V = 1 included). */
export function randomShapeBlob(rng: Rng): BlobSeed {
  if (rng.chance(0.06)) return edgeShapeBlob(rng);
  if (rng.chance(0.1)) return randomAdaptorBlob(rng);
  const method = rng.pick(["carvq", "carvq", "carvq", "int4", "int3", "int2"] as const);
  const rows = rng.chance(0.1) ? 1 : rng.range(1, 64);
  const cols = rng.chance(0.1) ? rng.range(1, 3) : rng.range(1, 80);
  const seed = rng.u32();
  if (method !== RVQ_METHOD) {
    const group = rng.chance(0.2) ? rng.range(cols, cols + 10) : rng.range(1, cols);
    return { name: `random-${method}-${rows}x${cols}-B${group}`, bytes: randomBlob({ method, rows, cols, group, seed }) };
  }
  const subvec = rng.chance(0.15) ? rng.range(cols, cols + 8) : rng.range(1, Math.min(cols, 16));
  const levels = rng.range(1, 8);
  const layout = rng.pick(["row", "col"] as const);
  const S = Math.ceil(cols / subvec);
  const group = rng.chance(0.2) ? rng.range(1, 3) : rng.range(1, Math.max(1, rows * S));
  const rowScales = rng.chance(0.4) ? (rng.chance(0.3) ? rng.pick([1, 2, 255, 256]) : rng.range(1, 32)) : 0;
  // Keep the codebooks small: group_count x L x 16 x h x 2 bytes.
  const groupCount = layout === "row" ? Math.ceil((rows * S) / group) : Math.ceil(rows / group) * S;
  const shrink = groupCount * levels * 16 * subvec * 2 > 200_000;
  return {
    name: `random-rvq-${layout}-${rows}x${cols}-h${subvec}-L${levels}-g${group}-R${rowScales}`,
    bytes: randomBlob({ rows, cols, subvec, levels: shrink ? 1 : levels, group: shrink ? rows * S : group, layout, rowScales, seed }),
  };
}

/**
 * Shapes at the edges of the small targets' budgets: rows thousands of values wide (an output row
 * alone takes a good part of 128 KiB), and codebook groups too large for the streaming window
 * (h 256, L 8: 64 KiB a group), so the runtime must read centroids one by one or refuse.
 */
function edgeShapeBlob(rng: Rng): BlobSeed {
  const seed = rng.u32();
  const kind = rng.pick(["wide-scalar", "wide-rvq", "big-group"] as const);
  if (kind === "wide-scalar") {
    const method = rng.pick(["int4", "int3", "int2"] as const);
    const cols = rng.range(2000, 40000);
    const rows = rng.range(1, 4);
    const group = rng.pick([1, 32, cols, rng.range(1, 65536)]);
    return { name: `edge-${method}-${rows}x${cols}-B${group}`, bytes: randomBlob({ method, rows, cols, group, seed }) };
  }
  if (kind === "wide-rvq") {
    const cols = rng.range(2000, 30000);
    const rows = rng.range(1, 3);
    const subvec = rng.pick([8, 16, 64, 256]);
    const levels = rng.range(1, 4);
    const S = Math.ceil(cols / subvec);
    const layout = rng.pick(["row", "col"] as const);
    // A few groups: g sub-vectors each, so the codebooks stay under ~1 MB.
    const group = Math.max(1, Math.ceil((rows * S) / rng.range(1, 3)));
    const rowScales = rng.chance(0.3) ? rng.range(1, 256) : 0;
    return {
      name: `edge-rvq-${layout}-${rows}x${cols}-h${subvec}-L${levels}-g${group}-R${rowScales}`,
      bytes: randomBlob({ rows, cols, subvec, levels, group, layout, rowScales, seed }),
    };
  }
  const rows = rng.range(1, 12);
  const cols = rng.range(256, 1024);
  const levels = rng.range(6, 8);
  const layout = rng.pick(["row", "col"] as const);
  const group = layout === "row" ? rng.range(1, 4) : rng.range(1, rows);
  const S = Math.ceil(cols / 256);
  const groupCount = layout === "row" ? Math.ceil((rows * S) / group) : Math.ceil(rows / group) * S;
  const g = groupCount > 16 ? rows * S : group;
  return {
    name: `edge-big-group-${layout}-${rows}x${cols}-h256-L${levels}-g${g}`,
    bytes: randomBlob({ rows, cols, subvec: 256, levels, group: g, layout, rowScales: rng.chance(0.3) ? 7 : 0, seed }),
  };
}

/**
 * A v1.2 blob with a random adaptor over a random RVQ blob: m0 1 to 32, up to three hidden layers
 * up to 600 wide (an MLP larger than a small target's budget, which must stream it in tiles), int8
 * or FP16 for the table and the MLP independently, with or without row scales.
 */
function randomAdaptorBlob(rng: Rng): BlobSeed {
  const rows = rng.range(1, 40);
  const cols = rng.chance(0.1) ? rng.range(200, 1200) : rng.range(1, 64);
  const subvec = rng.range(1, Math.min(cols, 16));
  const S = Math.ceil(cols / subvec);
  const layout = rng.pick(["row", "col"] as const);
  const rowScales = rng.chance(0.3) ? rng.range(1, 64) : 0;
  const base = randomBlob({
    rows,
    cols,
    subvec,
    levels: rng.range(1, 3),
    group: Math.max(1, Math.ceil((rows * S) / rng.range(1, 4))),
    layout,
    rowScales,
    seed: rng.u32(),
  });
  const widths = [rng.range(1, 32)];
  const hidden = rng.range(0, 3);
  for (let k = 0; k < hidden; k++) widths.push(rng.chance(0.3) ? rng.range(200, 600) : rng.range(1, 48));
  widths.push(cols);
  const value = (scale: number) => (rng.float() - 0.5) * scale;
  const adaptor = drawFloatAdaptor(rows, widths, value, ADAPTOR_SCALES);
  const precision = rng.pick(["int8", "fp16"] as const);
  const tablePrecision = rng.pick(["int8", "fp16"] as const);
  const stored = quantizeAdaptor(adaptor, precision, tablePrecision);
  const view = new DataView(base.buffer, base.byteOffset, base.byteLength);
  const count = view.getUint32(F.H_SECTION_COUNT, true);
  const sections: { id: number; bytes: Uint8Array }[] = [];
  for (let i = 0; i < count; i++) {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    const offset = Number(view.getBigUint64(at + F.S_OFFSET, true));
    const length = Number(view.getBigUint64(at + F.S_LENGTH, true));
    sections.push({ id: view.getUint32(at + F.S_ID, true), bytes: base.slice(offset, offset + length) });
  }
  const metadata = sections.filter((x) => x.id === F.SECTION_METADATA);
  const bytes = assembleBlob(
    deriveHeader({
      method: "carvq",
      rows,
      cols,
      subvec,
      levels: view.getUint32(F.H_LEVELS, true),
      group: view.getUint32(F.H_GROUP, true),
      layout,
      rowScaled: rowScales > 0,
      adapted: true,
    }),
    [
      ...sections.filter((x) => x.id !== F.SECTION_METADATA),
      { id: F.SECTION_ADAPTOR_TABLE, bytes: encodeAdaptorTable(stored) },
      { id: F.SECTION_ADAPTOR_MLP, bytes: encodeAdaptorMlp(stored) },
      ...metadata,
    ],
  );
  return { name: `random-adaptor-${rows}x${cols}-${widths.join("-")}-${precision}-table-${tablePrecision}-R${rowScales}`, bytes };
}

/** Every integer field of a blob's header and of each section-table entry it declares. */
export function blobFields(bytes: Uint8Array): Field[] {
  const fields: Field[] = [
    { name: "magic", offset: F.H_MAGIC, size: 4 },
    { name: "version_major", offset: F.H_VERSION_MAJOR, size: 2 },
    { name: "version_minor", offset: F.H_VERSION_MINOR, size: 2 },
    { name: "header_bytes", offset: F.H_HEADER_BYTES, size: 4 },
    { name: "section_count", offset: F.H_SECTION_COUNT, size: 4 },
    { name: "method", offset: F.H_METHOD, size: 4 },
    { name: "rows", offset: F.H_ROWS, size: 4 },
    { name: "cols", offset: F.H_COLS, size: 4 },
    { name: "subvec", offset: F.H_SUBVEC, size: 4 },
    { name: "levels", offset: F.H_LEVELS, size: 4 },
    { name: "codebook_size", offset: F.H_CODEBOOK_SIZE, size: 4 },
    { name: "group", offset: F.H_GROUP, size: 4 },
    { name: "layout", offset: F.H_LAYOUT, size: 4 },
    { name: "code_bits", offset: F.H_CODE_BITS, size: 4 },
    { name: "row_bytes", offset: F.H_ROW_BYTES, size: 4 },
    { name: "group_count", offset: F.H_GROUP_COUNT, size: 4 },
    { name: "header_crc", offset: F.H_HEADER_CRC, size: 4 },
  ];
  const count = sectionCountOf(bytes);
  for (let i = 0; i < count; i++) {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    fields.push(
      { name: `section[${i}].id`, offset: at + F.S_ID, size: 4 },
      { name: `section[${i}].crc`, offset: at + F.S_CRC, size: 4 },
      { name: `section[${i}].offset`, offset: at + F.S_OFFSET, size: 8 },
      { name: `section[${i}].length`, offset: at + F.S_LENGTH, size: 8 },
    );
    // The adaptor sections' own header fields (v1.2).
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const id = view.getUint32(at + F.S_ID, true);
    const start = view.getBigUint64(at + F.S_OFFSET, true);
    const length = view.getBigUint64(at + F.S_LENGTH, true);
    if (start + length > BigInt(bytes.length) || length < 8n) continue;
    const o = Number(start);
    if (id === F.SECTION_ADAPTOR_TABLE) {
      fields.push({ name: "ADAPTOR_TABLE.precision", offset: o, size: 4 }, { name: "ADAPTOR_TABLE.m0", offset: o + 4, size: 4 });
    } else if (id === F.SECTION_ADAPTOR_MLP) {
      fields.push({ name: "ADAPTOR_MLP.precision", offset: o, size: 4 }, { name: "ADAPTOR_MLP.layer_count", offset: o + 4, size: 4 });
      const widths = Math.min(F.MAX_ADAPTOR_LAYERS + 1, Math.floor((Number(length) - 8) / 4));
      for (let k = 0; k < widths; k++) fields.push({ name: `ADAPTOR_MLP.width[${k}]`, offset: o + 8 + 4 * k, size: 4 });
    }
  }
  return fields;
}

/** The section count the header states, clamped to the entries that fit in the file (0 to 16). */
export function sectionCountOf(bytes: Uint8Array): number {
  if (bytes.length < F.HEADER_BYTES) return 0;
  const count = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(F.H_SECTION_COUNT, true);
  const fit = Math.floor((bytes.length - F.SECTION_TABLE_OFFSET) / F.SECTION_ENTRY_BYTES);
  return Math.max(0, Math.min(count, F.MAX_SECTIONS, fit));
}

// ---------------------------------------------------------------------------------------------- model files

export interface ModelSeed {
  name: string;
  format: ModelFormat;
  /** The file name extension a user would give it. */
  ext: string;
  bytes: Uint8Array;
  fields: Field[];
  text: TextRegion[];
  /** What the reader returns for the unmutated file. */
  expect: { tensor: string; rows: number; cols: number; values: Float32Array };
}

/** Values exact in F16 and BF16 (multiples of 1/8 up to 2), so the expected matrix is known exactly. */
function exactValues(rows: number, cols: number, salt: number): Matrix {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = (((i * 7 + salt * 13) % 33) - 16) / 8;
  return { rows, cols, data };
}

type Dtype = "F32" | "F16" | "BF16";

function encode(m: Matrix, dtype: Dtype): Uint8Array {
  if (dtype === "F32") return new Uint8Array(m.data.slice().buffer);
  const halves = new Uint16Array(m.data.length);
  const bits = new Uint32Array(m.data.slice().buffer);
  for (let i = 0; i < halves.length; i++) halves[i] = dtype === "F16" ? f32ToF16(m.data[i]) : bits[i] >>> 16;
  return new Uint8Array(halves.buffer);
}

/** The parts one after another in one array. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

function safetensorsSeed(name: string, tensors: RawTensor[], embedding: string, m: Matrix): ModelSeed {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const sink = new FieldSink();
  sink.u64("header length", json.length);
  sink.bytes(json);
  for (const t of tensors) sink.bytes(t.data);
  const lengthField = sink.fields[0];
  return {
    name,
    format: "safetensors",
    ext: ".safetensors",
    bytes: sink.result(),
    fields: sink.fields,
    text: [{ name: "JSON header", offset: 8, length: json.length, lengthField }],
    expect: { tensor: embedding, rows: m.rows, cols: m.cols, values: m.data },
  };
}

const GGML = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;

interface GgufTensorSpec {
  name: string;
  type: number;
  ne: number[];
  data: Uint8Array;
}

function ggufSeed(
  name: string,
  version: number,
  alignment: number | null,
  tensors: GgufTensorSpec[],
  embedding: string,
  m: Matrix,
): ModelSeed {
  const align = alignment ?? 32;
  const sink = new FieldSink();
  sink.u32("magic", 0x46554747);
  sink.u32("version", version);
  sink.u64("tensor count", tensors.length);
  const kv: ((s: FieldSink) => void)[] = [
    (s) => {
      s.string("key general.architecture", "general.architecture");
      s.u32("general.architecture type", 8);
      s.string("general.architecture value", "llama");
    },
    (s) => {
      s.string("key llama.context_length", "llama.context_length");
      s.u32("llama.context_length type", 4);
      s.u32("llama.context_length value", 2048);
    },
    (s) => {
      s.string("key scores", "tokenizer.ggml.scores");
      s.u32("scores type", 9);
      s.u32("scores element type", 6);
      s.u64("scores array length", 3);
      s.bytes(new Uint8Array(new Float32Array([0.5, -1, 2]).buffer));
    },
    (s) => {
      s.string("key tokens", "tokenizer.ggml.tokens");
      s.u32("tokens type", 9);
      s.u32("tokens element type", 8);
      s.u64("tokens array length", 4);
      for (const w of ["<s>", "</s>", "a", "b"]) s.string("token", w);
    },
    (s) => {
      s.string("key nested", "fuzz.nested");
      s.u32("nested type", 9);
      s.u32("nested element type", 9);
      s.u64("nested array length", 2);
      for (let i = 0; i < 2; i++) {
        s.u32("inner element type", 0);
        s.u64("inner array length", 3);
        s.bytes(Uint8Array.of(1, 2, 3));
      }
    },
    (s) => {
      s.string("key u64", "fuzz.u64");
      s.u32("u64 type", 10);
      s.u64("u64 value", 123456789);
    },
    (s) => {
      s.string("key bool", "fuzz.bool");
      s.u32("bool type", 7);
      s.int("bool value", 1, 1);
    },
    (s) => {
      s.string("key f64", "fuzz.f64");
      s.u32("f64 type", 12);
      s.bytes(new Uint8Array(new Float64Array([1.5]).buffer));
    },
  ];
  if (alignment !== null)
    kv.push((s) => {
      s.string("key general.alignment", "general.alignment");
      s.u32("general.alignment type", 4);
      s.u32("general.alignment value", alignment);
    });
  sink.u64("metadata count", kv.length);
  for (const write of kv) write(sink);
  let relative = 0;
  const offsets = tensors.map((t) => {
    const at = relative;
    relative = Math.ceil((relative + t.data.length) / align) * align;
    return at;
  });
  tensors.forEach((t, i) => {
    sink.string(`tensor ${i} name`, t.name);
    sink.u32(`tensor ${i} n_dims`, t.ne.length);
    t.ne.forEach((d, k) => sink.u64(`tensor ${i} ne[${k}]`, d));
    sink.u32(`tensor ${i} type`, t.type);
    sink.u64(`tensor ${i} offset`, offsets[i]);
  });
  sink.padTo(align);
  tensors.forEach((t, i) => {
    sink.bytes(t.data);
    if (i < tensors.length - 1) sink.padTo(align);
  });
  return {
    name,
    format: "gguf",
    ext: ".gguf",
    bytes: sink.result(),
    fields: sink.fields,
    text: [],
    expect: { tensor: embedding, rows: m.rows, cols: m.cols, values: m.data },
  };
}

function npySeed(name: string, version: 1 | 2 | 3, descr: string, m: Matrix, data: Uint8Array): ModelSeed {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${m.rows}, ${m.cols}), }`;
  const preamble = version === 1 ? 10 : 12;
  const total = Math.ceil((preamble + dict.length + 1) / 64) * 64;
  const text = `${dict}${" ".repeat(total - preamble - dict.length - 1)}\n`;
  const sink = new FieldSink();
  sink.bytes(Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59));
  sink.int("major version", 1, version);
  sink.int("minor version", 1, 0);
  sink.int("header length", version === 1 ? 2 : 4, text.length);
  const lengthField = sink.fields[2];
  sink.bytes(new TextEncoder().encode(text));
  sink.bytes(data);
  return {
    name,
    format: "npy",
    ext: ".npy",
    bytes: sink.result(),
    fields: sink.fields,
    text: [{ name: "header dict", offset: preamble, length: text.length, lengthField }],
    expect: { tensor: "array", rows: m.rows, cols: m.cols, values: m.data },
  };
}

function llama2cSeed(name: string, separate: boolean, m: Matrix): ModelSeed {
  const [dim, hidden, layers, heads, kvHeads, seqLen] = [m.cols, 16, 1, 2, 1, 4];
  const kvDim = (dim * kvHeads) / heads;
  const headSize = dim / heads;
  const sink = new FieldSink();
  const names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
  [dim, hidden, layers, heads, kvHeads, separate ? -m.rows : m.rows, seqLen].forEach((v, i) => sink.int(names[i], 4, v, true));
  sink.bytes(encode(m, "F32"));
  const rest =
    layers * dim * 2 +
    layers * dim * dim * 2 +
    layers * kvDim * dim * 2 +
    layers * hidden * dim * 3 +
    dim +
    seqLen * headSize +
    (separate ? m.rows * dim : 0);
  const weights = new Float32Array(rest);
  for (let i = 0; i < rest; i++) weights[i] = ((i % 17) - 8) / 64;
  sink.bytes(new Uint8Array(weights.buffer));
  return {
    name,
    format: "llama2c",
    ext: ".bin",
    bytes: sink.result(),
    fields: sink.fields,
    text: [],
    expect: { tensor: "token_embedding_table", rows: m.rows, cols: m.cols, values: m.data },
  };
}

/** Small model files of every supported format and dtype. */
export function modelSeeds(): ModelSeed[] {
  const a = exactValues(12, 16, 1);
  const b = exactValues(9, 24, 2);
  const c = exactValues(10, 8, 3);
  const d = exactValues(7, 16, 4);
  const norm = exactValues(1, 16, 5);
  return [
    safetensorsSeed(
      "safetensors-f32",
      [
        { name: "model.embed_tokens.weight", dtype: "F32", shape: [a.rows, a.cols], data: encode(a, "F32") },
        { name: "model.norm.weight", dtype: "F32", shape: [16], data: encode(norm, "F32") },
      ],
      "model.embed_tokens.weight",
      a,
    ),
    safetensorsSeed(
      "safetensors-f16",
      [{ name: "transformer.wte.weight", dtype: "F16", shape: [b.rows, b.cols], data: encode(b, "F16") }],
      "transformer.wte.weight",
      b,
    ),
    safetensorsSeed(
      "safetensors-bf16",
      [
        { name: "lm_head.weight", dtype: "BF16", shape: [c.rows, c.cols], data: encode(c, "BF16") },
        { name: "positions", dtype: "I64", shape: [2], data: new Uint8Array(16) },
        { name: "model.embed_tokens.weight", dtype: "BF16", shape: [c.rows, c.cols], data: encode(c, "BF16") },
      ],
      "model.embed_tokens.weight",
      c,
    ),
    ggufSeed(
      "gguf-v3-f32",
      3,
      null,
      [
        { name: "token_embd.weight", type: GGML.F32, ne: [a.cols, a.rows], data: encode(a, "F32") },
        { name: "output_norm.weight", type: GGML.F32, ne: [16], data: encode(norm, "F32") },
      ],
      "token_embd.weight",
      a,
    ),
    ggufSeed(
      "gguf-v2-f16-align64",
      2,
      64,
      [
        { name: "blk.0.ffn.weight", type: GGML.Q8_0, ne: [32, 2], data: new Uint8Array(68).fill(1) },
        { name: "token_embd.weight", type: GGML.F16, ne: [b.cols, b.rows], data: encode(b, "F16") },
      ],
      "token_embd.weight",
      b,
    ),
    ggufSeed(
      "gguf-v3-bf16",
      3,
      16,
      [{ name: "token_embd.weight", type: GGML.BF16, ne: [d.cols, d.rows], data: encode(d, "BF16") }],
      "token_embd.weight",
      d,
    ),
    npySeed("npy-v1-f4", 1, "<f4", c, encode(c, "F32")),
    npySeed("npy-v2-f2", 2, "<f2", d, encode(d, "F16")),
    npySeed("npy-v3-f4", 3, "<f4", b, encode(b, "F32")),
    llama2cSeed("llama2c-shared", false, exactValues(10, 8, 6)),
    llama2cSeed("llama2c-separate", true, exactValues(6, 8, 7)),
  ];
}
