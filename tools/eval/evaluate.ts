// Everything `carvq eval` reports about a blob against its original table.
import type { Blob } from "../blob/reader.ts";
import { decodeAll } from "../decoder.ts";
import { CarvqError } from "../errors.ts";
import type { Matrix } from "../matrix.ts";
import { bitsPerParameter, type BppBreakdown } from "./bpp.ts";
import { neighbourOverlap, reconstructionMetrics } from "../quant/metrics.ts";

export interface Evaluation {
  method: string;
  shape: [number, number];
  bpp: number;
  bppBreakdown: BppBreakdown["parts"];
  bytes: BppBreakdown["bytes"];
  relMSE: number;
  cosine: number;
  nn10: number;
}

export function evaluateBlob(blob: Blob, reference: Matrix, referenceName: string): Evaluation {
  const { rows, cols, method } = blob.header;
  if (reference.rows !== rows || reference.cols !== cols) {
    throw new CarvqError(
      `${referenceName}: shape ${reference.rows} x ${reference.cols} does not match the blob ${blob.name} (${rows} x ${cols})`,
    );
  }
  const decoded = decodeAll(blob);
  const size = bitsPerParameter(blob);
  return {
    method,
    shape: [rows, cols],
    bpp: size.bpp,
    bppBreakdown: size.parts,
    bytes: size.bytes,
    ...reconstructionMetrics(reference, decoded),
    nn10: neighbourOverlap(reference, decoded),
  };
}
