// One surface for every quantization method, in the manner of faiss's quantizers: `train` fits a
// method's parameters to a table and returns its codes, `encode` codes rows with parameters
// already fitted, `decode` turns codes back into a table, and `codeBytes` is the exact size of
// the codes and parameters. Inputs are plain typed arrays; each method takes one options object
// and returns one codes object. The blob writer stores these codes (tools/blob/table.ts) and the
// blob decoder reads them back through the same `decode`.
import type { Matrix } from "../matrix.ts";
import { CODEBOOK_SIZE, rvqGroupCount, rvqRecordBytes, scalarRecordBytes, type RvqShape } from "./layout.ts";
import { SCALAR_BITS, type ScalarMethodName } from "./methods.ts";
import { encodeRvqParallel } from "./parallel.ts";
import { decodeRvq, encodeRvqWith, type RvqEncoding, type RvqParams } from "./rvq.ts";
import { decodeScalar, encodeScalar, type ScalarEncoding } from "./scalar.ts";

export interface TableShape {
  rows: number;
  cols: number;
}

/** How a fit runs: worker threads (the codes do not depend on them) and progress in the method's units. */
export interface TrainRun {
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface Quantizer<Options, Codes> {
  /** Fits the method's parameters to `matrix` and returns its codes with them. Deterministic for a given seed. */
  train(matrix: Matrix, options: Options, run?: TrainRun): Promise<Codes>;
  /** Codes for `matrix` with the parameters of `fitted` kept as they are. */
  encode(matrix: Matrix, options: Options, fitted: Codes): Codes;
  /** The table the codes stand for (f32, exactly what the runtime decodes). */
  decode(codes: Codes, shape: TableShape, options: Options): Matrix;
  /** Bytes of the stored codes: one record per row plus the method's parameters (codebooks, scales). */
  codeBytes(shape: TableShape, options: Options): number;
}

/** Group RVQ options: the layout (h, levels, group, layout), the fit's and, for gain-shape, the scale count. */
export interface RvqOptions extends RvqParams {
  /** Gain-shape: FP16 row scales (a u8 index per row); 0 = rows coded as they are. */
  rowScaleCount?: number;
}

export function rvqShape(shape: TableShape, o: Pick<RvqParams, "h" | "levels" | "group" | "layout">): RvqShape {
  return { rows: shape.rows, cols: shape.cols, h: o.h, levels: o.levels, group: o.group, layout: o.layout };
}

export const rvqQuantizer: Quantizer<RvqOptions, RvqEncoding> = {
  train(matrix, options, run = {}) {
    const groups = rvqGroupCount(rvqShape(matrix, options));
    return encodeRvqParallel(matrix, options, groups, run.threads ?? 1, (done) => run.onProgress?.(done, groups));
  },
  encode(matrix, options, fitted) {
    return encodeRvqWith(matrix, rvqShape(matrix, options), fitted.codebooks, options.beam);
  },
  decode(codes, shape, options) {
    return decodeRvq(codes, rvqShape(shape, options));
  },
  codeBytes(shape, o) {
    const scales = o.rowScaleCount ?? 0;
    const codebookValues = rvqGroupCount(rvqShape(shape, o)) * o.levels * CODEBOOK_SIZE * o.h;
    return shape.rows * rvqRecordBytes(shape.cols, o.h, o.levels, scales > 0) + 2 * codebookValues + 2 * scales;
  },
};

/** Scalar options: the method (its bits per code) and the values per FP16 scale. */
export interface ScalarOptions {
  method: ScalarMethodName;
  block: number;
}

export const scalarQuantizer: Quantizer<ScalarOptions, ScalarEncoding> = {
  // Nothing to fit beyond each block's scale, which the encoding computes.
  async train(matrix, options, run = {}) {
    const codes = encodeScalar(matrix, SCALAR_BITS[options.method], options.block);
    run.onProgress?.(matrix.rows, matrix.rows);
    return codes;
  },
  encode(matrix, options) {
    return encodeScalar(matrix, SCALAR_BITS[options.method], options.block);
  },
  decode(codes, shape, options) {
    return decodeScalar(codes, shape.rows, shape.cols, SCALAR_BITS[options.method], options.block);
  },
  codeBytes(shape, o) {
    return shape.rows * scalarRecordBytes(shape.cols, SCALAR_BITS[o.method], o.block);
  },
};
