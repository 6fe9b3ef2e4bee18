// Mutations: generic byte-level ones (bit flips, interesting bytes, truncation, extension,
// insertion, deletion, splicing) and structure-aware ones (one header field or section-table entry
// set to a value picked to break it, derived fields recomputed so the edit gets past them, sections
// swapped, duplicated, dropped or physically reordered, section contents edited, text headers
// edited token by token). Blob mutations are often "resealed" (CRCs recomputed) so the input gets
// past the checksums to the checks behind them.
import * as F from "../../../assembly/format.ts";
import { deriveHeader, LAYOUT_CODES, METHOD_CODES } from "../../blob/header.ts";
import { SECTION_NAMES } from "../../blob/reader.ts";
import { LAYOUT_NAMES } from "../../quant/layout.ts";
import { RVQ_METHOD, METHOD_NAMES } from "../../quant/methods.ts";
import { crc32 } from "../../crc32.ts";
import { readField, writeField, type Field, type TextRegion } from "./fields.ts";
import { blobFields, concat, sectionCountOf } from "./seeds.ts";
import type { Rng } from "./rng.ts";

const U64_MAX = (1n << 64n) - 1n;

/** A value for `f` chosen to break it: boundaries, off-by-one, powers of two, the file's size. */
export function interestingValue(rng: Rng, f: Field, current: bigint, fileSize: number): bigint {
  const bits = BigInt(f.size * 8);
  const max = (1n << bits) - 1n;
  const candidates: bigint[] = [
    0n,
    1n,
    2n,
    3n,
    7n,
    8n,
    15n,
    16n,
    17n,
    63n,
    64n,
    65n,
    255n,
    256n,
    257n,
    511n,
    512n,
    513n,
    4096n,
    65535n,
    65536n,
    65537n,
    current + 1n,
    current - 1n,
    current + 2n,
    current - 2n,
    current * 2n,
    current / 2n,
    current + 64n,
    current - 64n,
    current << 8n,
    current ^ 0x80n,
    max,
    max - 1n,
    1n << (bits - 1n),
    (1n << (bits - 1n)) - 1n,
    BigInt(fileSize),
    BigInt(fileSize) + 1n,
    BigInt(fileSize) - 1n,
    BigInt(fileSize) - current,
    BigInt(fileSize) + 64n,
    1n << 24n,
    (1n << 24n) + 1n,
    (1n << 31n) - 1n,
    1n << 31n,
    (1n << 32n) - 1n,
    1n << 32n,
    (1n << 32n) + 64n,
    (1n << 53n) - 1n,
    1n << 53n,
    (1n << 53n) + 1n,
    1n << 63n,
    U64_MAX,
    U64_MAX - 63n,
    -1n,
    -2n,
    -64n,
    BigInt(rng.u32()),
    BigInt(rng.int(1024)),
  ];
  return BigInt.asUintN(f.size * 8, rng.pick(candidates));
}

// ---------------------------------------------------------------------------------------------- generic

/** Names of the generic mutations, for the statistics. */
export type GenericOp = "bitflip" | "byte" | "truncate" | "extend" | "insert" | "delete" | "splice" | "zero-range";

/** One generic mutation; returns the new bytes (may be the same array, edited) and its name. */
export function genericMutation(rng: Rng, input: Uint8Array, cutPoints: readonly number[] = []): { bytes: Uint8Array; op: GenericOp } {
  const op = rng.pick<GenericOp>(["bitflip", "bitflip", "byte", "byte", "truncate", "extend", "insert", "delete", "splice", "zero-range"]);
  const bytes = input.slice();
  const n = bytes.length;
  const at = () => rng.int(Math.max(1, n));
  switch (op) {
    case "bitflip": {
      if (n === 0) return { bytes, op };
      const flips = rng.small(8);
      for (let k = 0; k < flips; k++) {
        const i = at();
        bytes[i] ^= 1 << rng.int(8);
      }
      return { bytes, op };
    }
    case "byte": {
      if (n === 0) return { bytes, op };
      const count = rng.small(4);
      for (let k = 0; k < count; k++) bytes[at()] = rng.pick([0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x40, rng.u32() & 0xff]);
      return { bytes, op };
    }
    case "truncate": {
      const points = [
        0,
        1,
        8,
        12,
        27,
        28,
        63,
        64,
        65,
        87,
        88,
        n - 1,
        n - 2,
        n - 64,
        Math.floor(n / 2),
        rng.int(n + 1),
        ...cutPoints,
        ...cutPoints.map((c) => c - 1),
        ...cutPoints.map((c) => c + 1),
      ];
      const length = Math.max(0, Math.min(n, rng.pick(points)));
      return { bytes: bytes.subarray(0, length).slice(), op };
    }
    case "extend": {
      const extra = rng.pick([1, 2, 7, 63, 64, 65, 128, rng.range(1, 4096)]);
      const tail = rng.chance(0.5) ? new Uint8Array(extra) : rng.bytes(extra);
      return { bytes: concat([bytes, tail]), op };
    }
    case "insert": {
      const i = rng.int(n + 1);
      const extra = rng.chance(0.5) ? new Uint8Array(rng.pick([1, 4, 8, 64])) : rng.bytes(rng.range(1, 64));
      return { bytes: concat([bytes.subarray(0, i), extra, bytes.subarray(i)]), op };
    }
    case "delete": {
      if (n === 0) return { bytes, op };
      const i = at();
      const length = Math.min(n - i, rng.pick([1, 4, 8, 24, 64, rng.range(1, 256)]));
      return { bytes: concat([bytes.subarray(0, i), bytes.subarray(i + length)]), op };
    }
    case "splice": {
      if (n < 2) return { bytes, op };
      const from = at();
      const to = at();
      const length = Math.min(n - Math.max(from, to), rng.range(1, 64));
      bytes.copyWithin(to, from, from + length);
      return { bytes, op };
    }
    case "zero-range": {
      if (n === 0) return { bytes, op };
      const i = at();
      bytes.fill(rng.chance(0.5) ? 0 : 0xff, i, Math.min(n, i + rng.range(1, 128)));
      return { bytes, op };
    }
  }
}

/** Sets one field to an interesting value. */
export function fieldMutation(rng: Rng, input: Uint8Array, fields: readonly Field[]): { bytes: Uint8Array; op: string } {
  const bytes = input.slice();
  const usable = fields.filter((f) => f.offset + f.size <= bytes.length);
  if (usable.length === 0) return { bytes, op: "field(none)" };
  const f = rng.pick(usable);
  const value = interestingValue(rng, f, readField(bytes, f), bytes.length);
  writeField(bytes, f, f.signed ? BigInt.asIntN(f.size * 8, value) : value);
  return { bytes, op: `field:${f.name.replace(/\[\d+\]/g, "[i]").replace(/^tensor \d+/, "tensor i")}` };
}

// ---------------------------------------------------------------------------------------------- text headers

const INTERESTING_NUMBERS = [
  "-1",
  "0",
  "1",
  "2",
  "-0",
  "1.5",
  "1e3",
  "1e308",
  "-1e308",
  "4294967295",
  "4294967296",
  "2147483648",
  "9007199254740991",
  "9007199254740993",
  "18446744073709551615",
  "18446744073709551616",
  "99999999999999999999999",
  "null",
  "true",
  '"8"',
  "[]",
  "{}",
  "NaN",
];
const INTERESTING_STRINGS = [
  '"F32"',
  '"F16"',
  '"BF16"',
  '"I64"',
  '"F64"',
  '"U8"',
  '""',
  '"f32"',
  "'<f4'",
  "'>f4'",
  "'<f2'",
  "'<f8'",
  "'|u1'",
  "'<i4'",
  '"__metadata__"',
  '"\\u0000"',
  '"\\ud800"',
];

/** Edits a JSON or Python-dict header token by token; `reseal` rewrites its length field. */
export function textMutation(rng: Rng, input: Uint8Array, region: TextRegion, reseal: boolean): { bytes: Uint8Array; op: string } {
  if (region.offset + region.length > input.length) return { bytes: input.slice(), op: "text(none)" };
  const decoder = new TextDecoder("latin1");
  const text = decoder.decode(input.subarray(region.offset, region.offset + region.length));
  let edited = text;
  let op: string;
  const tokens = (re: RegExp) => [...text.matchAll(re)];
  const replaceAt = (index: number, length: number, by: string) => text.slice(0, index) + by + text.slice(index + length);
  const kind = rng.pick(["number", "number", "number", "string", "keyword", "delete", "insert", "duplicate", "dims"]);
  if (kind === "number" && tokens(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g).length > 0) {
    const m = rng.pick(tokens(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g));
    edited = replaceAt(m.index!, m[0].length, rng.pick(INTERESTING_NUMBERS));
    op = "text:number";
  } else if (kind === "string" && tokens(/"[^"]*"|'[^']*'/g).length > 0) {
    const m = rng.pick(tokens(/"[^"]*"|'[^']*'/g));
    edited = replaceAt(m.index!, m[0].length, rng.pick(INTERESTING_STRINGS));
    op = "text:string";
  } else if (kind === "keyword" && tokens(/True|False|\bnull\b/g).length > 0) {
    const m = rng.pick(tokens(/True|False|\bnull\b/g));
    edited = replaceAt(m.index!, m[0].length, rng.pick(["True", "False", "None", "1", ""]));
    op = "text:keyword";
  } else if (kind === "dims" && tokens(/\[[\d, ]*\]|\([\d, ]*\)/g).length > 0) {
    const m = rng.pick(tokens(/\[[\d, ]*\]|\([\d, ]*\)/g));
    const open = m[0][0];
    const close = open === "[" ? "]" : ")";
    const dims = rng.pick([
      "",
      "0",
      "1",
      "3",
      "1, 1",
      "2, 3, 4",
      "0, 5",
      "5, 0",
      "4294967296, 2",
      "2, 9007199254740993",
      "65536, 65536",
      "1, 1,",
    ]);
    edited = replaceAt(m.index!, m[0].length, `${open}${dims}${close}`);
    op = "text:dims";
  } else if (kind === "delete") {
    const i = rng.int(text.length);
    edited = replaceAt(i, rng.range(1, 8), "");
    op = "text:delete";
  } else if (kind === "insert") {
    const i = rng.int(text.length + 1);
    edited = replaceAt(i, 0, rng.pick(["{", "}", "[", "]", ",", '"', "'", ":", "\\", "\u00ff", " ", "\n", "\0"]));
    op = "text:insert";
  } else {
    const i = rng.int(text.length);
    const length = rng.range(1, 40);
    edited = replaceAt(i, 0, text.slice(i, i + length));
    op = "text:duplicate";
  }
  const encoded = Uint8Array.from(edited, (ch) => ch.charCodeAt(0) & 0xff);
  const bytes = concat([input.subarray(0, region.offset), encoded, input.subarray(region.offset + region.length)]);
  if (reseal && region.lengthField) writeField(bytes, region.lengthField, BigInt(encoded.length));
  return { bytes, op: reseal ? `${op}+len` : op };
}

// ---------------------------------------------------------------------------------------------- blobs

/** Recomputes every section CRC (of the sections that lie inside the file) and the header CRC. */
export function resealBlob(bytes: Uint8Array): void {
  if (bytes.length < F.HEADER_BYTES) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = sectionCountOf(bytes);
  for (let i = 0; i < count; i++) {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    const offset = view.getBigUint64(at + F.S_OFFSET, true);
    const length = view.getBigUint64(at + F.S_LENGTH, true);
    if (offset + length <= BigInt(bytes.length))
      view.setUint32(at + F.S_CRC, crc32(bytes.subarray(Number(offset), Number(offset + length))), true);
  }
  const covered = concat([
    bytes.subarray(0, F.H_HEADER_CRC),
    bytes.subarray(F.SECTION_TABLE_OFFSET, F.SECTION_TABLE_OFFSET + count * F.SECTION_ENTRY_BYTES),
  ]);
  view.setUint32(F.H_HEADER_CRC, crc32(covered), true);
}

interface Section {
  id: number;
  offset: number;
  length: number;
}

function sectionsOf(bytes: Uint8Array): Section[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Section[] = [];
  for (let i = 0; i < sectionCountOf(bytes); i++) {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    const offset = view.getBigUint64(at + F.S_OFFSET, true);
    const length = view.getBigUint64(at + F.S_LENGTH, true);
    if (offset + length <= BigInt(bytes.length))
      out.push({ id: view.getUint32(at + F.S_ID, true), offset: Number(offset), length: Number(length) });
  }
  return out;
}

/** Lays the given sections out again in a new order (offsets, padding, CRCs all consistent). */
function relayout(bytes: Uint8Array, sections: readonly Section[]): Uint8Array {
  const tableEnd = F.SECTION_TABLE_OFFSET + sections.length * F.SECTION_ENTRY_BYTES;
  const offsets: number[] = [];
  let cursor = tableEnd;
  for (const s of sections) {
    cursor = Math.ceil(cursor / F.SECTION_ALIGN) * F.SECTION_ALIGN;
    offsets.push(cursor);
    cursor += s.length;
  }
  const out = new Uint8Array(cursor);
  out.set(bytes.subarray(0, F.HEADER_BYTES), 0);
  const view = new DataView(out.buffer);
  view.setUint32(F.H_SECTION_COUNT, sections.length, true);
  sections.forEach((s, i) => {
    const at = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
    view.setUint32(at + F.S_ID, s.id, true);
    view.setBigUint64(at + F.S_OFFSET, BigInt(offsets[i]), true);
    view.setBigUint64(at + F.S_LENGTH, BigInt(s.length), true);
    out.set(bytes.subarray(s.offset, s.offset + s.length), offsets[i]);
  });
  resealBlob(out);
  return out;
}

const METHODS = METHOD_NAMES;
const LAYOUTS = LAYOUT_NAMES;

/**
 * Changes one primary header field (rows, cols, h, L, g, layout, method) and writes the derived
 * fields the new value implies, so the edit passes the header's own consistency checks and meets
 * the section-length checks (or, for a shrink, an accepted blob of another shape).
 */
function consistentHeaderEdit(rng: Rng, bytes: Uint8Array): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (o: number) => view.getUint32(o, true);
  const method = METHODS.find((m) => METHOD_CODES[m] === u32(F.H_METHOD)) ?? "carvq";
  const layout = LAYOUTS.find((l) => LAYOUT_CODES[l] === u32(F.H_LAYOUT)) ?? "row";
  const params = {
    method,
    rows: u32(F.H_ROWS),
    cols: u32(F.H_COLS),
    subvec: u32(F.H_SUBVEC),
    levels: u32(F.H_LEVELS),
    group: u32(F.H_GROUP),
    layout,
  };
  const which = rng.pick(["rows", "cols", "subvec", "levels", "group", "layout", "method"] as const);
  const tweak = (v: number) => Math.max(0, rng.pick([v - 1, v + 1, 1, 2 * v, Math.floor(v / 2), v + 16, rng.range(1, 300)]));
  if (which === "layout") params.layout = params.layout === "row" ? "col" : "row";
  else if (which === "method") params.method = rng.pick(METHODS);
  else params[which] = tweak(params[which]);
  if (params.method === RVQ_METHOD && (params.subvec === 0 || params.levels === 0 || params.group === 0)) {
    params.subvec ||= 8;
    params.levels ||= 2;
    params.group ||= 16;
  }
  if (params.method !== RVQ_METHOD && params.group === 0) params.group = 32;
  const rowScaled = sectionsOf(bytes).some((s) => s.id === F.SECTION_ROW_SCALES);
  const h = deriveHeader({ ...params, rowScaled });
  view.setUint32(F.H_METHOD, METHOD_CODES[h.method], true);
  view.setUint32(F.H_ROWS, h.rows, true);
  view.setUint32(F.H_COLS, h.cols, true);
  view.setUint32(F.H_SUBVEC, h.subvec, true);
  view.setUint32(F.H_LEVELS, h.levels, true);
  view.setUint32(F.H_CODEBOOK_SIZE, h.codebookSize, true);
  view.setUint32(F.H_GROUP, h.group, true);
  view.setUint32(F.H_LAYOUT, LAYOUT_CODES[h.layout], true);
  view.setUint32(F.H_CODE_BITS, h.codeBits, true);
  view.setUint32(F.H_ROW_BYTES, h.rowBytes >>> 0, true);
  view.setUint32(F.H_GROUP_COUNT, h.groupCount >>> 0, true);
  return `header:${which}+derived`;
}

/**
 * One blob mutation. Structure-aware ones know the header and section table; `reseal` then
 * recomputes the CRCs so the input reaches the checks behind them.
 */
export function blobMutation(rng: Rng, input: Uint8Array): { bytes: Uint8Array; op: string } {
  const sections = sectionsOf(input);
  const cuts = [
    F.HEADER_BYTES,
    F.SECTION_TABLE_OFFSET + sectionCountOf(input) * F.SECTION_ENTRY_BYTES,
    ...sections.flatMap((s) => [s.offset, s.offset + s.length]),
  ];
  const kind = rng.pick([
    "generic",
    "generic",
    "field",
    "field",
    "field",
    "consistent",
    "section-data",
    "section-data",
    "swap-entries",
    "reorder",
    "duplicate-entry",
    "drop-entry",
    "padding",
    "version",
  ]);
  const bytes = input.slice();
  switch (kind) {
    case "field":
      return fieldMutation(rng, bytes, blobFields(bytes));
    case "consistent":
      if (bytes.length < F.HEADER_BYTES) break;
      return { bytes, op: consistentHeaderEdit(rng, bytes) };
    case "section-data": {
      if (sections.length === 0) break;
      const s = rng.pick(sections);
      if (s.length === 0) break;
      const name = SECTION_NAMES[s.id] ?? `id${s.id}`;
      const count = rng.small(6);
      for (let k = 0; k < count; k++) {
        const i = s.offset + rng.int(s.length);
        bytes[i] = rng.chance(0.3) ? rng.pick([0, 0xff, 0x7c, 0x7e, 0xfc, 0x80, 0x01]) : bytes[i] ^ (1 << rng.int(8));
      }
      return { bytes, op: `data:${name}` };
    }
    case "swap-entries": {
      const count = sectionCountOf(bytes);
      if (count < 2) break;
      const i = rng.int(count);
      let j = rng.int(count - 1);
      if (j >= i) j++;
      const a = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
      const b = F.SECTION_TABLE_OFFSET + j * F.SECTION_ENTRY_BYTES;
      const which = rng.pick(["entry", "id"] as const);
      const width = which === "entry" ? F.SECTION_ENTRY_BYTES : 4;
      const tmp = bytes.slice(a, a + width);
      bytes.copyWithin(a, b, b + width);
      bytes.set(tmp, b);
      return { bytes, op: `swap:${which}` };
    }
    case "reorder": {
      // Physically reordered sections with a consistent table: a valid blob, which both readers must take.
      if (sections.length < 2) break;
      const order = sections.slice();
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      return { bytes: relayout(bytes, order), op: "reorder" };
    }
    case "duplicate-entry": {
      if (sections.length === 0 || sections.length >= F.MAX_SECTIONS) break;
      const copy = rng.pick(sections);
      const dup = rng.chance(0.5) ? copy : { ...copy, id: rng.pick([1, 2, 3, 4, 0, 5, 0xffffffff]) };
      const list = sections.slice();
      list.splice(rng.int(list.length + 1), 0, dup);
      return { bytes: relayout(bytes, list), op: "duplicate-entry" };
    }
    case "drop-entry": {
      if (sections.length < 1) break;
      const list = sections.slice();
      list.splice(rng.int(list.length), 1);
      return { bytes: relayout(bytes, list), op: "drop-entry" };
    }
    case "padding": {
      const gaps: [number, number][] = [];
      let end = F.SECTION_TABLE_OFFSET + sectionCountOf(bytes) * F.SECTION_ENTRY_BYTES;
      for (const s of sections) {
        if (s.offset > end) gaps.push([end, s.offset]);
        end = Math.max(end, s.offset + s.length);
      }
      if (gaps.length === 0) break;
      const [from, to] = rng.pick(gaps);
      bytes[from + rng.int(to - from)] = rng.range(1, 255);
      return { bytes, op: "padding" };
    }
    case "version": {
      if (bytes.length < F.HEADER_BYTES) break;
      const view = new DataView(bytes.buffer);
      view.setUint16(F.H_VERSION_MINOR, rng.pick([0, 1, 2, 0xffff]), true);
      if (rng.chance(0.3)) view.setUint16(F.H_VERSION_MAJOR, rng.pick([0, 2, 0xffff]), true);
      return { bytes, op: "version" };
    }
  }
  return genericMutation(rng, bytes, cuts);
}
