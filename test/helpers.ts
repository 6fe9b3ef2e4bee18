import { drawFloatAdaptor, type DrawScales, type FloatAdaptor } from "../tools/adaptor/model.ts";
import type { Matrix } from "../tools/matrix.ts";
import { createRandom } from "../tools/random.ts";

/** A seeded matrix of Gaussian-ish values (sum of uniforms), different per seed. */
export function randomMatrix(rows: number, cols: number, seed: number): Matrix {
  const random = createRandom(seed);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = random() + random() + random() - 1.5;
  return { rows, cols, data };
}

/**
 * A seeded float adaptor of the given widths (m0 ... n): values uniform in ±scale/2 for the table,
 * the weights and the biases (gamma around 1, beta ±0.1). Large weights of both signs make sums
 * cancel, where any order of addition other than the reference's shows.
 */
export function randomFloatAdaptor(rows: number, widths: number[], seed: number, scale: DrawScales): FloatAdaptor {
  const random = createRandom(seed);
  return drawFloatAdaptor(rows, widths, (s) => (random() - 0.5) * s, scale);
}
