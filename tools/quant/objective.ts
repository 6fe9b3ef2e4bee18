// What the model-aware stages optimise instead of squared error: an objective of the decoded
// table (a language model's KL on a calibration text, tools/eval/kl-objective.ts), and its local
// quadratic form per row.
import type { Matrix } from "../matrix.ts";

/** A symmetric cols x cols matrix per row, row t's at t * cols^2, row-major: positive semi-definite (a raw estimate) or definite (what the encoder needs). */
export interface RowMetric {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/** An end-to-end objective of a decoded table (lower is better), whole and in batches with gradients. */
export interface TableObjective {
  /** What it measures, for messages and metadata ("kl"). */
  name: string;
  /** How many batches the objective is split into (at least 1). */
  batches: number;
  /** The objective on batch `batch` and its gradient per table value. */
  evaluate(table: Matrix, batch: number): { loss: number; gradient: Float32Array };
  /** The objective on every batch together (no gradient). */
  loss(table: Matrix): number;
  /**
   * A quadratic form per row whose sum over the rows' errors approximates the objective near the
   * original table (`--kl-encode` chooses codes by it); absent when the objective has none.
   */
  curvature?(onProgress?: (done: number, total: number) => void): RowMetric;
  /** Computes the curvature ahead, on worker threads where it can (then `curvature` returns it at once). */
  prepareCurvature?(threads: number, onProgress?: (done: number, total: number) => void): Promise<void>;
}
