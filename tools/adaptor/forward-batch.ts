// The adaptor's correction for a whole table at once, with the same bits as the reference
// (tools/adaptor/forward.ts, token by token): the SIMD kernels in assembly/train/forward.ts take
// the same f32 operations in the same order (FORMAT.md's eight-lane sums), batched over tokens so
// each weight row is read once per batch. The compressor decodes every row of the table to measure
// it; on 128256 x 2048 with the paper's adaptor the reference takes minutes, this a few seconds.
// Without the kernel build it falls back to the reference, row by row.
import * as F from "../../assembly/format.ts";
import { F16_TO_F32 } from "../fp16.ts";
import { heapFloats, TrainHeap } from "./kernels.ts";
import type { StoredAdaptor, StoredMatrix } from "./model.ts";

interface ForwardExports {
  adaptorLinear(w: number, scales: number, bias: number, x: number, y: number, tokens: number, inputs: number, outputs: number): void;
  adaptorReluLayerNorm(y: number, tokens: number, width: number, gamma: number, beta: number, eps: number): void;
}

/** Tokens per batch: a batch's widest layer input (32 x 512 floats) stays in the first cache levels. */
const BATCH = 32;

interface HeapLayer {
  inputs: number;
  outputs: number;
  w: number;
  /** 0 when the weights are FP16 (no scales). */
  scales: number;
  bias: number;
  gamma: number;
  beta: number;
  /** This layer's outputs for a batch (BATCH × outputs). */
  y: number;
}

function halvesTo(f: Float32Array, at: number, values: Uint16Array): void {
  for (let i = 0; i < values.length; i++) f[at + i] = F16_TO_F32[values[i]];
}

function storedTo(f: Float32Array, at: number, m: StoredMatrix): void {
  if (m.scales === null) halvesTo(f, at, m.values as Uint16Array);
  else f.set(m.values as Int8Array, at);
}

/** The kernel's view of this adaptor: the weights as exact f32 values, once per call. */
function load(adaptor: StoredAdaptor): { heap: TrainHeap; kernel: ForwardExports; layers: HeapLayer[]; x0: number } {
  const sizes = [BATCH * adaptor.m0];
  for (const l of adaptor.layers) sizes.push(l.inputs * l.outputs, l.outputs * 4, BATCH * l.outputs);
  const heap = new TrainHeap(heapFloats(sizes));
  const f = heap.f32;
  const x0 = heap.alloc(BATCH * adaptor.m0);
  const layers = adaptor.layers.map((l): HeapLayer => {
    const layer = { inputs: l.inputs, outputs: l.outputs, w: heap.alloc(l.inputs * l.outputs), scales: l.weights.scales === null ? 0 : heap.alloc(l.outputs), bias: heap.alloc(l.outputs), gamma: heap.alloc(l.outputs), beta: heap.alloc(l.outputs), y: heap.alloc(BATCH * l.outputs) };
    storedTo(f, layer.w, l.weights);
    if (l.weights.scales !== null) halvesTo(f, layer.scales, l.weights.scales);
    halvesTo(f, layer.bias, l.bias);
    if (l.gamma !== null && l.beta !== null) {
      halvesTo(f, layer.gamma, l.gamma);
      halvesTo(f, layer.beta, l.beta);
    }
    return layer;
  });
  return { heap, kernel: heap.kernel as unknown as ForwardExports, layers, x0 };
}

/**
 * Adds gamma(t) to row t of `out` (rows × n, n the adaptor's output width) for every token t <
 * rows: the reference's addAdaptorRow for each row, the same bits.
 */
export function addAdaptorRows(adaptor: StoredAdaptor, out: Float32Array, rows: number): void {
  const n = adaptor.layers[adaptor.layers.length - 1].outputs;
  const { heap, kernel, layers, x0 } = load(adaptor);
  const f = heap.f32;
  const { m0, table } = adaptor;
  const values = table.values;
  const eps = Math.fround(F.ADAPTOR_LN_EPS);
  for (let t0 = 0; t0 < rows; t0 += BATCH) {
    const count = Math.min(BATCH, rows - t0);
    // Table rows, dequantized as the reference does (int8: one f32 multiply by the row's scale).
    for (let r = 0; r < count; r++) {
      const t = t0 + r;
      for (let i = 0; i < m0; i++) f[x0 + r * m0 + i] = table.scales === null ? F16_TO_F32[values[t * m0 + i]] : Math.fround(F16_TO_F32[table.scales[t]] * values[t * m0 + i]);
    }
    let x = x0;
    for (let li = 0; li < layers.length; li++) {
      const l = layers[li];
      kernel.adaptorLinear(4 * l.w, l.scales === 0 ? 0 : 4 * l.scales, 4 * l.bias, 4 * x, 4 * l.y, count, l.inputs, l.outputs);
      if (adaptor.layers[li].gamma !== null) kernel.adaptorReluLayerNorm(4 * l.y, count, l.outputs, 4 * l.gamma, 4 * l.beta, eps);
      x = l.y;
    }
    for (let i = 0; i < count * n; i++) out[t0 * n + i] = Math.fround(out[t0 * n + i] + f[x + i]);
  }
}
