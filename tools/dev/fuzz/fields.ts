// Field maps: where each integer field of a file lives, so the mutator can edit one field at a time
// with values chosen to break it (zero, one, the largest value, off-by-one, sign flips, the file's
// size), and where the text regions (JSON, Python dicts) are.

export interface Field {
  name: string;
  offset: number;
  size: 1 | 2 | 4 | 8;
  signed?: boolean;
}

export interface TextRegion {
  name: string;
  offset: number;
  length: number;
  /** The integer field holding the region's length, if any (resealed after a text edit). */
  lengthField?: Field;
}

export function readField(bytes: Uint8Array, f: Field): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (f.size) {
    case 1:
      return BigInt(f.signed ? view.getInt8(f.offset) : view.getUint8(f.offset));
    case 2:
      return BigInt(f.signed ? view.getInt16(f.offset, true) : view.getUint16(f.offset, true));
    case 4:
      return BigInt(f.signed ? view.getInt32(f.offset, true) : view.getUint32(f.offset, true));
    default:
      return f.signed ? view.getBigInt64(f.offset, true) : view.getBigUint64(f.offset, true);
  }
}

/** Writes `value` into the field, wrapping it to the field's width. */
export function writeField(bytes: Uint8Array, f: Field, value: bigint): void {
  if (f.offset + f.size > bytes.length) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const wrapped = BigInt.asUintN(f.size * 8, value);
  switch (f.size) {
    case 1:
      view.setUint8(f.offset, Number(wrapped));
      break;
    case 2:
      view.setUint16(f.offset, Number(wrapped), true);
      break;
    case 4:
      view.setUint32(f.offset, Number(wrapped), true);
      break;
    default:
      view.setBigUint64(f.offset, wrapped, true);
  }
}

/** Records fields while a file is written, so fixtures come with their field maps. */
export class FieldSink {
  private readonly parts: Uint8Array[] = [];
  length = 0;
  readonly fields: Field[] = [];

  bytes(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }

  int(name: string, size: 1 | 2 | 4 | 8, value: number | bigint, signed = false): void {
    const b = new Uint8Array(size);
    const field: Field = { name, offset: this.length, size, signed };
    writeField(b, { ...field, offset: 0 }, BigInt(value));
    this.fields.push(field);
    this.bytes(b);
  }

  u32(name: string, value: number): void {
    this.int(name, 4, value);
  }

  u64(name: string, value: number | bigint): void {
    this.int(name, 8, value);
  }

  /** A GGUF string: u64 length (a field) and the UTF-8 bytes. */
  string(name: string, s: string): void {
    const encoded = new TextEncoder().encode(s);
    this.u64(`${name} length`, encoded.length);
    this.bytes(encoded);
  }

  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    if (pad > 0) this.bytes(new Uint8Array(pad));
  }

  result(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}
