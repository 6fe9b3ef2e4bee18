import { CarvqError } from "./errors.ts";
import type { Matrix } from "./matrix.ts";
import { createRandom, deriveSeed } from "./random.ts";

/**
 * Seeded synthetic embedding tables with the traits real ones have, for speed and memory tests at
 * LLM scale (128256 x 2048 and up). Synthetic data never stands in for a quality claim.
 *
 * Row t (token id t, read as a frequency rank: BPE vocabularies put frequent merges first) is
 *
 *   x_t = mu + g_t * (centre[c_t] + sum_k z_tk * s_k * u_k + sigma * e_t),  then outlier dims
 *
 * - mu: a shared mean offset (real tables are far from zero-mean);
 * - u_k, s_k: `rank` random unit directions with a power-law spectrum of standard deviations
 *   (anisotropy: a few directions carry much of the variance);
 * - centre[c]: one of `clusters` random directions, picked with a skew so cluster sizes differ
 *   (clustered directions: related tokens point the same way);
 * - g_t: a log-normal row scale whose median shrinks with t, and a small share of near-untrained
 *   rows at a tenth of the size (rarer tokens have smaller norms);
 * - e_t: isotropic noise, the part no low-rank structure explains;
 * - a few outlier dimensions with a large same-signed offset (the "massive" dimensions of LLMs).
 *
 * Every row draws from its own generator seeded by (seed, row), so the table does not depend on
 * the order rows are generated in, and is the same on every machine (integer hashing plus
 * Math.log/sqrt/cos, which V8 computes with its own fdlibm port everywhere). Cost per row is
 * O(rank * cols): the low-rank factors are never multiplied out into a cols x cols covariance.
 */

export interface SynthOptions {
  readonly rows: number;
  readonly cols: number;
  readonly seed: number;
  /** Overrides of the default traits; tests switch single traits off to show each one matters. */
  readonly traits?: Partial<SynthTraits>;
}

export interface SynthTraits {
  /** Typical element standard deviation of a row's deviation from the mean (Llama-class tables sit near 0.02). */
  readonly elementScale: number;
  /** Number of principal directions; combining them is the generator's main cost per row. */
  readonly rank: number;
  /** Power-law exponent of the principal variances: s_k^2 proportional to (k + 1)^-spectrumDecay. */
  readonly spectrumDecay: number;
  /** Shares of a row's deviation variance carried by the principal directions, the cluster centre and isotropic noise. */
  readonly principalShare: number;
  readonly clusterShare: number;
  readonly noiseShare: number;
  readonly clusters: number;
  /** Mean offset norm relative to the typical deviation norm. */
  readonly meanToDeviation: number;
  /** log g_t = -normDecay * t / rows + normSpread * N(0, 1). */
  readonly normDecay: number;
  readonly normSpread: number;
  /** Share of rows that look untrained (reserved or never-seen tokens) and their scale. */
  readonly untrainedShare: number;
  readonly untrainedScale: number;
  /** Outlier dimensions: how many (default about one per 400 columns, 1 to 6) and their offset in units of elementScale. */
  readonly outliers?: number;
  readonly outlierOffset: number;
}

export const DEFAULT_SYNTH_TRAITS: SynthTraits = {
  elementScale: 0.02,
  rank: 32,
  spectrumDecay: 1,
  principalShare: 0.35,
  clusterShare: 0.35,
  noiseShare: 0.3,
  clusters: 256,
  meanToDeviation: 0.6,
  normDecay: 0.6,
  normSpread: 0.25,
  untrainedShare: 0.01,
  untrainedScale: 0.1,
  outlierOffset: 12,
};

/** The same limit the readers apply: 2^31 float32 values (8 GiB). */
export const MAX_SYNTH_ELEMENTS = 2 ** 31;

/** The seeded parts shared by all rows. */
interface SynthFactors {
  readonly traits: SynthTraits;
  readonly mean: Float32Array;
  /** rank x cols, row k = s_k * u_k (scale folded in so each row costs one multiply-add per element and direction). */
  readonly principal: Float32Array;
  readonly rank: number;
  /** clusters x cols, each a random direction with the cluster share's length. */
  readonly centres: Float32Array;
  readonly noiseScale: number;
  readonly outlierDims: readonly number[];
  /** Per outlier dimension: its signed offset. */
  readonly outlierOffsets: readonly number[];
}

/** Generates a rows x cols table as described above; the same options give the same bytes. */
export function synthMatrix(options: SynthOptions): Matrix {
  const { rows, cols, seed } = checkOptions(options);
  const factors = makeFactors(cols, seed, { ...DEFAULT_SYNTH_TRAITS, ...options.traits });
  const data = new Float32Array(rows * cols);
  for (let t = 0; t < rows; t++) writeRow(data.subarray(t * cols, (t + 1) * cols), t, rows, seed, factors);
  return { rows, cols, data };
}

function checkOptions(options: SynthOptions): SynthOptions {
  const { rows, cols, seed } = options;
  if (!Number.isSafeInteger(rows) || rows < 1) throw new CarvqError(`synth: rows is ${rows}; expected a whole number of at least 1`);
  if (!Number.isSafeInteger(cols) || cols < 1) throw new CarvqError(`synth: cols is ${cols}; expected a whole number of at least 1`);
  if (rows * cols > MAX_SYNTH_ELEMENTS)
    throw new CarvqError(`synth: shape ${rows}x${cols} has ${rows * cols} values; expected at most ${MAX_SYNTH_ELEMENTS}`);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new CarvqError(`synth: seed is ${seed}; expected a whole number in 0..4294967295`);
  return options;
}

/** The default number of outlier dimensions: about one per 400 columns, between 1 and 6. */
export function defaultOutlierCount(cols: number): number {
  return Math.min(6, Math.max(1, Math.round(cols / 400)));
}

function makeFactors(cols: number, seed: number, traits: SynthTraits): SynthFactors {
  if (!Number.isSafeInteger(traits.clusters) || traits.clusters < 1)
    throw new CarvqError(`synth: traits.clusters is ${traits.clusters}; expected a whole number of at least 1`);
  if (!Number.isSafeInteger(traits.rank) || traits.rank < 0)
    throw new CarvqError(`synth: traits.rank is ${traits.rank}; expected a whole number of at least 0`);
  const random = createRandom(deriveSeed(seed, 0x5f3759df));
  const gaussian = gaussianSource(random);
  const scale = traits.elementScale;
  // A row's deviation has cols * scale^2 of variance (scale^2 per element), split by the shares.
  const rank = Math.min(traits.rank, cols);
  const spectrum = Array.from({ length: rank }, (_, k) => (k + 1) ** -traits.spectrumDecay);
  const spectrumTotal = spectrum.reduce((sum, v) => sum + v, 0);
  const principal = new Float32Array(rank * cols);
  for (let k = 0; k < rank; k++) {
    const length = scale * Math.sqrt((traits.principalShare * cols * spectrum[k]) / spectrumTotal);
    writeDirection(principal.subarray(k * cols, (k + 1) * cols), gaussian, length);
  }
  const centres = new Float32Array(traits.clusters * cols);
  const centreLength = scale * Math.sqrt(traits.clusterShare * cols);
  for (let c = 0; c < traits.clusters; c++) writeDirection(centres.subarray(c * cols, (c + 1) * cols), gaussian, centreLength);
  const mean = new Float32Array(cols);
  writeDirection(mean, gaussian, traits.meanToDeviation * scale * Math.sqrt(cols));
  const outlierDims = pickDistinct(random, cols, traits.outliers ?? defaultOutlierCount(cols));
  const outlierOffsets = outlierDims.map(() => (random() < 0.5 ? -1 : 1) * traits.outlierOffset * scale * (0.75 + 0.5 * random()));
  return { traits, mean, principal, rank, centres, noiseScale: scale * Math.sqrt(traits.noiseShare), outlierDims, outlierOffsets };
}

/** Fills `target` with a random direction of the given length. */
function writeDirection(target: Float32Array, gaussian: () => number, length: number): void {
  let squares = 0;
  for (let j = 0; j < target.length; j++) {
    const v = gaussian();
    target[j] = v;
    squares += v * v;
  }
  const scale = length / Math.sqrt(squares || 1);
  for (let j = 0; j < target.length; j++) target[j] *= scale;
}

function pickDistinct(random: () => number, range: number, count: number): number[] {
  const picked = new Set<number>();
  while (picked.size < Math.min(count, range)) picked.add(Math.floor(random() * range));
  return [...picked].sort((a, b) => a - b);
}

/** Box-Muller over a uniform source: standard normal numbers. */
function gaussianSource(random: () => number): () => number {
  return () => {
    const u = 1 - random(); // (0, 1], so the log is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
}

/** Writes row t into `row`. */
function writeRow(row: Float32Array, t: number, rows: number, seed: number, f: SynthFactors): void {
  const random = createRandom(deriveSeed(seed, t, 1));
  const gaussian = gaussianSource(random);
  const scale = rowScale(t / rows, f.traits, random, gaussian);
  // Skewed cluster choice (u^2): low-numbered clusters are larger, as topic clusters are.
  const cluster = Math.floor(random() ** 2 * f.traits.clusters);
  writeMeanClusterAndNoise(row, f, cluster, scale, deriveSeed(seed, t, 2));
  addPrincipal(row, f, scale, gaussian);
  for (let i = 0; i < f.outlierDims.length; i++) {
    const dim = f.outlierDims[i];
    // Outliers keep their sign on every row and grow with the row's scale, as massive dimensions do.
    row[dim] = f.mean[dim] + f.outlierOffsets[i] * (0.5 + 0.5 * scale) * (1 + 0.2 * gaussian());
  }
}

/** g_t: log-normal around a median that falls from 1 to exp(-normDecay) across the vocabulary. */
function rowScale(rank: number, traits: SynthTraits, random: () => number, gaussian: () => number): number {
  const untrained = random() < traits.untrainedShare ? traits.untrainedScale : 1;
  return untrained * Math.exp(-traits.normDecay * rank + traits.normSpread * gaussian());
}

/** Mean and standard deviation of the sum of four uniform bytes. */
const BYTE_SUM_MEAN = 4 * 127.5;
const BYTE_SUM_STD = Math.sqrt((4 * (256 * 256 - 1)) / 12);

/**
 * row = mean + scale * (centre[cluster] + noise). The noise is the hot path (one value per element
 * of the table), so it uses an inlined splitmix32 counter: the sum of the four bytes of each hash,
 * centred and scaled to unit variance, is close enough to normal for isotropic filler.
 */
function writeMeanClusterAndNoise(row: Float32Array, f: SynthFactors, cluster: number, scale: number, noiseSeed: number): void {
  const centreStart = cluster * row.length;
  const noise = (scale * f.noiseScale) / BYTE_SUM_STD;
  let state = noiseSeed;
  for (let j = 0; j < row.length; j++) {
    state = (state + 0x9e3779b9) | 0;
    let z = Math.imul(state ^ (state >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    z ^= z >>> 15;
    const byteSum = (z & 0xff) + ((z >>> 8) & 0xff) + ((z >>> 16) & 0xff) + (z >>> 24);
    row[j] = f.mean[j] + scale * f.centres[centreStart + j] + noise * (byteSum - BYTE_SUM_MEAN);
  }
}

/**
 * row += scale * sum_k z_k * principal[k], eight directions per pass over the row: reading and
 * writing the row once per eight directions instead of once per direction took the 128256 x 2048
 * table from 13 s to 5 s.
 */
function addPrincipal(row: Float32Array, f: SynthFactors, scale: number, gaussian: () => number): void {
  const n = row.length;
  const p = f.principal;
  let k = 0;
  for (; k + 8 <= f.rank; k += 8) {
    const c0 = scale * gaussian(),
      c1 = scale * gaussian(),
      c2 = scale * gaussian(),
      c3 = scale * gaussian();
    const c4 = scale * gaussian(),
      c5 = scale * gaussian(),
      c6 = scale * gaussian(),
      c7 = scale * gaussian();
    const s0 = k * n,
      s1 = s0 + n,
      s2 = s1 + n,
      s3 = s2 + n,
      s4 = s3 + n,
      s5 = s4 + n,
      s6 = s5 + n,
      s7 = s6 + n;
    for (let j = 0; j < n; j++) {
      row[j] +=
        c0 * p[s0 + j] +
        c1 * p[s1 + j] +
        c2 * p[s2 + j] +
        c3 * p[s3 + j] +
        c4 * p[s4 + j] +
        c5 * p[s5 + j] +
        c6 * p[s6 + j] +
        c7 * p[s7 + j];
    }
  }
  for (; k < f.rank; k++) {
    const c = scale * gaussian();
    const start = k * n;
    for (let j = 0; j < n; j++) row[j] += c * p[start + j];
  }
}
