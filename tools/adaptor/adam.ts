// Adam for the adaptor's training (tools/adaptor/train.ts): dense updates of every layer's
// parameters each step, lazy updates of the per-token table (a token's row moves only in the step
// that sees it, so its step count is the epoch).
import type { Layer, TrainState } from "./train-state.ts";

const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;

function adam(s: TrainState, param: number, grad: number, m: number, v: number, count: number, lr: number): void {
  const { f } = s;
  const c1 = 1 - BETA1 ** s.adamStep;
  const c2 = 1 - BETA2 ** s.adamStep;
  for (let i = 0; i < count; i++) {
    const g = f[grad + i];
    const mi = BETA1 * f[m + i] + (1 - BETA1) * g;
    const vi = BETA2 * f[v + i] + (1 - BETA2) * g * g;
    f[m + i] = mi;
    f[v + i] = vi;
    f[param + i] -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + ADAM_EPS);
  }
}

/** Adam on the layer's Wt, b and LayerNorm parameters; W = Wtᵀ is refreshed separately (transpose). */
export function updateLayer(s: TrainState, layer: Layer, lr: number): void {
  adam(s, layer.wt, layer.dwt, layer.mwt, layer.vwt, layer.inputs * layer.outputs, lr);
  adam(s, layer.b, layer.db, layer.mb, layer.vb, layer.outputs, lr);
  if (layer.hidden) {
    adam(s, layer.g, layer.dg, layer.mg, layer.vg, layer.outputs, lr);
    adam(s, layer.be, layer.dbe, layer.mbe, layer.vbe, layer.outputs, lr);
  }
}

/** Lazy Adam on the batch's table rows; a row's step count is the epoch (each epoch sees it once). */
export function updateTable(s: TrainState, tokens: Int32Array, from: number, count: number, lr: number, epoch: number): void {
  const { f, m0 } = s;
  const c1 = 1 - BETA1 ** (epoch + 1);
  const c2 = 1 - BETA2 ** (epoch + 1);
  for (let r = 0; r < count; r++) {
    const t = tokens[from + r];
    for (let i = 0; i < m0; i++) {
      const at = t * m0 + i;
      const g = f[s.dx0 + r * m0 + i];
      const mi = BETA1 * f[s.tm + at] + (1 - BETA1) * g;
      const vi = BETA2 * f[s.tv + at] + (1 - BETA2) * g * g;
      f[s.tm + at] = mi;
      f[s.tv + at] = vi;
      f[s.table + at] -= (lr * (mi / c1)) / (Math.sqrt(vi / c2) + ADAM_EPS);
    }
  }
}
