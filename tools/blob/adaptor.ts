// The ADAPTOR_TABLE and ADAPTOR_MLP sections (v1.2): the corrective adaptor (FORMAT.md, "The adaptor").
import * as F from "../../assembly/format.ts";
import { mlpSectionBytes, tableRowBytes, type StoredAdaptor, type StoredLayer, type StoredMatrix } from "../adaptor/model.ts";
import { CarvqError } from "../errors.ts";

const PRECISION_CODE = { int8: F.ADAPTOR_INT8, fp16: F.ADAPTOR_FP16 } as const;

class ByteWriter {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private at = 0;
  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }
  u32(value: number): void {
    this.view.setUint32(this.at, value, true);
    this.at += 4;
  }
  halves(values: Uint16Array): void {
    for (const v of values) {
      this.view.setUint16(this.at, v, true);
      this.at += 2;
    }
  }
  int8s(values: Int8Array): void {
    this.bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.length), this.at);
    this.at += values.length;
  }
}

export function encodeAdaptorTable(adaptor: StoredAdaptor): Uint8Array {
  const { table, rows, m0 } = adaptor;
  const int8 = table.scales !== null;
  const w = new ByteWriter(F.ADAPTOR_TABLE_HEADER_BYTES + rows * tableRowBytes(int8, m0));
  w.u32(int8 ? F.ADAPTOR_INT8 : F.ADAPTOR_FP16);
  w.u32(m0);
  for (let r = 0; r < rows; r++) {
    if (table.scales !== null) {
      w.halves(table.scales.subarray(r, r + 1));
      w.int8s((table.values as Int8Array).subarray(r * m0, (r + 1) * m0));
    } else {
      w.halves((table.values as Uint16Array).subarray(r * m0, (r + 1) * m0));
    }
  }
  return w.bytes;
}

function writeMatrix(w: ByteWriter, m: StoredMatrix): void {
  if (m.scales !== null) {
    w.int8s(m.values as Int8Array);
    w.halves(m.scales);
  } else {
    w.halves(m.values as Uint16Array);
  }
}

export function encodeAdaptorMlp(adaptor: StoredAdaptor): Uint8Array {
  const int8 = adaptor.layers[0].weights.scales !== null;
  const widths = [adaptor.m0, ...adaptor.layers.map((l) => l.outputs)];
  const w = new ByteWriter(mlpSectionBytes(int8, widths));
  w.u32(int8 ? PRECISION_CODE.int8 : PRECISION_CODE.fp16);
  w.u32(adaptor.layers.length);
  for (const width of widths) w.u32(width);
  for (const layer of adaptor.layers) {
    writeMatrix(w, layer.weights);
    w.halves(layer.bias);
    if (layer.gamma !== null && layer.beta !== null) {
      w.halves(layer.gamma);
      w.halves(layer.beta);
    }
  }
  return w.bytes;
}

class ByteReader {
  private readonly view: DataView;
  at = 0;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u32(): number {
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }
  halves(count: number): Uint16Array {
    const out = new Uint16Array(count);
    for (let i = 0; i < count; i++) out[i] = this.view.getUint16(this.at + 2 * i, true);
    this.at += 2 * count;
    return out;
  }
  int8s(count: number): Int8Array {
    const out = Int8Array.from(new Int8Array(this.bytes.buffer, this.bytes.byteOffset + this.at, count));
    this.at += count;
    return out;
  }
}

function precisionIsInt8(code: number, name: string, section: string): boolean {
  if (code !== F.ADAPTOR_INT8 && code !== F.ADAPTOR_FP16)
    throw new CarvqError(`${name}: ${section} precision is ${code}; expected 0 (int8) or 1 (fp16)`);
  return code === F.ADAPTOR_INT8;
}

function readMatrix(r: ByteReader, int8: boolean, rows: number, width: number): StoredMatrix {
  if (!int8) return { values: r.halves(rows * width), scales: null };
  const values = r.int8s(rows * width);
  return { values, scales: r.halves(rows) };
}

/**
 * Validates and reads both adaptor sections against the header (V rows, n columns). Sizes are
 * computed from the small width fields, which are range-checked first, and compared with the
 * section lengths before anything is allocated.
 */
export function decodeAdaptor(tableBytes: Uint8Array, mlpBytes: Uint8Array, rows: number, cols: number, name: string): StoredAdaptor {
  if (mlpBytes.length < 8) throw new CarvqError(`${name}: ADAPTOR_MLP section is ${mlpBytes.length} bytes; too short for its header`);
  const mlp = new ByteReader(mlpBytes);
  const int8 = precisionIsInt8(mlp.u32(), name, "ADAPTOR_MLP");
  const layerCount = mlp.u32();
  if (layerCount < 1 || layerCount > F.MAX_ADAPTOR_LAYERS)
    throw new CarvqError(`${name}: ADAPTOR_MLP layer_count is ${layerCount}; expected 1 to ${F.MAX_ADAPTOR_LAYERS}`);
  if (mlpBytes.length < 8 + 4 * (layerCount + 1))
    throw new CarvqError(`${name}: ADAPTOR_MLP section is ${mlpBytes.length} bytes; too short for ${layerCount + 1} widths`);
  const widths = Array.from({ length: layerCount + 1 }, () => mlp.u32());
  widths.forEach((width, k) => {
    if (width < 1 || width > F.MAX_ADAPTOR_WIDTH)
      throw new CarvqError(`${name}: ADAPTOR_MLP width ${k} is ${width}; expected 1 to ${F.MAX_ADAPTOR_WIDTH}`);
  });
  if (widths[layerCount] !== cols)
    throw new CarvqError(`${name}: ADAPTOR_MLP output width is ${widths[layerCount]}; expected the table's ${cols} columns`);
  const expectedMlp = mlpSectionBytes(int8, widths);
  if (mlpBytes.length !== expectedMlp)
    throw new CarvqError(
      `${name}: ADAPTOR_MLP section is ${mlpBytes.length} bytes; expected ${expectedMlp} for widths ${widths.join("-")}`,
    );

  if (tableBytes.length < F.ADAPTOR_TABLE_HEADER_BYTES)
    throw new CarvqError(`${name}: ADAPTOR_TABLE section is ${tableBytes.length} bytes; too short for its header`);
  const table = new ByteReader(tableBytes);
  const tableInt8 = precisionIsInt8(table.u32(), name, "ADAPTOR_TABLE");
  const m0 = table.u32();
  if (m0 !== widths[0]) throw new CarvqError(`${name}: ADAPTOR_TABLE m0 is ${m0}; expected the MLP's input width ${widths[0]}`);
  const expectedTable = F.ADAPTOR_TABLE_HEADER_BYTES + rows * tableRowBytes(tableInt8, m0);
  if (tableBytes.length !== expectedTable)
    throw new CarvqError(`${name}: ADAPTOR_TABLE section is ${tableBytes.length} bytes; expected ${expectedTable}`);

  const tableValues = tableInt8 ? new Int8Array(rows * m0) : new Uint16Array(rows * m0);
  const tableScales = tableInt8 ? new Uint16Array(rows) : null;
  for (let r = 0; r < rows; r++) {
    if (tableScales !== null) {
      tableScales[r] = table.halves(1)[0];
      (tableValues as Int8Array).set(table.int8s(m0), r * m0);
    } else {
      (tableValues as Uint16Array).set(table.halves(m0), r * m0);
    }
  }
  const layers: StoredLayer[] = [];
  for (let k = 0; k < layerCount; k++) {
    const inputs = widths[k];
    const outputs = widths[k + 1];
    const weights = readMatrix(mlp, int8, outputs, inputs);
    const bias = mlp.halves(outputs);
    const hidden = k + 1 < layerCount;
    layers.push({ inputs, outputs, weights, bias, gamma: hidden ? mlp.halves(outputs) : null, beta: hidden ? mlp.halves(outputs) : null });
  }
  return { rows, m0, table: { values: tableValues, scales: tableScales }, layers };
}
