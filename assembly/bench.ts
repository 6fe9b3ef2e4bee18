// carvq-rt bench: times the runtime's own paths inside the engine, for `npm run bench`
// (tools/dev/bench/lookup-goals.ts). A run from the host costs an instance, the blob's validation and
// a resident load, far more than a lookup; timing loops in here with the WASI monotonic clock
// compares two paths on the same engine, nothing else. Only modules built with CARVQ_BENCH=1
// (build/bench/) contain it: clock_time_get is their eleventh import, and the device modules keep
// the ten that firmware provides.
//
//   carvq-rt bench [--mode M] [--adaptor-batch N] [--adaptor-tile BYTES] [--no-widen] <blob> <case> <count> <repetitions>
//
// As the library does, a resident RVQ blob's codebooks are widened to f32 at open where the budget
// holds them ("codebooks": "f32" in the output); --no-widen keeps decoding from FP16 ("f16").
//
// Every case runs `count` items once as a warm-up, then `repetitions` times timed, on the same
// pseudo-random tokens each time (seeded, so two runs or two modules see the same tokens), and
// prints one JSON line with the nanoseconds of each timed repetition.
import { clock_time_get, CLOCK_MONOTONIC } from "./wasi";
import { arenaAlloc } from "./arena";
import { rows, cols, resident, adapted, adMlpOffset, adMlpLength, blobErr } from "./blob";
import { batch, cached, tileBytes } from "./adaptor";
import { loadTableRow, applyAdaptor } from "./adaptor";
import { decodeCodes, decodeToken, finishRows, outPtr, outRows, rowOutBytes, mode, wide, MODE_RESIDENT } from "./lookup";
import { widenRow } from "./kernels";
import { putStr, putU64, putByte, textBegin, textFlush } from "./text";
import { errBegin, die, EXIT_USAGE, EXIT_BUDGET, EXIT_IO } from "./exit";

/** The table part of a lookup alone: the RVQ sum (or the scalar method's dequantization), no adaptor. */
export const CASE_DECODE: u32 = 0;
/** A whole lookup as `lookup` does it, batches and adaptor included, minus writing the rows. */
export const CASE_LOOKUP: u32 = 1;
/** The adaptor alone for one token: its sigma0 row, then the MLP added to an output row. */
export const CASE_ADAPTOR: u32 = 2;
/**
 * An uncompressed table's lookup: one row of a rows x cols FP16 table (filled here, as large as
 * the real one, so its rows come from wherever a table that size lives) widened to f32.
 */
export const CASE_FP16: u32 = 3;
/** memory.copy of the adaptor's MLP bytes: streaming them once, the floor of a token's adaptor. */
export const CASE_COPY: u32 = 4;

const CASE_NAMES: StaticArray<string> = ["decode", "lookup", "adaptor", "fp16", "copy"];

const CLOCK: usize = memory.data(8, 8);
let seed: u32 = 0;

function now(): u64 {
  if (clock_time_get(CLOCK_MONOTONIC, 1, CLOCK) != 0) {
    errBegin();
    putStr("bench: the host has no monotonic clock (clock_time_get failed)");
    die(EXIT_IO);
  }
  return load<u64>(CLOCK);
}

/** The next pseudo-random token below `rows` (xorshift32, then a multiply-shift into range). */
function nextToken(): u32 {
  let x = seed;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  seed = x;
  return <u32>((<u64>x * <u64>rows) >> 32);
}

/** The case's name, or -1 (the bench argument parser reports it). */
export function caseId(ptr: usize, len: usize): i32 {
  for (let c = 0; c < CASE_NAMES.length; c++) {
    const name = CASE_NAMES[c];
    if (<usize>name.length != len) continue;
    let same = true;
    for (let k: usize = 0; k < len; k++) if (<u32>load<u8>(ptr + k) != <u32>name.charCodeAt(<i32>k)) same = false;
    if (same) return c;
  }
  return -1;
}

function refuse(what: string): void {
  blobErr();
  putStr("bench: ");
  putStr(what);
  die(EXIT_USAGE);
}

/** Tokens the case's buffers must be planned for (lookup: the whole count, so it batches as lookup does). */
export function plannedTokens(kase: u32, count: u32): u32 {
  return kase == CASE_LOOKUP ? count : 1;
}

/** Checks that the blob and mode suit the case, and reserves what the case needs beyond the plan. */
function prepare(kase: u32): usize {
  if ((kase == CASE_ADAPTOR || kase == CASE_COPY) && !adapted) refuse("this case needs a blob with an adaptor (v1.2)");
  if (kase == CASE_COPY && mode != MODE_RESIDENT) refuse("this case copies the MLP in memory: run it with --mode resident");
  if (kase != CASE_COPY && kase != CASE_FP16) return 0;
  const bytes = kase == CASE_COPY ? adMlpLength : <u64>rows * <u64>cols * 2;
  const dst = arenaAlloc(bytes);
  if (dst == 0) {
    blobErr();
    putStr("budget exceeded: bench ");
    putStr(CASE_NAMES[kase]);
    putStr(" needs ");
    putU64(bytes);
    putStr(kase == CASE_COPY ? " more bytes for its destination" : " more bytes for an FP16 table of the blob's shape");
    die(EXIT_BUDGET);
  }
  // Written, so every page of the table is really there (an untouched page reads as the shared zero page).
  if (kase == CASE_FP16) memory.fill(dst, 0x3c, <usize>bytes);
  return dst;
}

/** One pass of `count` items of the case. */
function pass(kase: u32, count: u32, dst: usize): void {
  seed = 0x9e3779b9;
  const rowOut = <usize>rowOutBytes();
  if (kase == CASE_DECODE) {
    for (let i: u32 = 0; i < count; i++) decodeCodes(nextToken(), outPtr);
  } else if (kase == CASE_LOOKUP) {
    let filled: u32 = 0;
    for (let i: u32 = 0; i < count; i++) {
      decodeToken(nextToken(), outPtr + <usize>filled * rowOut, filled);
      filled++;
      if (filled == outRows || i + 1 == count) {
        finishRows(filled);
        filled = 0;
      }
    }
  } else if (kase == CASE_ADAPTOR) {
    for (let i: u32 = 0; i < count; i++) {
      loadTableRow(nextToken(), 0);
      applyAdaptor(outPtr, rowOut, 1);
    }
  } else if (kase == CASE_FP16) {
    const rowBytes = <usize>cols << 1;
    for (let i: u32 = 0; i < count; i++) widenRow(dst + <usize>nextToken() * rowBytes, outPtr, cols);
  } else {
    for (let i: u32 = 0; i < count; i++) memory.copy(dst, resident + <usize>adMlpOffset, <usize>adMlpLength);
  }
}

/** Runs the case (after the blob was opened, checked and planned) and prints its JSON line. */
export function runBench(kase: u32, count: u32, repetitions: u32): void {
  const dst = prepare(kase);
  const t0 = now();
  pass(kase, count, dst);
  const warmup = now() - t0;
  // The timings are kept in the text buffer's place: print the header first, then each as it comes.
  textBegin(1);
  putStr("{\"case\":\"");
  putStr(CASE_NAMES[kase]);
  putStr("\",\"build\":");
  putStr(ASC_FEATURE_SIMD ? "\"simd\"" : "\"scalar\"");
  putStr(",\"mode\":");
  putStr(mode == MODE_RESIDENT ? "\"resident\"" : "\"streaming\"");
  putStr(",\"codebooks\":");
  putStr(wide != 0 ? "\"f32\"" : "\"f16\"");
  putStr(",\"count\":");
  putU64(count);
  putStr(",\"outRows\":");
  putU64(outRows);
  putStr(",\"adaptorBatch\":");
  putU64(adapted ? batch : 0);
  putStr(",\"adaptorCached\":");
  putStr(adapted && (mode == MODE_RESIDENT || cached) ? "true" : "false");
  putStr(",\"adaptorTileBytes\":");
  putU64(tileBytes);
  putStr(",\"mlpBytes\":");
  putU64(adapted ? adMlpLength : 0);
  putStr(",\"warmupNs\":");
  putU64(warmup);
  putStr(",\"ns\":[");
  for (let r: u32 = 0; r < repetitions; r++) {
    const t = now();
    pass(kase, count, dst);
    const ns = now() - t;
    if (r > 0) putByte(0x2c);
    putU64(ns);
  }
  putStr("]}\n");
  if (textFlush() != 0) {
    errBegin();
    putStr("cannot write to stdout");
    die(EXIT_IO);
  }
}
