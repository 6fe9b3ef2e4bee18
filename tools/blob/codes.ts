// The CODES section: one record of `rowBytes` bytes per token, token-major (FORMAT.md, "CODES").

/**
 * Packs RVQ codes into nibble records. `codes` holds `perRow` = S·L codes per token, in the order
 * code i = s·L + l; code i goes to byte i>>1 of the token's record, low nibble first. With
 * `rowScaleIndex` (v1.1 gain-shape) each record starts with the row's u8 scale index instead.
 */
export function packNibbleRecords(
  codes: Uint8Array,
  rows: number,
  perRow: number,
  rowBytes: number,
  rowScaleIndex: Uint8Array | null = null,
): Uint8Array {
  const out = new Uint8Array(rows * rowBytes);
  for (let t = 0; t < rows; t++) {
    const src = t * perRow;
    let dst = t * rowBytes;
    if (rowScaleIndex !== null) out[dst++] = rowScaleIndex[t];
    for (let i = 0; i < perRow; i++) out[dst + (i >> 1)] |= (codes[src + i] & 15) << ((i & 1) << 2);
  }
  return out;
}

/** Code number `i` of the nibble record starting at `recordOffset`. */
export function nibbleAt(section: Uint8Array, recordOffset: number, i: number): number {
  return (section[recordOffset + (i >> 1)] >> ((i & 1) << 2)) & 15;
}

/** Writes `count` codes of `bits` bits each as an LSB-first bit stream starting at out[offset]. */
export function packBitStream(codes: ArrayLike<number>, count: number, bits: number, out: Uint8Array, offset: number): void {
  for (let j = 0; j < count; j++) {
    const code = codes[j];
    for (let b = 0; b < bits; b++) {
      if ((code >> b) & 1) {
        const bit = j * bits + b;
        out[offset + (bit >> 3)] |= 1 << (bit & 7);
      }
    }
  }
}

/** Code `j` of an LSB-first stream of `bits`-bit codes starting at section[offset]. */
export function bitStreamAt(section: Uint8Array, offset: number, j: number, bits: number): number {
  const first = j * bits;
  // A code spans at most two bytes when bits <= 8.
  const byte = offset + (first >> 3);
  const pair = section[byte] | ((byte + 1 < section.length ? section[byte + 1] : 0) << 8);
  return (pair >> (first & 7)) & ((1 << bits) - 1);
}

/**
 * Packs scalar-quantized rows: each record is `blocks` FP16 scales (little-endian) followed by the
 * row's `cols` codes as a bit stream. `scales` holds rows·blocks FP16 bit patterns, `codes` rows·cols codes.
 */
export function packScalarRecords(
  scales: Uint16Array,
  codes: Uint8Array,
  rows: number,
  cols: number,
  blocks: number,
  bits: number,
  rowBytes: number,
): Uint8Array {
  const out = new Uint8Array(rows * rowBytes);
  for (let t = 0; t < rows; t++) {
    const record = t * rowBytes;
    for (let b = 0; b < blocks; b++) {
      const scale = scales[t * blocks + b];
      out[record + 2 * b] = scale & 0xff;
      out[record + 2 * b + 1] = scale >> 8;
    }
    packBitStream(codes.subarray(t * cols, (t + 1) * cols), cols, bits, out, record + 2 * blocks);
  }
  return out;
}
