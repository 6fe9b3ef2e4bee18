// The adaptor's training forward and backward passes (tools/adaptor/train.ts) over one batch on the
// training heap: every matrix product through GemmPool, the rest on the calling thread in a fixed
// order. Training arithmetic (f32 storage, double temporaries); the blob's bit-exact forward is
// tools/adaptor/forward.ts.
import * as F from "../../assembly/format.ts";
import type { GemmPool } from "./pool.ts";
import { updateLayer, updateTable } from "./adam.ts";
import { gemm, transpose, type Layer, type TrainState } from "./train-state.ts";

/**
 * Forward pass of `count` tokens whose inputs are already in layers[0].x; returns the output
 * offset. `during` runs beside the last layer's product (the largest).
 */
export function forward(s: TrainState, pool: GemmPool, count: number, during?: () => void): number {
  const { f } = s;
  let out = 0;
  s.layers.forEach((layer, k) => {
    const { inputs, outputs, z } = layer;
    for (let r = 0; r < count; r++) f.copyWithin(z + r * outputs, layer.b, layer.b + outputs);
    gemm(
      s,
      pool,
      { a: layer.x, sai: inputs, sak: 1, b: layer.wt, ldb: outputs, c: z, ldc: outputs, m: count, n: outputs, k: inputs, accumulate: true },
      layer.hidden ? undefined : during,
    );
    if (!layer.hidden) {
      out = z;
      return;
    }
    const next = s.layers[k + 1].x;
    const { g, be } = layer;
    for (let r = 0; r < count; r++) {
      const zr = z + r * outputs;
      const xr = layer.xhat + r * outputs;
      const yr = next + r * outputs;
      let mean = 0;
      for (let o = 0; o < outputs; o++) {
        const v = f[zr + o] > 0 ? f[zr + o] : 0;
        f[xr + o] = v;
        mean += v;
      }
      mean /= outputs;
      let variance = 0;
      for (let o = 0; o < outputs; o++) {
        const d = f[xr + o] - mean;
        variance += d * d;
      }
      const rstd = 1 / Math.sqrt(variance / outputs + F.ADAPTOR_LN_EPS);
      f[layer.rstd + r] = rstd;
      for (let o = 0; o < outputs; o++) {
        const xhat = (f[xr + o] - mean) * rstd;
        f[xr + o] = xhat;
        f[yr + o] = xhat * f[g + o] + f[be + o];
      }
    }
  });
  return out;
}

/** Copies the batch's table rows in as the first layer's input. */
function gatherRows(s: TrainState, tokens: Int32Array, from: number, count: number): void {
  const { f, m0 } = s;
  const x = s.layers[0].x;
  for (let r = 0; r < count; r++) {
    const t = tokens[from + r];
    f.copyWithin(x + r * m0, s.table + t * m0, s.table + (t + 1) * m0);
  }
}

/** Copies the batch's targets (R / sigma) in; read only by the loss, so it can overlap the forward products. */
function gatherTargets(s: TrainState, tokens: Int32Array, from: number, count: number): void {
  const { f, n, residual } = s;
  const inv = 1 / s.sigma;
  for (let r = 0; r < count; r++) {
    const src = tokens[from + r] * n;
    const dst = s.target + r * n;
    for (let e = 0; e < n; e++) f[dst + e] = residual.data[src + e] * inv;
  }
}

/**
 * One step on tokens[from, from + count): returns the batch's summed |R/sigma − gamma|.
 *
 * The main thread's work that does not feed the next product runs beside one (GemmPool.gemm's
 * `during`): the targets beside the last forward product; the bias gradient (which, like the
 * weight gradient, only reads dz) and the refresh W = Wtᵀ of the layer above beside each
 * weight-gradient product; each layer's Adam update beside the product that carries the
 * gradient back past it (which reads W, not the master weights Wt that Adam moves). Every
 * buffer is written by one side only, so the bits are those of doing it all in turn.
 */
export function trainStep(
  s: TrainState,
  pool: GemmPool,
  tokens: Int32Array,
  from: number,
  count: number,
  lr: number,
  tableLr: number,
  epoch: number,
): number {
  const { f, n } = s;
  gatherRows(s, tokens, from, count);
  const out = forward(s, pool, count, () => gatherTargets(s, tokens, from, count));
  // L1: loss = Σ |out − target|; d loss / d out = sign(out − target), in place of the output.
  let loss = 0;
  for (let i = 0; i < count * n; i++) {
    const d = f[out + i] - f[s.target + i];
    loss += Math.abs(d);
    f[out + i] = d > 0 ? 1 : d < 0 ? -1 : 0;
  }
  s.adamStep++;
  // The layer above this one, whose W still has to follow its updated Wt.
  let pending: Layer | null = null;
  for (let k = s.layers.length - 1; k >= 0; k--) {
    const layer = s.layers[k];
    const { inputs, outputs, z } = layer;
    const dz = z; // the gradient with respect to z replaces z
    const above = pending;
    // The bias gradient only reads dz, as the weight-gradient product does.
    const biasGradient = () => {
      if (above !== null) transpose(s, above);
      for (let o = 0; o < outputs; o++) f[layer.db + o] = 0;
      for (let r = 0; r < count; r++) for (let o = 0; o < outputs; o++) f[layer.db + o] += f[dz + r * outputs + o];
    };
    gemm(
      s,
      pool,
      {
        a: layer.x,
        sai: 1,
        sak: inputs,
        b: dz,
        ldb: outputs,
        c: layer.dwt,
        ldc: outputs,
        m: inputs,
        n: outputs,
        k: count,
        accumulate: false,
      },
      biasGradient,
    );
    // This layer's gradients are complete (dg and dbe came with the layer above): Adam may move Wt.
    const update = () => updateLayer(s, layer, lr);
    // Back to this layer's input: the previous layer's pre-activation, or the batch's table rows.
    if (k > 0) layerNormBackward(s, pool, s.layers[k - 1], dz, layer, count, update);
    else
      gemm(
        s,
        pool,
        { a: dz, sai: outputs, sak: 1, b: layer.w, ldb: inputs, c: s.dx0, ldc: inputs, m: count, n: inputs, k: outputs, accumulate: false },
        update,
      );
    pending = layer;
  }
  if (pending !== null) transpose(s, pending);
  updateTable(s, tokens, from, count, tableLr, epoch);
  return loss;
}

/**
 * From the gradient dz of layer `next` back through its input y = LN(relu(z)) of layer `prev`:
 * dy = dz · W into next.x (no longer needed), then the gradient of prev's z in place of prev.z.
 */
function layerNormBackward(
  s: TrainState,
  pool: GemmPool,
  prev: Layer,
  dzNext: number,
  next: Layer,
  count: number,
  during: () => void,
): void {
  const { f } = s;
  const w = prev.outputs;
  const dy = next.x;
  gemm(
    s,
    pool,
    {
      a: dzNext,
      sai: next.outputs,
      sak: 1,
      b: next.w,
      ldb: next.inputs,
      c: dy,
      ldc: w,
      m: count,
      n: w,
      k: next.outputs,
      accumulate: false,
    },
    during,
  );
  for (let o = 0; o < w; o++) {
    f[prev.dg + o] = 0;
    f[prev.dbe + o] = 0;
  }
  for (let r = 0; r < count; r++) {
    const dyr = dy + r * w;
    const xr = prev.xhat + r * w;
    const zr = prev.z + r * w;
    let sumD = 0;
    let sumDX = 0;
    for (let o = 0; o < w; o++) {
      const g = f[dyr + o];
      f[prev.dg + o] += g * f[xr + o];
      f[prev.dbe + o] += g;
      const dxhat = g * f[prev.g + o];
      sumD += dxhat;
      sumDX += dxhat * f[xr + o];
    }
    const meanD = sumD / w;
    const meanDX = sumDX / w;
    const rstd = f[prev.rstd + r];
    for (let o = 0; o < w; o++) {
      const dxhat = f[dyr + o] * f[prev.g + o];
      const da = rstd * (dxhat - meanD - f[xr + o] * meanDX);
      f[zr + o] = f[zr + o] > 0 ? da : 0;
    }
  }
}
