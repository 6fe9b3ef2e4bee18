// A Hugging Face decoder-only checkpoint's config.json, read into the one shape the forward pass
// (tools/hf/forward.ts) needs. Four architectures share that forward: pre-norm blocks with RMSNorm,
// rotate-half RoPE, grouped-query attention and a SwiGLU MLP. They differ only in
//   LlamaForCausalLM    rope_scaling "llama3" (Llama 3.1/3.2), attention_bias (q/k/v/o biases) if set
//   MistralForCausalLM  Llama's layout; sliding_window (only matters past that many positions)
//   Qwen2ForCausalLM    q/k/v biases, no o bias
//   Phi3ForCausalLM     fused qkv_proj and gate_up_proj; partial_rotary_factor and rope_scaling
//                       "longrope" (Phi-3.5, Phi-4-mini)
// Anything else is refused by name, as are options whose arithmetic the forward does not implement
// (other rope_scaling types, mlp biases, activations other than SiLU), so a checkpoint is either
// run as its own code would run it or not at all.
import { CarvqError } from "../errors.ts";

export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Phi3ForCausalLM"] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/** Llama 3.1's frequency-dependent RoPE rescaling (rope_scaling.rope_type "llama3"). */
export interface Llama3RopeScaling {
  readonly kind: "llama3";
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositions: number;
}

/**
 * Phi-3's LongRoPE (rope_scaling type "longrope", formerly "su"): every frequency divided by its own
 * factor, short_factor for windows up to original_max_position_embeddings and long_factor past
 * them, and cos and sin multiplied by attentionFactor.
 */
export interface LongRopeScaling {
  readonly kind: "longrope";
  readonly shortFactor: readonly number[];
  readonly longFactor: readonly number[];
  readonly originalMaxPositions: number;
  readonly attentionFactor: number;
}

export interface HfConfig {
  readonly architecture: Architecture;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsEps: number;
  readonly ropeTheta: number;
  /** Leading dimensions of each head that RoPE rotates (headDim unless partial_rotary_factor < 1); even. */
  readonly rotaryDim: number;
  readonly ropeScaling: Llama3RopeScaling | LongRopeScaling | null;
  /** lm_head is the input embedding (no lm_head.weight in the checkpoint). */
  readonly tiedEmbeddings: boolean;
  /** q, k and v projections carry biases (Qwen2, Llama with attention_bias). */
  readonly qkvBias: boolean;
  /** The output projection carries a bias (Llama with attention_bias). */
  readonly oBias: boolean;
  readonly fusedProjections: boolean;
  /** Positions one token may attend back over, or null for all (Mistral v0.1, Qwen2 with use_sliding_window). */
  readonly slidingWindow: number | null;
  readonly maxPositions: number;
}

type Json = Record<string, unknown>;

/** Interprets a parsed config.json (`where` names it in messages). */
export function parseHfConfig(json: Json, where: string): HfConfig {
  const architecture = readArchitecture(json, where);
  const int = (field: string, fallback?: number): number => {
    const value = json[field] ?? fallback;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1)
      throw new CarvqError(`${where}: ${field} is ${JSON.stringify(value)}; expected a positive whole number`);
    return value;
  };
  const num = (field: string, fallback: number): number => {
    const value = json[field] ?? fallback;
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0)
      throw new CarvqError(`${where}: ${field} is ${JSON.stringify(value)}; expected a positive number`);
    return value;
  };
  const flag = (field: string, fallback: boolean): boolean => {
    const value = json[field] ?? fallback;
    if (typeof value !== "boolean") throw new CarvqError(`${where}: ${field} is ${JSON.stringify(value)}; expected true or false`);
    return value;
  };

  const hiddenSize = int("hidden_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  if (heads % kvHeads !== 0)
    throw new CarvqError(`${where}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = json.head_dim === undefined || json.head_dim === null ? hiddenSize / heads : int("head_dim");
  if (!Number.isInteger(headDim) || headDim % 2 !== 0)
    throw new CarvqError(`${where}: head size ${headDim} (hidden_size / num_attention_heads or head_dim) must be an even whole number`);

  const activation = json.hidden_act ?? "silu";
  if (activation !== "silu") throw new CarvqError(`${where}: hidden_act is ${JSON.stringify(activation)}; only silu (SwiGLU) is supported`);
  if (json.mlp_bias === true) throw new CarvqError(`${where}: mlp_bias is true; MLP biases are not supported`);

  const partial = num("partial_rotary_factor", 1);
  const rotaryDim = Math.floor(headDim * partial);
  if (partial > 1 || rotaryDim < 2 || rotaryDim % 2 !== 0)
    throw new CarvqError(
      `${where}: partial_rotary_factor ${partial} gives ${rotaryDim} rotary dimensions of ${headDim}; expected an even number from 2 to the head size`,
    );

  const attentionBias = flag("attention_bias", false);
  const qkvBias = architecture === "Qwen2ForCausalLM" || attentionBias;
  const oBias = architecture !== "Qwen2ForCausalLM" && attentionBias;

  const maxPositions = int("max_position_embeddings", 2048);
  return {
    architecture,
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    layers: int("num_hidden_layers"),
    heads,
    kvHeads,
    headDim,
    vocabSize: int("vocab_size"),
    rmsEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 10000),
    rotaryDim,
    ropeScaling: readRopeScaling(json, rotaryDim, maxPositions, where),
    tiedEmbeddings: flag("tie_word_embeddings", false),
    qkvBias,
    oBias,
    fusedProjections: architecture === "Phi3ForCausalLM",
    slidingWindow: readSlidingWindow(json, architecture, where),
    maxPositions,
  };
}

function readArchitecture(json: Json, where: string): Architecture {
  const list = json.architectures;
  if (!Array.isArray(list) || list.length === 0 || typeof list[0] !== "string") {
    throw new CarvqError(
      `${where}: architectures is ${JSON.stringify(list)}; expected a list naming one of ${SUPPORTED_ARCHITECTURES.join(", ")}`,
    );
  }
  const name = list[0];
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
    throw new CarvqError(`${where}: architecture ${name} is not supported; carvq runs ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  return name as Architecture;
}

function readRopeScaling(json: Json, rotaryDim: number, maxPositions: number, where: string): Llama3RopeScaling | LongRopeScaling | null {
  const value = json.rope_scaling;
  if (value === undefined || value === null) return null;
  if (typeof value !== "object" || Array.isArray(value))
    throw new CarvqError(`${where}: rope_scaling is ${JSON.stringify(value)}; expected an object or null`);
  const scaling = value as Json;
  const type = scaling.rope_type ?? scaling.type;
  if (type === "default") return null;
  const field = (name: string, from: Json = scaling, prefix = "rope_scaling."): number => {
    const v = from[name];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
      throw new CarvqError(`${where}: ${prefix}${name} is ${JSON.stringify(v)}; expected a positive number`);
    return v;
  };
  if (type === "longrope" || type === "su") {
    const factors = (name: string): number[] => {
      const list = scaling[name];
      if (
        !Array.isArray(list) ||
        list.length !== rotaryDim / 2 ||
        !list.every((v) => typeof v === "number" && Number.isFinite(v) && v > 0)
      ) {
        throw new CarvqError(`${where}: rope_scaling.${name} must list ${rotaryDim / 2} positive numbers (one per rotated pair)`);
      }
      return list as number[];
    };
    const originalMaxPositions =
      json.original_max_position_embeddings !== undefined
        ? field("original_max_position_embeddings", json, "")
        : field("original_max_position_embeddings");
    const factor = maxPositions / originalMaxPositions;
    const attentionFactor =
      scaling.attention_factor !== undefined && scaling.attention_factor !== null
        ? field("attention_factor")
        : factor <= 1
          ? 1
          : Math.sqrt(1 + Math.log(factor) / Math.log(originalMaxPositions));
    return {
      kind: "longrope",
      shortFactor: factors("short_factor"),
      longFactor: factors("long_factor"),
      originalMaxPositions,
      attentionFactor,
    };
  }
  if (type !== "llama3")
    throw new CarvqError(
      `${where}: rope_scaling type ${JSON.stringify(type)} is not supported; carvq implements "llama3", "longrope" (and none)`,
    );
  const scalingValues: Llama3RopeScaling = {
    kind: "llama3",
    factor: field("factor"),
    lowFreqFactor: field("low_freq_factor"),
    highFreqFactor: field("high_freq_factor"),
    originalMaxPositions: field("original_max_position_embeddings"),
  };
  if (scalingValues.highFreqFactor <= scalingValues.lowFreqFactor) {
    throw new CarvqError(
      `${where}: rope_scaling.high_freq_factor ${scalingValues.highFreqFactor} must exceed low_freq_factor ${scalingValues.lowFreqFactor}`,
    );
  }
  return scalingValues;
}

function readSlidingWindow(json: Json, architecture: Architecture, where: string): number | null {
  // Qwen2 configs carry a sliding_window even when use_sliding_window is false: it is then unused.
  if (architecture === "Qwen2ForCausalLM" && json.use_sliding_window !== true) return null;
  if (architecture === "LlamaForCausalLM") return null;
  const value = json.sliding_window;
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1)
    throw new CarvqError(`${where}: sliding_window is ${JSON.stringify(value)}; expected a positive whole number or null`);
  return value;
}

/**
 * RoPE's inverse frequencies for a window of `windowLength` tokens, one per rotated pair:
 * theta^(-2i / rotaryDim), then
 * - llama3 (Llama 3.1): wavelengths 2*pi / f longer than original_max / low_freq_factor are divided
 *   by `factor`, shorter than original_max / high_freq_factor kept, and those in between blended with
 *   s = (original_max / wavelength - low) / (high - low): (1 - s) f / factor + s f;
 * - longrope (Phi-3): divided by short_factor[i], or long_factor[i] when the window is longer than
 *   original_max_position_embeddings.
 */
export function ropeInverseFrequencies(
  config: Pick<HfConfig, "rotaryDim" | "ropeTheta" | "ropeScaling">,
  windowLength: number,
): Float64Array {
  const half = config.rotaryDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / config.ropeTheta ** ((2 * i) / config.rotaryDim);
  const scaling = config.ropeScaling;
  if (scaling === null) return inv;
  if (scaling.kind === "longrope") {
    const factors = windowLength > scaling.originalMaxPositions ? scaling.longFactor : scaling.shortFactor;
    for (let i = 0; i < half; i++) inv[i] = 1 / (factors[i] * config.ropeTheta ** ((2 * i) / config.rotaryDim));
    return inv;
  }
  const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: original } = scaling;
  const lowFreqWavelength = original / low;
  const highFreqWavelength = original / high;
  for (let i = 0; i < half; i++) {
    const wavelength = (2 * Math.PI) / inv[i];
    if (wavelength > lowFreqWavelength) inv[i] = inv[i] / factor;
    else if (wavelength >= highFreqWavelength) {
      const smooth = (original / wavelength - low) / (high - low);
      inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    }
  }
  return inv;
}

/** What RoPE's cos and sin are multiplied by: longrope's attention factor, else 1. */
export function ropeAttentionFactor(config: Pick<HfConfig, "ropeScaling">): number {
  return config.ropeScaling?.kind === "longrope" ? config.ropeScaling.attentionFactor : 1;
}
