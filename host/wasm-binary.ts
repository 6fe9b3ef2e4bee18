// Reads the few facts a host checks in a WASM binary before running it: its memory limits (the
// declared maximum is the device budget) and the features it needs.

export interface MemoryLimits {
  /** Initial size in 64 KiB pages. */
  initialPages: number;
  /** Declared maximum in pages, or null when the module sets none. */
  maximumPages: number | null;
}

function readLeb(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (at >= bytes.length) throw new Error("truncated LEB128");
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [value, at];
    shift += 7;
    if (shift > 35) throw new Error("LEB128 too long");
  }
}

/** The sections of a module: id, start of the payload, payload length. */
export function wasmSections(bytes: Uint8Array): { id: number; start: number; length: number }[] {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d)
    throw new Error("not a WebAssembly module");
  const sections = [];
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at++];
    const [length, start] = readLeb(bytes, at);
    sections.push({ id, start, length });
    at = start + length;
  }
  return sections;
}

/** The limits of the module's own (defined, not imported) memory 0. */
export function memoryLimits(bytes: Uint8Array): MemoryLimits {
  const section = wasmSections(bytes).find((s) => s.id === 5);
  if (section === undefined) throw new Error("the module defines no memory");
  let [count, at] = readLeb(bytes, section.start);
  if (count < 1) throw new Error("the module defines no memory");
  const flags = bytes[at++];
  let initialPages: number;
  [initialPages, at] = readLeb(bytes, at);
  const maximumPages = flags & 1 ? readLeb(bytes, at)[0] : null;
  return { initialPages, maximumPages };
}
