/** A dense row-major float32 matrix: row r is data[r * cols, (r + 1) * cols). */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
}

/** Row r of `m` as a view (no copy). */
export function rowOf(m: Matrix, r: number): Float32Array {
  return m.data.subarray(r * m.cols, (r + 1) * m.cols);
}
