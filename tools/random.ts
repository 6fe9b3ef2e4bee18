// Seeded pseudo-random numbers: the same seed gives the same stream on every machine, which is what
// makes blobs byte-for-byte reproducible.

/** Mixes integers into one 32-bit seed (e.g. the user's seed, a group index and a level). */
export function deriveSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A splitmix32 generator: returns uniform numbers in [0, 1). */
export function createRandom(seed: number): () => number {
  return createRandomAt(seed, 0);
}

/**
 * createRandom(seed)'s stream after its first `skip` numbers, without drawing them: the state only
 * advances by a constant per number. Lets workers draw their parts of one stream.
 */
export function createRandomAt(seed: number, skip: number): () => number {
  let state = (seed + Math.imul(skip >>> 0, 0x9e3779b9)) >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    z ^= z >>> 15;
    return (z >>> 0) / 4294967296;
  };
}

/** Gaussian from two uniforms (Box–Muller), deterministic. */
export function gaussian(random: () => number): number {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** A seeded permutation of 0 .. count − 1 (Fisher–Yates). */
export function permutation(count: number, random: () => number): Int32Array {
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
