// Gain-shape quantization (v1.1 ROW_SCALES): RVQ codes each row's direction (the row scaled to
// unit length); a u8 index per row picks its length from a small FP16 table fitted to the rows.
import { F16_TO_F32, f32ToF16, F16_MAX } from "../fp16.ts";
import type { Matrix } from "../matrix.ts";

/** Each row scaled to unit length (all-zero rows stay zero). */
export function unitRows(m: Matrix): Matrix {
  const data = new Float32Array(m.data.length);
  for (let r = 0; r < m.rows; r++) {
    let norm = 0;
    for (let i = r * m.cols; i < (r + 1) * m.cols; i++) norm += m.data[i] * m.data[i];
    const inverse = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let i = r * m.cols; i < (r + 1) * m.cols; i++) data[i] = m.data[i] * inverse;
  }
  return { rows: m.rows, cols: m.cols, data };
}

export interface RowScales {
  /** FP16 bit patterns of the scale table, ascending. */
  halves: Uint16Array;
  /** Each row's index into the table. */
  index: Uint8Array;
}

/**
 * Fits a table of `count` scales to the decoded shapes: row t's best gain is
 * g_t = <x_t, d_t> / <d_t, d_t>, and the error of using scale s instead is <d_t, d_t>·(s − g_t)²,
 * so the table is a weighted 1-D k-means (Lloyd–Max) of the gains, and each row takes the nearest
 * FP16 entry.
 */
export function fitRowScales(original: Matrix, shapes: Matrix, count: number): RowScales {
  const { rows, cols } = original;
  const gains = new Float64Array(rows);
  const weights = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let xd = 0;
    let dd = 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) {
      xd += original.data[i] * shapes.data[i];
      dd += shapes.data[i] * shapes.data[i];
    }
    gains[r] = dd > 0 ? xd / dd : 0;
    weights[r] = dd;
  }
  const levels = lloydMax(gains, weights, count);
  const halves = Uint16Array.from(levels, (v) => f32ToF16(Math.max(-F16_MAX, Math.min(F16_MAX, v))));
  halves.sort((a, b) => F16_TO_F32[a] - F16_TO_F32[b]);
  const index = new Uint8Array(rows);
  for (let r = 0; r < rows; r++) index[r] = nearestLevel(halves, gains[r]);
  return { halves, index };
}

function nearestLevel(halves: Uint16Array, value: number): number {
  let best = 0;
  for (let i = 1; i < halves.length; i++)
    if (Math.abs(F16_TO_F32[halves[i]] - value) < Math.abs(F16_TO_F32[halves[best]] - value)) best = i;
  return best;
}

/** Weighted 1-D k-means with `count` levels, started at weighted quantiles. Returns the levels. */
function lloydMax(values: Float64Array, weights: Float64Array, count: number): Float64Array {
  const order = Array.from(values.keys()).sort((a, b) => values[a] - values[b] || a - b);
  let total = 0;
  for (const w of weights) total += w;
  const levels = new Float64Array(count);
  let cumulative = 0;
  let next = 0;
  for (const i of order) {
    cumulative += weights[i];
    while (next < count && cumulative >= ((next + 0.5) / count) * total) levels[next++] = values[i];
  }
  for (; next < count; next++) levels[next] = order.length > 0 ? values[order[order.length - 1]] : 0;
  const sums = new Float64Array(count);
  const mass = new Float64Array(count);
  for (let iter = 0; iter < 30; iter++) {
    sums.fill(0);
    mass.fill(0);
    let level = 0;
    // Values in ascending order meet the (ascending) levels' boundaries in order.
    for (const i of order) {
      while (level + 1 < count && Math.abs(levels[level + 1] - values[i]) <= Math.abs(levels[level] - values[i])) level++;
      sums[level] += weights[i] * values[i];
      mass[level] += weights[i];
    }
    for (let k = 0; k < count; k++) if (mass[k] > 0) levels[k] = sums[k] / mass[k];
    levels.sort();
  }
  return levels;
}
