import type { FloatAdaptor } from "../tools/adaptor/model.ts";
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
export function randomFloatAdaptor(rows: number, widths: number[], seed: number, scale: { table: number; weights: number; bias: number }): FloatAdaptor {
  const random = createRandom(seed);
  const values = (count: number, s: number) => Float32Array.from({ length: count }, () => (random() - 0.5) * s);
  return {
    rows,
    m0: widths[0],
    table: values(rows * widths[0], scale.table),
    layers: widths.slice(1).map((outputs, k) => {
      const hidden = k + 2 < widths.length;
      return { inputs: widths[k], outputs, weights: values(outputs * widths[k], scale.weights), bias: values(outputs, scale.bias), gamma: hidden ? values(outputs, 1).map((v) => 1 + v) : null, beta: hidden ? values(outputs, 0.2) : null };
    }),
  };
}
