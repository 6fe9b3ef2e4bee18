import { describe, expect, it } from "vitest";
import { kmeans } from "../tools/quant/kmeans.ts";
import { fitGroup } from "../tools/quant/rvq.ts";
import { assign16, assign16Scalar } from "../tools/quant/kernels.ts";
import { createRandom } from "../tools/random.ts";

describe("k-means assignment kernel", () => {
  it("gives bit-identical indices and scores to the scalar reference, ties included", () => {
    const random = createRandom(5);
    for (const dim of [1, 3, 4, 8, 20]) {
      const count = 777;
      const points = Float32Array.from({ length: count * dim }, () => (random() - 0.5) * 4);
      const centroids = Float32Array.from({ length: 16 * dim }, () => (random() - 0.5) * 4);
      centroids.copyWithin(5 * dim, 2 * dim, 3 * dim); // centroids 2 and 5 equal: ties go to 2
      points.set(centroids.subarray(2 * dim, 3 * dim), 0);
      const simd = { assignment: new Int32Array(count), score: new Float32Array(count) };
      const scalar = { assignment: new Int32Array(count), score: new Float32Array(count) };
      assign16(points, count, dim, centroids, simd.assignment, simd.score);
      assign16Scalar(points, count, dim, centroids, scalar.assignment, scalar.score);
      expect(Array.from(simd.assignment), `dim ${dim}`).toEqual(Array.from(scalar.assignment));
      expect(Buffer.from(simd.score.buffer).equals(Buffer.from(scalar.score.buffer)), `dim ${dim}`).toBe(true);
      expect(simd.assignment[0]).toBe(2);
      // The scores are real: each is the minimum over the 16 centroids of ||c||² − 2·p·c.
      for (let p = 0; p < count; p += 97) {
        let best = Infinity;
        for (let k = 0; k < 16; k++) {
          let s = 0;
          for (let e = 0; e < dim; e++) s += centroids[k * dim + e] ** 2 - 2 * points[p * dim + e] * centroids[k * dim + e];
          best = Math.min(best, s);
        }
        expect(simd.score[p]).toBeCloseTo(best, 3);
      }
    }
  });

  it("picks as the reference does when scores overflow to infinities and NaN, or many tie", () => {
    const dim = 4;
    const specials = [NaN, Infinity, -Infinity, 3e38, -3e38, 0, -0, 1];
    const random = createRandom(8);
    const count = 300;
    const pick = () => (random() < 0.3 ? specials[Math.floor(random() * specials.length)] : Math.round((random() - 0.5) * 4));
    const points = Float32Array.from({ length: count * dim }, pick);
    // Integer-valued centroids with repeats: many exact ties between scores.
    const centroids = Float32Array.from({ length: 16 * dim }, (_, i) => (i < 8 * dim ? pick() : Math.round((random() - 0.5) * 2)));
    const simd = { assignment: new Int32Array(count), score: new Float32Array(count) };
    const scalar = { assignment: new Int32Array(count), score: new Float32Array(count) };
    assign16(points, count, dim, centroids, simd.assignment, simd.score);
    assign16Scalar(points, count, dim, centroids, scalar.assignment, scalar.score);
    expect(Array.from(simd.assignment)).toEqual(Array.from(scalar.assignment));
    // The same values (+0 and -0 told apart); NaN's payload bits are the engine's and may differ.
    expect(Array.from(simd.score)).toEqual(Array.from(scalar.score));
    expect(new Set(scalar.assignment).size).toBeGreaterThan(3);
    expect(scalar.score.some((v) => Number.isNaN(v))).toBe(true);
  });

  it("runs k-means' Lloyd iterations in the kernel with the JavaScript loop's bits (weights, empty clusters, early stop)", () => {
    const random = createRandom(11);
    let compared = 0;
    for (const dim of [1, 3, 4, 8, 20]) {
      for (const weighted of [false, true]) {
        for (const count of [9, 40, 1024]) {
          // Few distinct values: duplicates leave clusters empty, which are re-seeded.
          const points = Float32Array.from({ length: count * dim }, () => (count === 40 ? Math.round(random() * 2) : (random() - 0.5) * 3));
          const weights = weighted ? Float32Array.from({ length: count }, () => random() * 2) : null;
          const seed = Math.floor(random() * 1e9);
          const fast = kmeans(points, count, dim, 16, 25, createRandom(seed), weights, true);
          const slow = kmeans(points, count, dim, 16, 25, createRandom(seed), weights, false);
          expect(Array.from(fast), `dim ${dim}, count ${count}, weighted ${weighted}`).toEqual(Array.from(slow));
          compared++;
        }
      }
    }
    expect(compared).toBe(30);
  });

  it("fits a group (k-means and greedy encoding per level) in the kernels with the JavaScript's codes and codebooks", () => {
    const random = createRandom(12);
    for (const h of [1, 4, 8, 20]) {
      for (const count of [7, 600]) {
        for (const weighted of [false, true]) {
          const vectors = Float32Array.from({ length: count * h }, () => (random() - 0.5) * 3);
          const o = {
            h,
            levels: 3,
            iters: 10,
            seed: 5,
            beam: 1,
            refine: 0,
            weights: weighted ? Float32Array.from({ length: count }, () => random()) : null,
          };
          const fast = { codes: new Uint8Array(count * 3), halves: new Uint16Array(3 * 16 * h) };
          const slow = { codes: new Uint8Array(count * 3), halves: new Uint16Array(3 * 16 * h) };
          fitGroup(vectors, count, o, fast.codes, fast.halves);
          fitGroup(vectors, count, { ...o, kernel: false }, slow.codes, slow.halves);
          expect(Array.from(fast.codes), `h ${h}, count ${count}`).toEqual(Array.from(slow.codes));
          expect(Array.from(fast.halves), `h ${h}, count ${count}`).toEqual(Array.from(slow.halves));
          expect(new Set(fast.codes).size).toBeGreaterThan(1);
        }
      }
    }
  });
});
