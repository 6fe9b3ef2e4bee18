// Tiny random checkpoints of each supported architecture (tools/hf/write.ts), checked against an
// independent float64 forward written here from transformers' modeling code, and against each
// other where two checkpoints must be the same model (fused vs separate projections, GQA vs the
// equivalent multi-head model, tied vs a copied head, bf16 vs its f32 widening).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CarvqError } from "../tools/errors.ts";
import { parseHfConfig, ropeInverseFrequencies } from "../tools/hf/config.ts";
import { windowLogits } from "../tools/hf/forward.ts";
import { referenceBackend } from "../tools/hf/matmul.ts";
import { openMatmul } from "../tools/hf/matmul-pool.ts";
import { loadHfModel, matrixEmbedding, withHfInputEmbedding } from "../tools/hf/model.ts";
import {
  f32ToBf16,
  randomHfFolder,
  writeHfFolder,
  type HfFolder,
  type RandomCheckpointOptions,
  type TensorToWrite,
} from "../tools/hf/write.ts";

const tmp = mkdtempSync(join(tmpdir(), "carvq-hf-arch-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let folders = 0;

const BASE: RandomCheckpointOptions = {
  architecture: "LlamaForCausalLM",
  hiddenSize: 32,
  intermediateSize: 48,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  vocabSize: 40,
  dtype: "F32",
  tied: false,
  seed: 7,
};
const TOKENS = [3, 17, 0, 39, 8, 8, 25];
// Three rotated pairs per head (head 8, partial rotary 0.75); factors far from 1 so a mix-up shows.
const LONGROPE = { type: "longrope", short_factor: [1, 1.5, 3], long_factor: [2, 6, 20] };

function values(t: TensorToWrite): Float32Array {
  return typeof t.data === "function" ? t.data() : t.data;
}

function materialize(folder: HfFolder): HfFolder {
  return { ...folder, tensors: folder.tensors.map((t) => ({ ...t, data: values(t) })) };
}

function write(folder: HfFolder): string {
  const dir = join(tmp, `m${folders++}`);
  writeHfFolder(dir, folder);
  return dir;
}

async function logitsOf(dir: string, tokens = TOKENS): Promise<Float32Array> {
  return windowLogits(await loadHfModel(dir, referenceBackend), tokens);
}

/**
 * transformers' forward in float64, position by position: RMSNorm, q/k/v (+ biases), RoPE with
 * cos = cat(freqs, freqs) applied as x * cos + rotate_half(x) * sin on the first rotary dims,
 * repeat_kv, causal softmax(q k^T / sqrt(d)), o_proj, SiLU(gate) * up, down, final norm, lm_head.
 */
function referenceLogits(folder: HfFolder, tokens: number[]): Float64Array {
  const c = folder.config as Record<string, any>;
  const w = new Map(folder.tensors.map((t) => [t.name, values(t)]));
  const get = (name: string) => w.get(name) as Float32Array;
  const d: number = c.hidden_size;
  const H: number = c.num_attention_heads;
  const KV: number = c.num_key_value_heads;
  const hd: number = c.head_dim ?? d / H;
  const ffn: number = c.intermediate_size;
  const V: number = c.vocab_size;
  const rot = Math.floor(hd * (c.partial_rotary_factor ?? 1));
  const fused = c.architectures[0] === "Phi3ForCausalLM";
  // inv_freq = 1 / theta^(arange(0, rot, 2) / rot), then _compute_llama3_parameters when configured.
  const inv = Array.from({ length: rot / 2 }, (_, i) => 1 / c.rope_theta ** ((2 * i) / rot));
  if (c.rope_scaling?.rope_type === "llama3") {
    const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: old } = c.rope_scaling;
    for (let i = 0; i < inv.length; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      const scaled = wavelen > old / lo ? inv[i] / factor : inv[i];
      const smooth = (old / wavelen - lo) / (hi - lo);
      const medium = !(wavelen < old / hi) && !(wavelen > old / lo);
      inv[i] = medium ? ((1 - smooth) * scaled) / factor + smooth * scaled : scaled;
    }
  }
  const linear = (weight: Float32Array, bias: Float32Array | undefined, x: number[], rows: number, rowOffset = 0) =>
    Array.from({ length: rows }, (_, o) => x.reduce((s, v, j) => s + weight[(rowOffset + o) * x.length + j] * v, bias?.[o] ?? 0));
  const rms = (x: number[], g: Float32Array) => {
    const r = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + c.rms_norm_eps);
    return x.map((v, j) => v * r * g[j]);
  };
  // _compute_longrope_parameters: ext factors by the window's length, cos and sin scaled.
  let mscale = 1;
  if (c.rope_scaling?.type === "longrope") {
    const original = c.original_max_position_embeddings;
    const ext: number[] = tokens.length > original ? c.rope_scaling.long_factor : c.rope_scaling.short_factor;
    for (let i = 0; i < inv.length; i++) inv[i] = 1 / (ext[i] * c.rope_theta ** ((2 * i) / rot));
    const factor = c.max_position_embeddings / original;
    mscale = factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original));
  }
  const rope = (x: number[], heads: number, pos: number) => {
    const out = x.slice();
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < rot; j++) {
        const f = pos * inv[j % (rot / 2)];
        const rotated = j < rot / 2 ? -x[h * hd + j + rot / 2] : x[h * hd + j - rot / 2];
        out[h * hd + j] = x[h * hd + j] * Math.cos(f) * mscale + rotated * Math.sin(f) * mscale;
      }
    }
    return out;
  };
  const keys: number[][][] = Array.from({ length: c.num_hidden_layers }, () => []);
  const vals: number[][][] = Array.from({ length: c.num_hidden_layers }, () => []);
  const out = new Float64Array(tokens.length * V);
  tokens.forEach((token, pos) => {
    let x = Array.from(get("model.embed_tokens.weight").subarray(token * d, (token + 1) * d));
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      const h = rms(x, get(`${p}input_layernorm.weight`));
      const qkv = fused ? get(`${p}self_attn.qkv_proj.weight`) : null;
      let q = qkv
        ? linear(qkv, undefined, h, H * hd)
        : linear(get(`${p}self_attn.q_proj.weight`), w.get(`${p}self_attn.q_proj.bias`), h, H * hd);
      let k = qkv
        ? linear(qkv, undefined, h, KV * hd, H * hd)
        : linear(get(`${p}self_attn.k_proj.weight`), w.get(`${p}self_attn.k_proj.bias`), h, KV * hd);
      const v = qkv
        ? linear(qkv, undefined, h, KV * hd, (H + KV) * hd)
        : linear(get(`${p}self_attn.v_proj.weight`), w.get(`${p}self_attn.v_proj.bias`), h, KV * hd);
      q = rope(q, H, pos);
      k = rope(k, KV, pos);
      keys[l].push(k);
      vals[l].push(v);
      const att: number[] = [];
      for (let head = 0; head < H; head++) {
        const g = Math.floor(head / (H / KV));
        const scores = keys[l].map(
          (kk) => q.slice(head * hd, (head + 1) * hd).reduce((s, qv, i) => s + qv * kk[g * hd + i], 0) / Math.sqrt(hd),
        );
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < hd; i++) att.push(vals[l].reduce((s, vv, t) => s + (e[t] / z) * vv[g * hd + i], 0));
      }
      const o = linear(get(`${p}self_attn.o_proj.weight`), w.get(`${p}self_attn.o_proj.bias`), att, d);
      x = x.map((v0, j) => v0 + o[j]);
      const h2 = rms(x, get(`${p}post_attention_layernorm.weight`));
      const gu = fused ? get(`${p}mlp.gate_up_proj.weight`) : null;
      const gate = gu ? linear(gu, undefined, h2, ffn) : linear(get(`${p}mlp.gate_proj.weight`), undefined, h2, ffn);
      const up = gu ? linear(gu, undefined, h2, ffn, ffn) : linear(get(`${p}mlp.up_proj.weight`), undefined, h2, ffn);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const down = linear(get(`${p}mlp.down_proj.weight`), undefined, act, d);
      x = x.map((v0, j) => v0 + down[j]);
    }
    const final = rms(x, get("model.norm.weight"));
    const head = w.get("lm_head.weight") ?? get("model.embed_tokens.weight");
    out.set(linear(head, undefined, final, V), pos * V);
  });
  return out;
}

function expectClose(got: Float32Array, expected: Float64Array): void {
  const scale = Math.max(...expected.map(Math.abs));
  const worst = Math.max(...got.map((v, i) => Math.abs(v - expected[i])));
  expect(scale).toBeGreaterThan(0.5);
  expect(worst).toBeLessThan(2e-5 * scale);
}

describe("Hugging Face architectures against an independent float64 forward", () => {
  const cases: [string, Partial<RandomCheckpointOptions>][] = [
    ["Llama, GQA 4/2, untied", {}],
    [
      "Llama 3.2: llama3 rope scaling, tied",
      {
        tied: true,
        ropeTheta: 500000,
        ropeScaling: { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
      },
    ],
    ["Llama with attention_bias (q/k/v/o biases)", { extraConfig: { attention_bias: true } }],
    ["Qwen2: q/k/v biases, tied", { architecture: "Qwen2ForCausalLM", tied: true }],
    [
      "Mistral: head_dim apart from hidden/heads",
      { architecture: "MistralForCausalLM", headDim: 12, extraConfig: { sliding_window: 4096 } },
    ],
    ["Phi-3: fused qkv and gate_up, partial rotary 0.5", { architecture: "Phi3ForCausalLM", kvHeads: 4, partialRotaryFactor: 0.5 }],
    [
      "Phi-4-mini-like: longrope (short factors: window within original_max), partial rotary 0.75",
      {
        architecture: "Phi3ForCausalLM",
        partialRotaryFactor: 0.75,
        maxPositions: 1024,
        ropeScaling: LONGROPE,
        extraConfig: { original_max_position_embeddings: 16 },
      },
    ],
    [
      "longrope past original_max: long factors",
      {
        architecture: "Phi3ForCausalLM",
        partialRotaryFactor: 0.75,
        maxPositions: 1024,
        ropeScaling: LONGROPE,
        extraConfig: { original_max_position_embeddings: 4 },
      },
    ],
  ];
  for (const [name, options] of cases) {
    it(name, async () => {
      const folder = materialize(randomHfFolder({ ...BASE, ...options }));
      expectClose(await logitsOf(write(folder)), referenceLogits(folder, TOKENS));
    });
  }
});

describe("Hugging Face checkpoints that must be the same model", () => {
  it("GQA (4 query heads on 2 kv heads) equals multi-head attention with each kv head repeated for its group", async () => {
    const gqa = materialize(randomHfFolder(BASE));
    const hd = BASE.hiddenSize / BASE.heads;
    const repeat = (data: Float32Array) => {
      const out = new Float32Array(BASE.heads * hd * BASE.hiddenSize);
      for (let h = 0; h < BASE.heads; h++) {
        const g = Math.floor(h / (BASE.heads / BASE.kvHeads));
        out.set(data.subarray(g * hd * BASE.hiddenSize, (g + 1) * hd * BASE.hiddenSize), h * hd * BASE.hiddenSize);
      }
      return out;
    };
    const mha: HfFolder = {
      config: { ...gqa.config, num_key_value_heads: BASE.heads },
      tensors: gqa.tensors.map((t) =>
        /[kv]_proj/.test(t.name) ? { ...t, shape: [BASE.hiddenSize, BASE.hiddenSize], data: repeat(values(t)) } : t,
      ),
    };
    expect(await logitsOf(write(gqa))).toEqual(await logitsOf(write(mha)));
  });

  it("Phi-3's fused qkv_proj and gate_up_proj equal a Llama with the same rows as separate projections", async () => {
    const phi = materialize(randomHfFolder({ ...BASE, architecture: "Phi3ForCausalLM" }));
    const d = BASE.hiddenSize;
    const hd = d / BASE.heads;
    const rows = (t: TensorToWrite, from: number, count: number) => values(t).slice(from * d, (from + count) * d);
    const tensors: TensorToWrite[] = [];
    for (const t of phi.tensors) {
      const prefix = t.name.replace(/(self_attn|mlp)\..*$/, "");
      if (t.name.endsWith("qkv_proj.weight")) {
        const [q, kv] = [BASE.heads * hd, BASE.kvHeads * hd];
        tensors.push({ ...t, name: `${prefix}self_attn.q_proj.weight`, shape: [q, d], data: rows(t, 0, q) });
        tensors.push({ ...t, name: `${prefix}self_attn.k_proj.weight`, shape: [kv, d], data: rows(t, q, kv) });
        tensors.push({ ...t, name: `${prefix}self_attn.v_proj.weight`, shape: [kv, d], data: rows(t, q + kv, kv) });
      } else if (t.name.endsWith("gate_up_proj.weight")) {
        tensors.push({
          ...t,
          name: `${prefix}mlp.gate_proj.weight`,
          shape: [BASE.intermediateSize, d],
          data: rows(t, 0, BASE.intermediateSize),
        });
        tensors.push({
          ...t,
          name: `${prefix}mlp.up_proj.weight`,
          shape: [BASE.intermediateSize, d],
          data: rows(t, BASE.intermediateSize, BASE.intermediateSize),
        });
      } else tensors.push(t);
    }
    const llama = { config: { ...phi.config, architectures: ["LlamaForCausalLM"] }, tensors };
    expect(await logitsOf(write(phi))).toEqual(await logitsOf(write(llama)));
  });

  it("a tied head is the embedding: equal to an untied checkpoint whose lm_head copies it, and kept when the input embedding is replaced", async () => {
    const tied = materialize(randomHfFolder({ ...BASE, tied: true }));
    const embedding = tied.tensors.find((t) => t.name === "model.embed_tokens.weight") as TensorToWrite;
    const untied: HfFolder = {
      config: { ...tied.config, tie_word_embeddings: false },
      tensors: [...tied.tensors, { ...embedding, name: "lm_head.weight" }],
    };
    const tiedDir = write(tied);
    expect(await logitsOf(tiedDir)).toEqual(await logitsOf(write(untied)));

    const model = await loadHfModel(tiedDir, referenceBackend);
    const ones = { rows: BASE.vocabSize, cols: BASE.hiddenSize, data: new Float32Array(BASE.vocabSize * BASE.hiddenSize).fill(1) };
    const replaced = withHfInputEmbedding(model, matrixEmbedding(ones));
    expect(replaced.lmHead).toBe(model.lmHead);
    expect(Array.from(replaced.lmHead.data as Float32Array)).toEqual(Array.from(values(embedding)));
    // Every token now has the same input row, so the same logits; through the original head they differ per vocabulary entry.
    const logits = windowLogits(replaced, [5]);
    expect(logits).toEqual(windowLogits(replaced, [9]));
    expect(new Set(logits).size).toBeGreaterThan(BASE.vocabSize / 2);
    expect(() => withHfInputEmbedding(model, matrixEmbedding({ rows: 40, cols: 16, data: new Float32Array(640) }))).toThrow(
      /is 40 x 16 but .* is 40 x 32/,
    );
  });

  it("bf16 weights stay 2 bytes in memory and give the logits of their exact f32 widening", async () => {
    const bf16 = materialize(randomHfFolder({ ...BASE, dtype: "BF16" }));
    const widened: HfFolder = {
      config: { ...bf16.config, torch_dtype: "float32" },
      tensors: bf16.tensors.map((t) => ({
        ...t,
        dtype: "F32",
        data: values(t).map((v) => new Float32Array(new Uint32Array([f32ToBf16(v) << 16]).buffer)[0]),
      })),
    };
    const dir = write(bf16);
    const model = await loadHfModel(dir, referenceBackend);
    expect(model.layers[0].q?.data).toBeInstanceOf(Uint16Array);
    expect(model.layers[0].q?.dtype).toBe("bf16");
    expect(model.embedTokens.data.byteLength).toBe(BASE.vocabSize * BASE.hiddenSize * 2);
    const got = await logitsOf(dir);
    expect(got).toEqual(await logitsOf(write(widened)));
    // And bf16 rounding did change the model (the comparison is not between two f32 copies).
    expect(got).not.toEqual(await logitsOf(write(materialize(randomHfFolder(BASE)))));
  });
});

describe("Hugging Face forward on the WASM matmul pool", () => {
  it("gives the reference backend's logits bit for bit on 1 and 2 threads (bf16 Llama 3.2-like, GQA, tied)", async () => {
    const dir = write(randomHfFolder({ ...BASE, dtype: "BF16", tied: true, hiddenSize: 64, intermediateSize: 96, vocabSize: 300 }));
    const tokens = Array.from({ length: 24 }, (_, i) => (i * 37) % 300);
    const expected = windowLogits(await loadHfModel(dir, referenceBackend), tokens);
    for (const threads of [1, 2]) {
      const pool = await openMatmul({ threads, minFlops: 0 });
      try {
        expect(windowLogits(await loadHfModel(dir, pool), tokens)).toEqual(expected);
      } finally {
        await pool.close();
      }
    }
  });
});

describe("Hugging Face config.json", () => {
  it("llama3 rope scaling: inverse frequencies follow the formula (Llama 3.2: theta 5e5, factor 32, low 1, high 4, 8192)", async () => {
    const config = parseHfConfig(
      {
        architectures: ["LlamaForCausalLM"],
        hidden_size: 2048,
        intermediate_size: 8192,
        num_hidden_layers: 16,
        num_attention_heads: 32,
        num_key_value_heads: 8,
        vocab_size: 128256,
        rope_theta: 500000,
        rope_scaling: { rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      },
      "config.json",
    );
    const inv = ropeInverseFrequencies(config, 512);
    const base = (i: number) => 500000 ** (-(2 * i) / 64);
    expect(inv.length).toBe(32);
    // High frequencies (wavelength below 8192 / 4 = 2048) are kept: i = 0 is 1, i = 14 has wavelength 1963.
    expect(inv[0]).toBe(1);
    const ratio = (i: number) => inv[i] / base(i);
    expect(ratio(14)).toBeCloseTo(1, 12);
    // Low frequencies (wavelength above 8192) are divided by 32: i = 18 (wavelength 9640) to 31.
    for (const i of [18, 24, 31]) expect(ratio(i)).toBeCloseTo(1 / 32, 12);
    // In between, blended: i = 15 has wavelength 2*pi / base(15) = 2948; s = (8192 / 2948 - 1) / (4 - 1).
    const s = (8192 / ((2 * Math.PI) / base(15)) - 1) / 3;
    expect(s).toBeGreaterThan(0.5);
    expect(s).toBeLessThan(0.7);
    expect(ratio(15)).toBeCloseTo((1 - s) / 32 + s, 12);
    for (let i = 15; i <= 17; i++) expect(inv[i]).toBeLessThan(base(i));
    for (let i = 15; i <= 17; i++) expect(inv[i]).toBeGreaterThan(base(i) / 32);
  });

  it("refuses other architectures and unsupported options by name, in one line", async () => {
    const ok = {
      architectures: ["LlamaForCausalLM"],
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      vocab_size: 40,
    };
    const refuse = (json: Record<string, unknown>, pattern: RegExp) => {
      expect(() => parseHfConfig(json, "m/config.json")).toThrow(CarvqError);
      expect(() => parseHfConfig(json, "m/config.json")).toThrow(pattern);
    };
    refuse(
      { ...ok, architectures: ["GPT2LMHeadModel"] },
      /architecture GPT2LMHeadModel is not supported; carvq runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Phi3ForCausalLM/,
    );
    refuse({ ...ok, rope_scaling: { type: "yarn", factor: 4 } }, /rope_scaling type "yarn" is not supported/);
    refuse(
      { ...ok, rope_scaling: { type: "longrope", short_factor: [1], long_factor: [1] }, original_max_position_embeddings: 8 },
      /rope_scaling.short_factor must list 4 positive numbers/,
    );
    refuse({ ...ok, hidden_act: "gelu" }, /hidden_act is "gelu"/);
    refuse({ ...ok, num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/);
    refuse({ ...ok, hidden_size: undefined }, /hidden_size is undefined/);
  });

  it("refuses a tensor whose shape disagrees with config.json, and a window past Mistral's sliding_window", async () => {
    const folder = materialize(randomHfFolder(BASE));
    const bad = { ...folder, config: { ...folder.config, intermediate_size: 50 } };
    await expect(loadHfModel(write(bad), referenceBackend)).rejects.toThrow(
      /tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[48, 32\]; config\.json implies \[50, 32\]/,
    );
    const mistral = materialize(randomHfFolder({ ...BASE, architecture: "MistralForCausalLM", extraConfig: { sliding_window: 4 } }));
    const model = await loadHfModel(write(mistral), referenceBackend);
    expect(windowLogits(model, TOKENS.slice(0, 4)).length).toBe(4 * BASE.vocabSize);
    expect(() => windowLogits(model, TOKENS)).toThrow(/window of 7 tokens exceeds the model's sliding_window 4/);
  });
});
