import { describe, expect, it } from "vitest";
import { gemmScalar, TrainHeap, type GemmJob } from "../tools/adaptor/kernels.ts";
import { GemmPool } from "../tools/adaptor/pool.ts";
import { quantizeAdaptor } from "../tools/adaptor/quantize.ts";
import { adaptorBlobBytes, autoWidths, parseAdaptorSpec, PAPER_WIDTHS } from "../tools/adaptor/sizing.ts";
import { learningRate, trainAdaptor, type TrainOptions } from "../tools/adaptor/train.ts";
import { encodeAdaptorMlp, encodeAdaptorTable } from "../tools/blob/adaptor.ts";
import { addAdaptorRow } from "../tools/adaptor/forward.ts";
import type { FloatAdaptor, StoredAdaptor, StoredMatrix } from "../tools/adaptor/model.ts";
import { F16_TO_F32 } from "../tools/fp16.ts";
import type { Matrix } from "../tools/matrix.ts";
import { createRandom } from "../tools/random.ts";

function fill(heap: TrainHeap, seed: number): void {
  const random = createRandom(seed);
  for (let i = 0; i < heap.f32.length; i++) heap.f32[i] = random() * 2 - 1;
}

/** Every float of an adaptor, for bit-for-bit comparisons. */
function floats(a: FloatAdaptor): Float32Array {
  const parts = [a.table, ...a.layers.flatMap((l) => [l.weights, l.bias, ...(l.gamma ? [l.gamma, l.beta!] : [])])];
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return (
    a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  );
}

/** A residual with structure an adaptor can learn: a smooth function of a few hidden token features, plus noise. */
function structuredResidual(rows: number, cols: number, seed: number): Matrix {
  const random = createRandom(seed);
  const basis = Float32Array.from({ length: 3 * cols }, () => random() * 2 - 1);
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const z = [random() * 2 - 1, random() * 2 - 1, random() * 2 - 1];
    for (let e = 0; e < cols; e++) {
      let v = 0;
      for (let q = 0; q < 3; q++) v += Math.max(0, z[q] * basis[q * cols + e]) ** 2 - 0.1 * z[q] * basis[q * cols + e];
      data[r * cols + e] = v + 0.02 * (random() - 0.5);
    }
  }
  return { rows, cols, data };
}

describe("training kernels", () => {
  it("are built, and the SIMD GEMM gives the scalar reference's bits on every shape, stride and tail", () => {
    const simd = new TrainHeap(40000);
    const scalar = new TrainHeap(40000, false);
    expect(simd.simd && !scalar.simd).toBe(true);
    const random = createRandom(7);
    for (let trial = 0; trial < 60; trial++) {
      const m = 1 + Math.floor(random() * 19);
      const n = 1 + Math.floor(random() * 37);
      const k = 1 + Math.floor(random() * 23);
      const transposed = random() < 0.5;
      const job: GemmJob = {
        a: 16384,
        sai: transposed ? 1 : k + 1,
        sak: transposed ? m + 2 : 1,
        b: 16384 + 4000,
        ldb: n + 3,
        c: 16384 + 8000,
        ldc: n + 1,
        m,
        n,
        k,
        accumulate: random() < 0.5,
      };
      fill(simd, trial);
      fill(scalar, trial);
      simd.gemm(job);
      scalar.gemm(job);
      expect(sameBits(simd.f32, scalar.f32), `trial ${trial}: ${JSON.stringify(job)}`).toBe(true);
      // The scalar reference is what it says: f32 sums in order of k.
      const c = job.c + (m - 1) * job.ldc + (n - 1);
      fill(scalar, trial);
      let acc = job.accumulate ? scalar.f32[c] : 0;
      for (let kk = 0; kk < k; kk++)
        acc = Math.fround(
          acc + Math.fround(scalar.f32[job.a + (m - 1) * job.sai + kk * job.sak] * scalar.f32[job.b + kk * job.ldb + n - 1]),
        );
      gemmScalar(scalar.f32, job);
      expect(scalar.f32[c]).toBe(acc);
    }
  });

  it("give the same bits split over worker threads as on one", async () => {
    const jobs: GemmJob[] = [
      { a: 16384, sai: 70, sak: 1, b: 16384 + 20000, ldb: 130, c: 16384 + 40000, ldc: 130, m: 150, n: 130, k: 70, accumulate: false },
      { a: 16384, sai: 1, sak: 150, b: 16384 + 20000, ldb: 90, c: 16384 + 40000, ldc: 90, m: 150, n: 90, k: 100, accumulate: true },
    ];
    for (const job of jobs) {
      const one = new TrainHeap(80000);
      const two = new TrainHeap(80000);
      fill(one, 3);
      fill(two, 3);
      one.gemm(job);
      const pool = await GemmPool.start(two, 2, 0);
      expect(pool.threads).toBe(2);
      pool.gemm(job);
      await pool.close();
      expect(sameBits(one.f32, two.f32)).toBe(true);
    }
  });
});

describe("adaptor training", () => {
  const fast: Partial<TrainOptions> = { epochs: 6, batch: 64, seed: 5 };

  it("is deterministic: the same bits on the SIMD kernel and the scalar reference", async () => {
    const residual = structuredResidual(300, 24, 1);
    const a = await trainAdaptor(residual, [4, 16, 16, 24], fast);
    const b = await trainAdaptor(residual, [4, 16, 16, 24], { ...fast, simd: false });
    const c = await trainAdaptor(residual, [4, 16, 16, 24], fast);
    expect(sameBits(floats(a.adaptor), floats(b.adaptor))).toBe(true);
    expect(sameBits(floats(a.adaptor), floats(c.adaptor))).toBe(true);
    expect(a.losses).toEqual(b.losses);
    const other = await trainAdaptor(residual, [4, 16, 16, 24], { ...fast, seed: 6 });
    expect(sameBits(floats(a.adaptor), floats(other.adaptor))).toBe(false);
  });

  it("writes the same adaptor bytes on 1 and 2 threads (products large enough to be split)", async () => {
    const residual = structuredResidual(2048, 256, 2);
    const options = { epochs: 2, seed: 1 };
    const one = await trainAdaptor(residual, [8, 64, 128, 256], { ...options, threads: 1 });
    const two = await trainAdaptor(residual, [8, 64, 128, 256], { ...options, threads: 2 });
    for (const precision of ["int8", "fp16"] as const) {
      const [p, q] = [quantizeAdaptor(one.adaptor, precision), quantizeAdaptor(two.adaptor, precision)];
      expect(Buffer.from(encodeAdaptorTable(p)).equals(Buffer.from(encodeAdaptorTable(q)))).toBe(true);
      expect(Buffer.from(encodeAdaptorMlp(p)).equals(Buffer.from(encodeAdaptorMlp(q)))).toBe(true);
    }
    expect(one.flops).toBe(two.flops);
  });

  it("lowers the L1 loss on a residual with structure, and stops early on a plateau", async () => {
    const residual = structuredResidual(400, 32, 3);
    const trained = await trainAdaptor(residual, [4, 32, 32, 32], { epochs: 150, batch: 100, seed: 2 });
    expect(trained.losses[trained.losses.length - 1]).toBeLessThan(0.5 * trained.losses[0]);
    const flat = await trainAdaptor({ rows: 64, cols: 8, data: new Float32Array(64 * 8) }, [2, 8, 8], { epochs: 5000, batch: 64 });
    expect(flat.stopped).toBe("plateau");
    expect(flat.epochs).toBeLessThan(5000);
  });

  it("warms the learning rate up, then decays it along a cosine to its floor", () => {
    expect(learningRate(0, 1000, 0.1, 0.05)).toBeCloseTo(0.01, 12);
    expect(learningRate(99, 1000, 0.1, 0.05)).toBe(1);
    expect(learningRate(550, 1000, 0.1, 0.05)).toBeCloseTo(0.525, 12);
    expect(learningRate(1000, 1000, 0.1, 0.05)).toBeCloseTo(0.05, 12);
  });

  it("refuses widths that do not end at the table's width", async () => {
    await expect(trainAdaptor(structuredResidual(10, 8, 1), [4, 16, 9])).rejects.toThrow(/output width 9 must be the table's 8/);
  });
});

describe("adaptor sizing", () => {
  it("parses --adaptor and refuses bad values", () => {
    expect(parseAdaptorSpec("paper")).toBe("paper");
    expect(parseAdaptorSpec("8,64,128")).toEqual([8, 64, 128]);
    expect(parseAdaptorSpec("8,0")).toMatchObject({ error: expect.stringMatching(/1 to 4096, got 0/) });
    expect(parseAdaptorSpec("big")).toMatchObject({ error: expect.stringMatching(/none, paper, auto/) });
    expect(parseAdaptorSpec("1,2,3,4,5")).toMatchObject({ error: expect.stringMatching(/1 to 4 comma-separated/) });
  });

  it("auto stays inside the budget, takes the paper's sizes where they fit, and declines a narrow table", () => {
    const llama = autoWidths(128256, 2048, 0.2, "int8");
    expect(llama.widths).toEqual([...PAPER_WIDTHS, 2048]);
    for (const [rows, cols, bpp] of [
      [128256, 2048, 0.1],
      [128256, 2048, 0.03],
      [32000, 4096, 0.05],
      [50000, 768, 0.5],
      [341479, 100, 1.5],
    ] as const) {
      for (const precision of ["int8", "fp16"] as const) {
        const choice = autoWidths(rows, cols, bpp, precision);
        expect(choice.widths, choice.reason).not.toBeNull();
        expect(adaptorBlobBytes(rows, choice.widths!, precision)).toBeLessThanOrEqual((bpp * rows * cols) / 8);
        expect(choice.widths![choice.widths!.length - 1]).toBe(cols);
      }
    }
    const glove = autoWidths(341479, 100, 0.1, "int8");
    expect(glove.widths).toBeNull();
    expect(glove.reason).toMatch(/no adaptor; the 0.1 bpp budget/);
    // The paper's sizes on a 100-wide table cost about 1.5 bpp in int8 and 2.7 in fp16.
    expect((8 * adaptorBlobBytes(341479, [16, 384, 512, 100], "int8")) / (341479 * 100)).toBeCloseTo(1.5, 1);
  });
});

/** An f32 register: every value stored in it is rounded to f32 (the literal reading's rounding). */
const reg = new Float32Array(1);
function r32(v: number): number {
  reg[0] = v;
  return reg[0];
}

/** FORMAT.md's eight-lane sum read literally: lane i mod 8 below 8·floor(n/8), combined, then the tail. */
function literalLaneSum(terms: number[]): number {
  const full = terms.length - (terms.length % 8);
  const lane = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < full; i++) lane[i % 8] = r32(lane[i % 8] + terms[i]);
  let total = r32(r32(r32(lane[0] + lane[4]) + r32(lane[1] + lane[5])) + r32(r32(lane[2] + lane[6]) + r32(lane[3] + lane[7])));
  for (let i = full; i < terms.length; i++) total = r32(total + terms[i]);
  return total;
}

/** FORMAT.md's adaptor evaluation read line by line (f32 everywhere, eight-lane sums). */
function literalAdaptorRow(adaptor: StoredAdaptor, t: number, out: Float32Array, at: number): void {
  const value = (m: StoredMatrix, r: number, w: number, i: number) =>
    m.scales === null ? F16_TO_F32[m.values[r * w + i]] : r32(F16_TO_F32[m.scales[r]] * m.values[r * w + i]);
  let x: number[] = [];
  for (let i = 0; i < adaptor.m0; i++) x.push(value(adaptor.table, t, adaptor.m0, i));
  for (const layer of adaptor.layers) {
    const y: number[] = [];
    for (let o = 0; o < layer.outputs; o++) {
      const weight = (i: number) =>
        layer.weights.scales === null ? F16_TO_F32[layer.weights.values[o * layer.inputs + i]] : layer.weights.values[o * layer.inputs + i];
      let sum = literalLaneSum(x.map((xi, i) => r32(weight(i) * xi)));
      if (layer.weights.scales !== null) sum = r32(sum * F16_TO_F32[layer.weights.scales[o]]);
      y.push(r32(sum + F16_TO_F32[layer.bias[o]]));
    }
    if (layer.gamma !== null && layer.beta !== null) {
      for (let o = 0; o < layer.outputs; o++) y[o] = Math.max(0, y[o]);
      const mean = r32(literalLaneSum(y) / layer.outputs);
      const variance = r32(literalLaneSum(y.map((v) => r32(r32(v - mean) * r32(v - mean)))) / layer.outputs);
      const inverse = r32(1 / r32(Math.sqrt(r32(variance + r32(1e-5)))));
      for (let o = 0; o < layer.outputs; o++)
        y[o] = r32(r32(r32(r32(y[o] - mean) * inverse) * F16_TO_F32[layer.gamma[o]]) + F16_TO_F32[layer.beta[o]]);
    }
    x = y;
  }
  for (let j = 0; j < x.length; j++) out[at + j] = Math.fround(out[at + j] + x[j]);
}

describe("reference evaluation of a trained adaptor", () => {
  it("is bit for bit FORMAT.md's evaluation read line by line, int8 and fp16, odd widths", async () => {
    const residual = structuredResidual(120, 22, 9);
    const { adaptor } = await trainAdaptor(residual, [5, 13, 7, 22], { epochs: 20, batch: 32 });
    for (const precision of ["int8", "fp16"] as const) {
      const stored = quantizeAdaptor(adaptor, precision);
      const fast = new Float32Array(120 * 22).fill(0.25);
      const literal = fast.slice();
      for (let t = 0; t < 120; t++) {
        addAdaptorRow(stored, t, fast, t * 22);
        literalAdaptorRow(stored, t, literal, t * 22);
      }
      expect(sameBits(fast, literal)).toBe(true);
    }
  });
});
