import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../host/common.ts";
import { f32ToF16 } from "../tools/fp16.ts";
import { matmulReference, type MatmulJob, type WeightArray, type WeightDtype } from "../tools/hf/matmul.ts";
import { MATMUL_WORKER, openMatmul } from "../tools/hf/matmul-pool.ts";
import { createRandom } from "../tools/random.ts";

/** bf16 bits of an f32 value that bf16 holds exactly (the top half of its f32 bits). */
function bf16(value: number): number {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0];
  if ((bits & 0xffff) !== 0) throw new Error(`${value} is not a bf16 value`);
  return bits >>> 16;
}

describe("matmul reference (tools/hf/matmul.ts)", () => {
  it("sums in FORMAT.md's eight-lane order, not in plain order", () => {
    // One row of 9 terms (x = 1): lanes L0..L7 hold terms 0..7, term 8 is the tail:
    // ((L0 + L4) + (L1 + L5)) + ((L2 + L6) + (L3 + L7)) + t8 = ((2^24 - 2^24) + 1) + (1 + 0) + 0.5 = 2.5.
    // In plain order 2^24 + 1 rounds to 2^24 (ties to even) twice, so the ones are lost: 0.5.
    const terms = [2 ** 24, 1, 1, 0, -(2 ** 24), 0, 0, 0, 0.5];
    const x = new Float32Array(9).fill(1);
    for (const dtype of ["bf16", "f32"] as const) {
      const weight = dtype === "f32" ? Float32Array.from(terms) : Uint16Array.from(terms, bf16);
      const out = new Float32Array(1);
      matmulReference({ x, rows: 1, weight, dtype, inDim: 9, outDim: 1, out });
      expect(out[0]).toBe(2.5);
    }
  });

  it("computes x · Wᵀ exactly where every partial sum is an integer (f16, several rows and columns)", () => {
    const rows = 3,
      inDim = 21,
      outDim = 5;
    const w = Array.from({ length: outDim * inDim }, (_, i) => ((i * 7) % 11) - 5);
    const xs = Array.from({ length: rows * inDim }, (_, i) => ((i * 5) % 9) - 4);
    const job: MatmulJob = {
      x: Float32Array.from(xs),
      rows,
      weight: Uint16Array.from(w, f32ToF16),
      dtype: "f16",
      inDim,
      outDim,
      out: new Float32Array(rows * outDim),
    };
    matmulReference(job);
    for (let t = 0; t < rows; t++) {
      for (let o = 0; o < outDim; o++) {
        let sum = 0;
        for (let k = 0; k < inDim; k++) sum += w[o * inDim + k] * xs[t * inDim + k];
        expect(job.out[t * outDim + o]).toBe(sum);
      }
    }
  });

  it("refuses a job whose arrays are too short, naming the field", () => {
    const job: MatmulJob = {
      x: new Float32Array(4),
      rows: 2,
      weight: new Uint16Array(6),
      dtype: "bf16",
      inDim: 3,
      outDim: 2,
      out: new Float32Array(4),
    };
    expect(() => matmulReference(job)).toThrow(/x holds 4 values, 2 x 3 needs 6/);
    expect(() => matmulReference({ ...job, x: new Float32Array(6), dtype: "f32" })).toThrow(/f32 weight must be a Float32Array/);
  });
});

/** Random weights of a dtype: normal values spread over several binades, some f16 subnormals and signed zeros. */
function randomWeights(dtype: WeightDtype, count: number, seed: number): WeightArray {
  const random = createRandom(seed);
  const value = () => {
    const r = random();
    if (r < 0.02) return r < 0.01 ? -0 : 0;
    if (r < 0.06 && dtype === "f16") return (random() - 0.5) * 1e-5; // f16 subnormals
    return (random() - 0.5) * 2 ** Math.floor(random() * 8 - 4);
  };
  if (dtype === "f32") return Float32Array.from({ length: count }, value);
  const words = new Uint16Array(count);
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  for (let i = 0; i < count; i++) {
    f[0] = value();
    words[i] = dtype === "f16" ? f32ToF16(f[0]) : u[0] >>> 16;
  }
  return words;
}

function randomJob(dtype: WeightDtype, rows: number, inDim: number, outDim: number, seed: number): MatmulJob {
  const random = createRandom(seed + 1);
  return {
    x: Float32Array.from({ length: rows * inDim }, () => (random() - 0.5) * 4),
    rows,
    weight: randomWeights(dtype, inDim * outDim, seed),
    dtype,
    inDim,
    outDim,
    out: new Float32Array(rows * outDim),
  };
}

/** The bits of a Float32Array, so that -0 and +0 differ and a mismatch prints as integers. */
function bits(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
}

function firstDifference(a: Float32Array, b: Float32Array): string {
  const ua = bits(a),
    ub = bits(b);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return `element ${i}: ${a[i]} vs ${b[i]}`;
  return "none";
}

describe("matmul WASM kernel and pool (tools/hf/matmul-pool.ts)", () => {
  // Shapes that reach every path: the 1x4 tile with its 16-term and 8-term passes, the one-output
  // tail (outDim mod 4), the per-term tail (inDim mod 8), several L2 blocks (bf16 rows of 2050
  // weights: 127 rows a block), one row and several.
  const shapes: [number, number, number][] = [
    [3, 37, 11],
    [1, 8, 4],
    [5, 2050, 262],
    [2, 24, 1],
  ];

  for (const dtype of ["bf16", "f16", "f32"] as const) {
    it(`SIMD kernel, scalar twin and JavaScript reference agree bit for bit (${dtype})`, async () => {
      const simd = await openMatmul();
      const scalar = await openMatmul({ scalar: true });
      try {
        for (const [rows, inDim, outDim] of shapes) {
          const job = randomJob(dtype, rows, inDim, outDim, rows * 1000 + inDim);
          const want = new Float32Array(rows * outDim);
          matmulReference({ ...job, out: want });
          const fromSimd = new Float32Array(rows * outDim).fill(NaN);
          simd.matmul({ ...job, out: fromSimd });
          const fromScalar = new Float32Array(rows * outDim).fill(NaN);
          scalar.matmul({ ...job, out: fromScalar });
          expect(firstDifference(fromSimd, want), `SIMD ${rows}x${inDim}x${outDim}`).toBe("none");
          expect(firstDifference(fromScalar, want), `scalar ${rows}x${inDim}x${outDim}`).toBe("none");
        }
      } finally {
        await simd.close();
        await scalar.close();
      }
    });
  }

  it("gives the same bits on 1 and 2 threads, for weights placed by allocWeight and for foreign ones", async () => {
    const one = await openMatmul({ threads: 1 });
    const two = await openMatmul({ threads: 2, minFlops: 0 });
    try {
      for (const dtype of ["bf16", "f16"] as const) {
        const job = randomJob(dtype, 7, 300, 517, 99);
        const placed = two.allocWeight(dtype, job.weight.length) as Uint16Array;
        placed.set(job.weight as Uint16Array);
        const a = new Float32Array(7 * 517),
          b = new Float32Array(7 * 517),
          c = new Float32Array(7 * 517);
        one.matmul({ ...job, out: a });
        two.matmul({ ...job, out: b });
        two.matmul({ ...job, weight: placed, out: c });
        expect(firstDifference(a, b)).toBe("none");
        expect(firstDifference(a, c)).toBe("none");
        const want = new Float32Array(7 * 517);
        matmulReference({ ...job, out: want });
        expect(firstDifference(a, want)).toBe("none");
      }
    } finally {
      await one.close();
      await two.close();
    }
  });

  it("cuts rows into passes when x and out outgrow the I/O region, with the same bits", async () => {
    // A 64 KiB I/O region: a row of x and out (100 + 3001 floats) takes 12.4 KB, so 7 rows go in
    // passes of 5 and 2 (after the 16 KiB a small weight copied per call takes: 3 and 3 and 1).
    const pool = await openMatmul({ ioBytes: 65536 });
    try {
      for (const [outDim, what] of [
        [3001, "weight placed once (600 KB, too big to copy per call)"],
        [41, "weight copied per call"],
      ] as const) {
        const rows = 7,
          inDim = 100;
        const job = randomJob("bf16", rows, inDim, outDim, outDim);
        const got = new Float32Array(rows * outDim);
        pool.matmul({ ...job, out: got });
        pool.matmul({ ...job, out: got }); // the second call uses the placement the first made
        const want = new Float32Array(rows * outDim);
        matmulReference({ ...job, out: want });
        expect(firstDifference(got, want), what).toBe("none");
      }
      expect(() => pool.matmul(randomJob("bf16", 1, 20000, 1, 3))).toThrow(/one row of x \(20000\) and of out \(1\) needs 80004 bytes/);
      const wide = randomJob("f16", 1, 70000, 1, 3);
      expect(() => pool.matmul(wide)).toThrow(
        /f16 rows of 70000 weights need 1120000 bytes of the kernel's scratch, more than its 1048576/,
      );
    } finally {
      await pool.close();
    }
  });
  it("fails loudly, naming the missing build, where the kernel or the worker bundle is absent", async () => {
    // The pool bundled alone into a folder with no dist/ beside it: first without build/hf-kernels.wasm
    // (no pool at all), then with it (one thread works, two need the worker bundle).
    const dir = mkdtempSync(join(tmpdir(), "carvq-hf-matmul-"));
    try {
      // The loaders take the bundle's parent folder as the package root: pkg, inside dir.
      const pkg = join(dir, "root", "pkg");
      const script = join(pkg, "app", "open.mjs");
      await build({
        stdin: {
          contents:
            'import { openMatmul } from "./tools/hf/matmul-pool.ts"; const threads = Number(process.argv[2]); openMatmul({ threads }).then(async (p) => { console.log("opened " + p.threads); await p.close(); }, (e) => { console.log(e.message); });',
          resolveDir: projectRoot(),
          loader: "ts",
        },
        bundle: true,
        platform: "node",
        format: "esm",
        outfile: script,
        logLevel: "warning",
      });
      const run = (threads: number) => execFileSync(process.execPath, [script, String(threads)], { encoding: "utf8" }).trim();
      expect(run(1)).toBe(`${join(pkg, "build", "hf-kernels.wasm")}: not built; run npm run build`);
      mkdirSync(join(pkg, "build"));
      copyFileSync(join(projectRoot(), "build", "hf-kernels.wasm"), join(pkg, "build", "hf-kernels.wasm"));
      expect(run(1)).toBe("opened 1");
      expect(run(2)).toBe(`${join(pkg, "dist", MATMUL_WORKER)}: not built; run npm run build`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
