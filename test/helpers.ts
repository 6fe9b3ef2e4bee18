import { expect } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { drawFloatAdaptor, type DrawScales, type FloatAdaptor } from "../tools/adaptor/model.ts";
import type { Matrix } from "../tools/matrix.ts";
import type { RowMetric, TableObjective } from "../tools/quant/objective.ts";
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

/** A diagonal metric per row, the same for every row: weight(j) on column j (1 everywhere: the identity, squared error). */
export function diagonalMetric(rows: number, cols: number, weight: (column: number) => number = () => 1): RowMetric {
  const data = new Float64Array(rows * cols * cols);
  for (let t = 0; t < rows; t++) for (let j = 0; j < cols; j++) data[t * cols * cols + j * cols + j] = weight(j);
  return { rows, cols, data };
}

/**
 * A stand-in for a model's objective: squared error to `target`, column j weighted by weight(j)
 * (default 1), one batch, and that weighting as its curvature (what --kl-encode asks for).
 */
export function weightedSquaredError(target: Matrix, weight: (column: number) => number = () => 1): TableObjective {
  const evaluate = (table: Matrix) => {
    let loss = 0;
    const gradient = new Float32Array(table.data.length);
    table.data.forEach((v, i) => {
      const d = v - target.data[i];
      loss += weight(i % table.cols) * d * d;
      gradient[i] = 2 * weight(i % table.cols) * d;
    });
    return { loss, gradient };
  };
  return {
    name: "weighted",
    batches: 1,
    evaluate,
    loss: (table) => evaluate(table).loss,
    curvature: () => diagonalMetric(target.rows, target.cols, weight),
  };
}

/** The one-line CarvqError `run` throws, which must start with `path` (a refusal names its file). */
export function refusal(run: () => unknown, path: string): string {
  let caught: unknown;
  try {
    run();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(CarvqError);
  const message = (caught as CarvqError).message;
  expect(message.startsWith(`${path}: `), message).toBe(true);
  expect(message).not.toContain("\n");
  return message;
}

/** Asserts two matrices have the same shape and the same values, bit for bit. */
export function expectSameMatrix(actual: Matrix, expected: Matrix): void {
  expect([actual.rows, actual.cols]).toEqual([expected.rows, expected.cols]);
  expect(Array.from(actual.data)).toEqual(Array.from(expected.data));
}
