// The CODEBOOKS and ROW_SCALES sections: FP16 values, little-endian, in the order the quantizer
// holds them (FORMAT.md, "CODEBOOKS": group-major; tools/quant/layout.ts).

/** FP16 bit patterns to little-endian section bytes. */
export function encodeCodebooks(halves: Uint16Array): Uint8Array {
  const out = new Uint8Array(halves.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < halves.length; i++) view.setUint16(2 * i, halves[i], true);
  return out;
}

/** Little-endian section bytes to FP16 bit patterns (a copy: the section need not be 2-aligned). */
export function decodeCodebooks(bytes: Uint8Array): Uint16Array {
  const out = new Uint16Array(bytes.length >> 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}
