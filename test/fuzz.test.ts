// Hostile inputs: a short fixed-seed fuzzing campaign over blobs and model files, then
// systematic sweeps (every header field and section-table entry set to breaking values, every pair
// of sections swapped, every truncation at a structure boundary), a catalogue of named hostile
// inputs with the refusal each must get, and replays of the inputs of past findings
// (test/fixtures/fuzz/). `npm run fuzz` runs the long campaigns.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as F from "../assembly/format.ts";
import { runMinimalWasi } from "../host/minimal-wasi.ts";
import { parseBlob } from "../tools/blob/reader.ts";
import { crc32 } from "../tools/crc32.ts";
import { CarvqError } from "../tools/errors.ts";
import { Campaign, rowsAgree, type Finding } from "../tools/dev/fuzz/campaign.ts";
import { decodeTokens } from "../tools/decoder.ts";
import { readField, writeField, type Field } from "../tools/dev/fuzz/fields.ts";
import { resealBlob } from "../tools/dev/fuzz/mutate.ts";
import { Rng } from "../tools/dev/fuzz/rng.ts";
import { blobFields, sectionCountOf } from "../tools/dev/fuzz/seeds.ts";

const SEED = 20261123;
const campaign = await Campaign.create({ seed: SEED });
afterAll(() => campaign.close());

/** One line per finding, so a failure shows what, where and how to replay it. */
function shown(findings: readonly Finding[]): string[] {
  return findings.map((f) => `${f.type} (iteration ${f.iteration}, ${f.seedName}, ${f.ops.join(" ")}): ${f.detail}`);
}

const SWEEP_CONFIGS = ["simd", "mcu-128k"];

describe("a short fixed-seed fuzzing campaign", () => {
  it(`2,000 iterations (seed ${SEED}): every input refused cleanly or read exactly like the reference, inside the budget`, () => {
    const findings: Finding[] = [];
    const fds = () => (existsSync("/proc/self/fd") ? readdirSync("/proc/self/fd").length : 0);
    const fdsBefore = fds();
    for (let i = 0; i < 2000; i++) findings.push(...campaign.run(i).findings);
    expect(shown(findings)).toEqual([]);
    // The model readers close every file they open, whatever they find in it.
    expect(fds()).toBe(fdsBefore);
    const s = campaign.stats;
    expect(s.blobIterations).toBeGreaterThan(1000);
    expect(s.modelIterations).toBeGreaterThan(400);
    // Both sides of every check were reached: accepted and refused blobs and model files ...
    expect(s.tsBlobAccepted).toBeGreaterThan(100);
    expect(s.blobIterations - s.tsBlobAccepted).toBeGreaterThan(500);
    expect(s.tsModelAccepted).toBeGreaterThan(50);
    expect(Object.keys(s.tsBlobReasons).length).toBeGreaterThan(30);
    expect(Object.keys(s.tsModelReasons).length).toBeGreaterThan(30);
    // ... on every module, in every mode, with only documented exit codes.
    expect(Object.keys(s.runtime).sort()).toEqual(campaign.configs.map((c) => c.name).sort());
    for (const [config, modes] of Object.entries(s.runtime)) {
      expect(Object.keys(modes).sort(), config).toEqual(["auto", "info", "resident", "streaming"]);
      for (const r of Object.values(modes)) {
        for (const code of Object.keys(r.byExit)) expect(["0", "2", "4", "5", "6"], `${config} exit ${code}`).toContain(code);
        expect(r.byExit["0"] ?? 0, config).toBeGreaterThan(0);
        expect(r.byExit["4"] ?? 0, config).toBeGreaterThan(0);
      }
    }
    for (const c of campaign.configs) expect(s.maxPeakFraction[c.name]).toBeLessThanOrEqual(1);
  });
});

/** Values that break a field: boundaries, off-by-one, the file size, wrap-around for u64s. */
function breakingValues(f: Field, current: bigint, fileSize: number): bigint[] {
  const max = (1n << BigInt(f.size * 8)) - 1n;
  const values = [
    0n,
    1n,
    2n,
    current - 1n,
    current + 1n,
    current * 2n,
    max,
    1n << BigInt(f.size * 8 - 1),
    BigInt(fileSize),
    BigInt(fileSize) + 64n,
  ];
  if (f.size === 8) values.push(1n << 32n, max - 63n);
  return [...new Set(values.map((v) => BigInt.asUintN(f.size * 8, v)))].filter((v) => v !== current);
}

describe("every header field and section-table entry set to breaking values", () => {
  for (const seed of campaign.blobSeeds) {
    it(`${seed.name}: with and without fixed-up CRCs, both readers refuse or both read it identically`, () => {
      const findings: Finding[] = [];
      let inputs = 0;
      for (const f of blobFields(seed.bytes)) {
        for (const value of breakingValues(f, readField(seed.bytes, f), seed.bytes.length)) {
          for (const reseal of [false, true]) {
            const bytes = seed.bytes.slice();
            writeField(bytes, f, value);
            if (reseal) resealBlob(bytes);
            const ops = [`${f.name}=${value}${reseal ? " resealed" : ""}`];
            findings.push(...campaign.examineBlob(-1, bytes, seed.name, ops, new Rng(SEED, inputs++), SWEEP_CONFIGS));
          }
        }
      }
      expect(inputs).toBeGreaterThan(400);
      expect(shown(findings)).toEqual([]);
    });
  }
});

describe("sections swapped, reordered and cut", () => {
  it("swapping any two section-table entries (whole entries or ids) is refused by both readers or read identically", () => {
    const findings: Finding[] = [];
    let k = 0;
    for (const seed of campaign.blobSeeds) {
      const count = sectionCountOf(seed.bytes);
      for (let i = 0; i < count; i++) {
        for (let j = i + 1; j < count; j++) {
          for (const width of [F.SECTION_ENTRY_BYTES, 4]) {
            const bytes = seed.bytes.slice();
            const a = F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES;
            const b = F.SECTION_TABLE_OFFSET + j * F.SECTION_ENTRY_BYTES;
            const tmp = bytes.slice(a, a + width);
            bytes.copyWithin(a, b, b + width);
            bytes.set(tmp, b);
            resealBlob(bytes);
            findings.push(
              ...campaign.examineBlob(-1, bytes, seed.name, [`swap ${i}<->${j} (${width} bytes)`], new Rng(SEED, 7, k++), SWEEP_CONFIGS),
            );
          }
        }
      }
    }
    expect(k).toBeGreaterThan(50);
    expect(shown(findings)).toEqual([]);
  });

  it("every truncation at a structure boundary (header, table, each section's start and end, +-1) is refused by both", () => {
    const findings: Finding[] = [];
    let k = 0;
    for (const seed of campaign.blobSeeds) {
      const blob = parseBlob(seed.bytes, seed.name);
      const cuts = new Set([0, 1, 63, 64, 65, F.SECTION_TABLE_OFFSET + blob.sections.length * F.SECTION_ENTRY_BYTES]);
      for (const s of blob.sections) for (const at of [s.offset, s.offset + s.length]) for (const d of [-1, 0, 1]) cuts.add(at + d);
      for (const cut of [...cuts].filter((c) => c >= 0 && c < seed.bytes.length)) {
        const bytes = seed.bytes.slice(0, cut);
        expect(() => parseBlob(bytes, seed.name), `${seed.name} cut at ${cut}`).toThrow(CarvqError);
        findings.push(...campaign.examineBlob(-1, bytes, seed.name, [`truncate ${cut}`], new Rng(SEED, 8, k++), SWEEP_CONFIGS));
      }
      // One byte more, and one more zero-padded section's worth, are trailing bytes.
      for (const extra of [1, 64]) {
        const bytes = new Uint8Array(seed.bytes.length + extra);
        bytes.set(seed.bytes);
        expect(() => parseBlob(bytes, seed.name)).toThrow(/trailing bytes/);
        findings.push(...campaign.examineBlob(-1, bytes, seed.name, [`extend ${extra}`], new Rng(SEED, 9, k++), SWEEP_CONFIGS));
      }
    }
    expect(shown(findings)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------- named hostile inputs

function setU32(bytes: Uint8Array, at: number, v: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, v, true);
}
function setU64(bytes: Uint8Array, at: number, v: bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(at, v, true);
}
const entry = (i: number, field: number) => F.SECTION_TABLE_OFFSET + i * F.SECTION_ENTRY_BYTES + field;

function seedBytes(name: string): Uint8Array {
  const seed = campaign.blobSeeds.find((s) => s.name === name);
  if (!seed) throw new Error(`no blob seed ${name}`);
  return seed.bytes.slice();
}

/** Runs the smallest target (streaming) and the generic SIMD build (resident) on a blob. */
function runtimeExits(bytes: Uint8Array): { exit: number; stderr: string; peak: number }[] {
  return campaign.configs
    .filter((c) => c.name === "mcu-128k" || c.name === "simd")
    .map((c) => {
      const run = runMinimalWasi(c.module, {
        args: ["lookup", "--mode", c.name === "simd" ? "resident" : "streaming", "/f/m.carvq", "0"],
        preopens: [{ name: "/f", files: { "m.carvq": bytes } }],
      });
      return { exit: run.exitCode, stderr: run.stderr, peak: run.peakMemoryBytes };
    });
}

describe("named hostile blobs: the refusal each gets", () => {
  const cases: [string, () => Uint8Array, RegExp, RegExp][] = [
    [
      "a u64 section offset that wraps around (2^64 - 64) with valid CRCs",
      () => {
        const b = seedBytes("rvq-row-v1.0");
        setU64(b, entry(2, F.S_OFFSET), (1n << 64n) - 64n);
        resealBlob(b);
        return b;
      },
      /offset 18446744073709551552 \+ length \d+ runs past the end of the file/,
      /section 2 \(METADATA\): bytes 18446744073709551552 \+ \d+ run past the end of the file/,
    ],
    [
      "a u64 section length of 2^64 - 1",
      () => {
        const b = seedBytes("rvq-row-v1.0");
        setU64(b, entry(0, F.S_LENGTH), (1n << 64n) - 1n);
        resealBlob(b);
        return b;
      },
      /runs past the end of the file/,
      /run past the end of the file/,
    ],
    [
      "section_count 16 in a file too short for 16 entries",
      () => {
        const b = seedBytes("int4").slice(0, 200);
        setU32(b, F.H_SECTION_COUNT, 16);
        return b;
      },
      /truncated: section table needs 448 bytes, file has 200/,
      /truncated: the section table ends at byte 448 but the file has 200/,
    ],
    [
      "rows = 16,777,216 with every derived field consistent and valid CRCs, in a file of a few kB",
      () => {
        const b = seedBytes("rvq-row-v1.0");
        const rowBytes = new DataView(b.buffer).getUint32(F.H_ROW_BYTES, true);
        setU32(b, F.H_ROWS, F.MAX_ROWS);
        const S = Math.ceil(37 / 8);
        setU32(b, F.H_GROUP_COUNT, Math.ceil((F.MAX_ROWS * S) / 12));
        expect(rowBytes).toBeGreaterThan(0);
        resealBlob(b);
        return b;
      },
      /CODES section is 240 bytes; expected 83886080 for this header/,
      /section 0 \(CODES\): length 240, expected 83886080/,
    ],
    [
      "a row-scale index not below R (v1.1) with valid CRCs",
      () => {
        const b = seedBytes("rvq-row-v1.1-rowscale16");
        const codes = new DataView(b.buffer).getBigUint64(entry(0, F.S_OFFSET), true);
        b[Number(codes) + 5 * new DataView(b.buffer).getUint32(F.H_ROW_BYTES, true)] = 200;
        resealBlob(b);
        return b;
      },
      /token 5 has row-scale index 200; the ROW_SCALES section holds 16/,
      /token 5 has row-scale index 200 but the ROW_SCALES section holds 16/,
    ],
    [
      "a ROW_SCALES section in an int4 blob",
      () => {
        const b = seedBytes("int4");
        // Turn METADATA (section 1) into ROW_SCALES of an even length.
        setU32(b, entry(1, F.S_ID), F.SECTION_ROW_SCALES);
        setU64(b, entry(1, F.S_LENGTH), 2n);
        new DataView(b.buffer).setUint16(F.H_VERSION_MINOR, 1, true);
        const end = Number(new DataView(b.buffer).getBigUint64(entry(1, F.S_OFFSET), true)) + 2;
        const out = b.slice(0, end);
        resealBlob(out);
        return out;
      },
      /ROW_SCALES section present in a int4 blob|header field row_bytes/,
      /a scalar-method blob has no row scales/,
    ],
    [
      "a non-zero byte in the padding before a section, with valid CRCs",
      () => {
        const b = seedBytes("rvq-col-v1.0");
        const codes = Number(new DataView(b.buffer).getBigUint64(entry(0, F.S_OFFSET), true));
        b[codes - 1] = 1;
        resealBlob(b);
        return b;
      },
      /in the padding before it is 1; padding must be zero/,
      /the padding before it is not zero/,
    ],
    [
      "one trailing byte",
      () => {
        const b = seedBytes("int2");
        const out = new Uint8Array(b.length + 1);
        out.set(b);
        return out;
      },
      /trailing bytes/,
      /the file has \d+ bytes but its last section ends at byte \d+/,
    ],
    [
      "a CRC-32 mismatch in CODEBOOKS",
      () => {
        const b = seedBytes("rvq-row-v1.0");
        const cb = Number(new DataView(b.buffer).getBigUint64(entry(1, F.S_OFFSET), true));
        b[cb + 3] ^= 0x10;
        return b;
      },
      /CODEBOOKS section checksum mismatch/,
      /section 1 \(CODEBOOKS\): CRC mismatch/,
    ],
    [
      "a METADATA section just over 1 MiB",
      () => {
        const b = seedBytes("int3");
        const meta = Number(new DataView(b.buffer).getBigUint64(entry(1, F.S_OFFSET), true));
        const out = new Uint8Array(meta + (1 << 20) + 1).fill(0x20);
        out.set(b.subarray(0, meta));
        out[meta] = 0x7b;
        out[out.length - 1] = 0x7d;
        setU64(out, entry(1, F.S_LENGTH), BigInt((1 << 20) + 1));
        resealBlob(out);
        return out;
      },
      /METADATA section is 1048577 bytes; at most 1048576 allowed/,
      /longer than 1 MiB/,
    ],
  ];
  for (const [name, make, tsMessage, rtMessage] of cases) {
    it(name, () => {
      const bytes = make();
      expect(() => parseBlob(bytes, "m.carvq")).toThrow(tsMessage);
      for (const run of runtimeExits(bytes)) {
        expect(run.exit, run.stderr).toBe(4);
        expect(run.stderr).toMatch(rtMessage);
        expect(run.stderr).toMatch(/^carvq-rt: \/f\/m\.carvq: bad blob: .* \[exit 4\]\n$/);
        // Refused before anything the header claims is allocated: at most the blob itself (resident) and a few pages.
        expect(run.peak).toBeLessThanOrEqual(bytes.length + 256 * 1024);
      }
    });
  }

  it("a v1.2 adaptor with a lying width is refused by the TypeScript reader, naming the section and field", () => {
    const seed = campaign.blobSeeds.find((s) => s.name.startsWith("rvq-v1.2-adaptor-int8"))!;
    const b = seed.bytes.slice();
    const f = blobFields(b).find((x) => x.name === "ADAPTOR_MLP.width[1]")!;
    writeField(b, f, 4097n);
    resealBlob(b);
    expect(() => parseBlob(b, "m.carvq")).toThrow(/ADAPTOR_MLP width 1 is 4097; expected 1 to 4096/);
    for (const run of runtimeExits(b)) expect(run.exit).toBe(4);
  });

  it("CRC-32 is zlib's (check value 0xCBF43926)", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });
});

// ---------------------------------------------------------------------------------------------- past findings

/**
 * Every token (up to 256) on every module in both modes: the reference's rows, or, when the
 * TypeScript reader refuses the blob, a refusal.
 */
function everyTokenEverywhere(bytes: Uint8Array, name: string): Finding[] {
  let blob: ReturnType<typeof parseBlob> | null = null;
  try {
    blob = parseBlob(bytes, name);
  } catch {
    // refused: every module must refuse too
  }
  const tokens = blob ? Array.from({ length: Math.min(256, blob.header.rows) }, (_, t) => t) : [0];
  const want = blob ? decodeTokens(blob, tokens) : null;
  const out: Finding[] = [];
  for (const c of campaign.configs) {
    for (const mode of ["resident", "streaming"]) {
      const run = runMinimalWasi(c.module, {
        args: ["lookup", "--mode", mode, "/f/m.carvq", ...tokens.map(String)],
        preopens: [{ name: "/f", files: { "m.carvq": bytes } }],
      });
      const ok = want ? (run.exitCode === 0 && rowsAgree(run.stdout, want)) || run.exitCode === 6 : [4, 6].includes(run.exitCode);
      if (!ok)
        out.push({
          iteration: -1,
          type: "fixture",
          detail: `${c.name} ${mode}: exit ${run.exitCode}${run.exitCode === 0 ? ", rows differ from the reference" : `: ${run.stderr.trim()}`}`,
          input: "blob",
          seedName: name,
          ops: ["every token"],
          bytes,
          ext: ".carvq",
        });
    }
  }
  return out;
}

/**
 * Inputs of past findings: test/fixtures/fuzz/<name>.<ext> with <name>.json describing it
 * ({ input: "blob" | "model", seedName, status: "fixed" | "open", issue }). A fixed one must now pass every
 * check; an open one is expected to fail until it is fixed (it.fails), so it cannot be forgotten.
 */
describe("inputs of past findings (test/fixtures/fuzz)", () => {
  const dir = join("test", "fixtures", "fuzz");
  const described = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".json")) : [];
  it("the fixtures folder is readable and every description names its input", () => {
    for (const name of described) {
      const d = JSON.parse(readFileSync(join(dir, name), "utf8")) as { file: string; status: string };
      expect(existsSync(join(dir, d.file)), name).toBe(true);
      expect(["fixed", "open"]).toContain(d.status);
    }
  });
  for (const name of described) {
    const d = JSON.parse(readFileSync(join(dir, name), "utf8")) as {
      file: string;
      input: "blob" | "model";
      seedName: string;
      status: "fixed" | "open";
      issue: string;
      ext: string;
    };
    const test = d.status === "open" ? it.fails : it;
    test(`${d.file}: ${d.issue}`, () => {
      const bytes = new Uint8Array(readFileSync(join(dir, d.file)));
      const findings: Finding[] = [];
      if (d.input === "blob") {
        for (let k = 0; k < 8; k++) findings.push(...campaign.examineBlob(-1, bytes, d.file, ["fixture"], new Rng(SEED, 99, k)));
        findings.push(...everyTokenEverywhere(bytes, d.file));
      } else {
        const seed = campaign.modelSeeds.find((s) => s.name === d.seedName) ?? campaign.modelSeeds[0];
        findings.push(...campaign.examineModel(-1, bytes, seed, ["fixture"], d.ext));
      }
      expect(shown(findings)).toEqual([]);
    });
  }
});
