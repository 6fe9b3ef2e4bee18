// CRC-32 (zlib/PNG: reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF), slicing by 8.
// The 8 KiB of tables live in static memory, filled once by crcInit().

const TABLES: usize = memory.data(8 * 256 * 4, 16);

export function crcInit(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    store<u32>(TABLES + (<usize>n << 2), c);
  }
  for (let n: u32 = 0; n < 256; n++) {
    let c = load<u32>(TABLES + (<usize>n << 2));
    for (let t: usize = 1; t < 8; t++) {
      c = load<u32>(TABLES + ((c & 0xff) << 2)) ^ (c >>> 8);
      store<u32>(TABLES + (t << 10) + (<usize>n << 2), c);
    }
  }
}

// @ts-ignore: decorator
@inline function tab(t: usize, i: u32): u32 {
  return load<u32>(TABLES + (t << 10) + (<usize>(i & 0xff) << 2));
}

/** Continues a CRC over `len` bytes at `ptr`. Start with state 0xFFFFFFFF; finish with ~state. */
export function crcUpdate(state: u32, ptr: usize, len: usize): u32 {
  let c = state;
  while (len >= 8) {
    const lo = load<u32>(ptr) ^ c;
    const hi = load<u32>(ptr, 4);
    c =
      tab(7, lo) ^ tab(6, lo >>> 8) ^ tab(5, lo >>> 16) ^ tab(4, lo >>> 24) ^
      tab(3, hi) ^ tab(2, hi >>> 8) ^ tab(1, hi >>> 16) ^ tab(0, hi >>> 24);
    ptr += 8;
    len -= 8;
  }
  while (len > 0) {
    c = tab(0, c ^ <u32>load<u8>(ptr)) ^ (c >>> 8);
    ptr++;
    len--;
  }
  return c;
}
