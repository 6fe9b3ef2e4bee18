import type { Matrix } from "../tools/matrix.ts";
import { createRandom } from "../tools/random.ts";

/** A seeded matrix of Gaussian-ish values (sum of uniforms), different per seed. */
export function randomMatrix(rows: number, cols: number, seed: number): Matrix {
  const random = createRandom(seed);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = random() + random() + random() - 1.5;
  return { rows, cols, data };
}
