// Planning the arena for a lookup run and decoding one token's row, resident or streaming.
import { METHOD_RVQ, LAYOUT_ROW, RVQ_CODEBOOK_SIZE } from "./format";
import {
  resident, method, cols, subvec, levels, group, layout, codeBits, rowBytes, groupCount,
  subvecsPerRow, groupBytes, codesOffset, codebooksOffset, fileSize, readAt,
  rowScaleCount, rowScalesOffset, blobErr, adapted,
} from "./blob";
import { loadResident } from "./verify";
import { adaptorResidentNeed, adaptorStreamingNeed, planAdaptor, loadTableRow, applyAdaptor } from "./adaptor";
import { arenaAlloc, arenaCost, arenaFree } from "./arena";
import {
  addEntries, addEntriesScaled, addEntryPair, addEntriesF32, addEntriesScaledF32, addEntryPairF32, decodeScalarRow,
  f16ToF32, widenRow,
} from "./kernels";
import { putStr, putU64 } from "./text";
import { fail, EXIT_BAD_BLOB } from "./exit";

export const MODE_AUTO: u32 = 0;
export const MODE_RESIDENT: u32 = 1;
export const MODE_STREAMING: u32 = 2;

/** Output rows are written in batches of at most this many bytes (at least one row). */
const OUT_BATCH_BYTES: u64 = 64 * 1024;
/** The smallest read chunk verifySections accepts. */
const CRC_CHUNK_MIN: u64 = 64;
/** A streaming codebook window never takes more than this. */
const WINDOW_MAX_BYTES: u64 = 4 * 1024 * 1024;

const PTRS: usize = memory.data(4 * 8, 16);

/**
 * The one place that maps (token, sub-vector) to its codebook group (docs/FORMAT.md):
 * row layout G = floor((t*S + s) / g); column-block layout G = floor(t / g) * S + s.
 * Non-decreasing in s for both layouts, so a token's groups form one contiguous range.
 */
// @ts-ignore: decorator
@inline export function groupOf(t: u32, s: u32): u64 {
  const S = <u64>subvecsPerRow;
  if (layout == LAYOUT_ROW) return (<u64>t * S + <u64>s) / <u64>group;
  return (<u64>(t / group)) * S + <u64>s;
}

/** The most groups one token's sub-vectors can touch. */
function maxGroupsPerToken(): u64 {
  const S = <u64>subvecsPerRow;
  let m: u64 = layout == LAYOUT_ROW ? (S - 1 + <u64>group - 1) / <u64>group + 1 : S;
  if (m > <u64>groupCount) m = <u64>groupCount;
  return m;
}

export function rowOutBytes(): u64 {
  return <u64>cols * 4;
}

/**
 * Arena bytes a resident run needs beyond what is already used: the blob and one output row (and,
 * v1.2, one token's adaptor activations).
 */
export function residentNeed(): u64 {
  return arenaCost(fileSize + 8) + arenaCost(rowOutBytes()) + adaptorResidentNeed();
}

function entryBytes(): u64 {
  return <u64>subvec * 2;
}

/** Bytes of the ROW_SCALES section (v1.1): 2 to 512, or 0 without one. */
function rowScalesBytes(): u64 {
  return <u64>rowScaleCount * 2;
}

/**
 * Arena bytes a streaming run needs at the least: one record, one row, one entry per level,
 * (v1.1) the row scales, at most 512 bytes, held for the whole run, and (v1.2) the adaptor's
 * table record, one token's activations and one tile (adaptor.ts).
 */
export function streamingNeed(): u64 {
  let need = arenaCost(<u64>rowBytes + 8) + arenaCost(rowOutBytes());
  if (method == METHOD_RVQ) need += arenaCost(<u64>levels * entryBytes());
  if (rowScaleCount > 0) need += arenaCost(rowScalesBytes());
  need += adaptorStreamingNeed();
  // The CRC check at open streams the file through a transient chunk of at least 64 bytes.
  return need > CRC_CHUNK_MIN ? need : CRC_CHUNK_MIN;
}

// ---- The plan in force ----
export let mode: u32 = MODE_AUTO;
export let outPtr: usize = 0;
export let outRows: u32 = 1;
let recPtr: usize = 0;
let winPtr: usize = 0;
/** v1.1: the FP16 row scales (in the resident blob, or read once into the arena when streaming). */
let scalesPtr: usize = 0;
/** Streaming RVQ: codebook groups the window holds (0 = read entries one at a time). */
export let windowGroups: u32 = 0;
let winG0: u64 = 0;
let winG1: u64 = 0;
/** Resident RVQ: the codebooks widened to f32 once (0 = not widened: decode from FP16). */
export let wide: usize = 0;

/** Forgets the plan of the last blob. */
export function resetPlan(): void {
  mode = MODE_AUTO;
  outPtr = 0;
  outRows = 1;
  recPtr = 0;
  winPtr = 0;
  scalesPtr = 0;
  windowGroups = 0;
  winG0 = 0;
  winG1 = 0;
  wide = 0;
}

/** Bytes the codebooks take widened to f32 (what widenCodebooks reserves). */
export function wideBytes(): u64 {
  return <u64>groupCount * <u64>groupBytes * 2;
}

/**
 * Resident RVQ, after the plan: widens every codebook entry to f32 once, if the budget still holds
 * them, so that a lookup reads f32 entries instead of widening FP16 ones (exact, the same bits).
 * Returns whether it did; without room, lookups decode from FP16 as before.
 */
export function widenCodebooks(): bool {
  if (mode != MODE_RESIDENT || method != METHOD_RVQ || resident == 0) return false;
  const bytes = wideBytes();
  if (arenaCost(bytes) > arenaFree()) return false;
  const p = arenaAlloc(bytes);
  if (p == 0) return false;
  // In pieces of at most 2^28 values, so every count is a u32.
  const values = bytes >> 2;
  const src = resident + <usize>codebooksOffset;
  for (let done: u64 = 0; done < values;) {
    const n = values - done < (1 << 28) ? values - done : <u64>(1 << 28);
    widenRow(src + <usize>(done << 1), p + <usize>(done << 2), <u32>n);
    done += n;
  }
  wide = p;
  return true;
}

/**
 * Reserves the buffers of the chosen mode (the caller checked the minimum fits). Extra room goes
 * first to a codebook window (streaming), then to batching output rows, up to `tokens` rows.
 * The rows go to a buffer reserved here, or with `out`, to the `outBytes` there (the library's
 * I/O area; the caller checked one row fits). Returns false if the host refused memory or a read
 * failed (the failure is recorded).
 */
export function planBuffers(m: u32, tokens: u32, out: usize = 0, outBytes: u64 = 0): bool {
  resetPlan();
  mode = m;
  const rowOut = rowOutBytes();
  // The adaptor's minimum (beyond the output row) is kept free until planAdaptor takes it.
  const adMin = !adapted ? 0 : m == MODE_STREAMING ? adaptorStreamingNeed() : adaptorResidentNeed();
  if (m == MODE_STREAMING) {
    recPtr = arenaAlloc(<u64>rowBytes + 8);
    if (recPtr == 0) return false;
    if (rowScaleCount > 0) {
      scalesPtr = arenaAlloc(rowScalesBytes());
      if (scalesPtr == 0) return false;
      if (!readAt(scalesPtr, rowScalesOffset, <usize>rowScalesBytes())) return false;
    }
    if (method == METHOD_RVQ) {
      const keep = arenaCost(rowOut) + adMin;
      const avail = arenaFree() > keep ? arenaFree() - keep : 0;
      let groups = maxGroupsPerToken();
      if (groups * <u64>groupBytes > WINDOW_MAX_BYTES) groups = WINDOW_MAX_BYTES / <u64>groupBytes;
      const fit = avail / arenaCost(<u64>groupBytes);
      if (groups > fit) groups = fit;
      windowGroups = <u32>groups;
      winPtr = arenaAlloc(groups > 0 ? groups * <u64>groupBytes : <u64>levels * entryBytes());
      if (winPtr == 0) return false;
      winG0 = 0;
      winG1 = 0;
    }
  } else if (m == MODE_RESIDENT) {
    if (resident == 0 && !loadResident()) return false; // a blob handed over in memory is there already
    scalesPtr = resident + <usize>rowScalesOffset;
  }
  let batch = (out != 0 ? outBytes : OUT_BATCH_BYTES) / rowOut;
  if (batch < 1) batch = 1;
  if (batch > <u64>tokens) batch = <u64>tokens;
  if (adapted) {
    // The adaptor evaluates the rows of one output batch together: it sizes the batch.
    batch = <u64>planAdaptor(m == MODE_STREAMING, batch, rowOut);
    if (batch == 0) return false;
    outRows = <u32>batch;
    outPtr = out != 0 ? out : arenaAlloc(batch * rowOut);
    return outPtr != 0;
  }
  if (out != 0) {
    outRows = <u32>batch;
    outPtr = out;
    return true;
  }
  const fit = arenaFree() / rowOut;
  if (batch > fit) batch = fit;
  if (batch < 1) batch = 1;
  outRows = <u32>batch;
  outPtr = arenaAlloc(batch * rowOut);
  return outPtr != 0;
}

function changedIndex(t: u32, index: u32): void {
  blobErr();
  putStr("bad blob: token ");
  putU64(t);
  putStr(" has row-scale index ");
  putU64(index);
  putStr(" but the ROW_SCALES section holds ");
  putU64(rowScaleCount);
  putStr(" (the file changed while open?)");
  fail(EXIT_BAD_BLOB);
}

/**
 * Decodes token t (already checked < rows) into `out` (cols f32 values), row `slot` of the output
 * batch. With an adaptor the row is complete only after finishRows.
 */
export function decodeToken(t: u32, out: usize, slot: u32): void {
  decodeCodes(t, out);
  if (adapted) loadTableRow(t, slot);
}

/**
 * Completes `count` rows of an output batch, at `rows` (default: the batch buffer): v1.2 adds the
 * adaptor's correction to the rows whose tokens decodeToken put in slots 0 .. count-1.
 */
export function finishRows(count: u32, rows: usize = 0): void {
  if (adapted) applyAdaptor(rows != 0 ? rows : outPtr, <usize>rowOutBytes(), count);
}

/** The RVQ sum (times the row scale) or the scalar dequantization of token t (no adaptor). */
export function decodeCodes(t: u32, out: usize): void {
  let rec: usize;
  const recOff = codesOffset + <u64>t * <u64>rowBytes;
  if (resident != 0) rec = resident + <usize>recOff;
  else {
    readAt(recPtr, recOff, rowBytes); // a failure is recorded; the caller drops the row
    rec = recPtr;
  }
  if (method != METHOD_RVQ) {
    decodeScalarRow(rec, out, cols, group, codeBits);
    return;
  }
  const S = subvecsPerRow;
  const h = subvec;
  const L = levels;
  const eb = <usize>h << 1;
  const K = RVQ_CODEBOOK_SIZE;
  // Gain-shape (v1.1): the record's first byte picks the row's scale, the nibbles follow it.
  let scale: f32 = 1;
  const scaled = rowScaleCount > 0;
  if (scaled) {
    // Every index was checked at open; a file changed since then is refused, never misread.
    let index = <u32>load<u8>(rec);
    if (index >= rowScaleCount) {
      changedIndex(t, index);
      index = 0;
    }
    scale = f16ToF32(<u32>load<u16>(scalesPtr + (<usize>index << 1)));
    rec++;
  }
  if (wide != 0) {
    decodeWide(t, rec, out, scaled, scale);
    return;
  }
  // The group of sub-vector s, advanced one sub-vector at a time as groupOf defines it, without
  // its 64-bit division per sub-vector (which cost about as much as the sub-vector's arithmetic):
  // row layout, G steps up after the `left` sub-vectors remaining in the current group; column
  // layout, G steps up with every sub-vector.
  let G = groupOf(t, 0);
  const rowLayout = layout == LAYOUT_ROW;
  let left: u32 = rowLayout ? group - <u32>((<u64>t * <u64>S) % <u64>group) : 0;
  // SIMD, two levels, no row scale, h a multiple of 4 dividing the width: addEntryPair's case.
  const pairFast = ASC_FEATURE_SIMD && L == 2 && !scaled && (h & 3) == 0 && cols % h == 0;
  let groupBase: usize = resident != 0 ? resident + <usize>(codebooksOffset + G * <u64>groupBytes) : 0;
  for (let s: u32 = 0; s < S; s++) {
    if (s > 0 && (!rowLayout || --left == 0)) {
      G++;
      groupBase += <usize>groupBytes;
      if (rowLayout) left = group;
    }
    if (resident != 0 || windowGroups > 0) {
      let base: usize;
      if (resident != 0) base = groupBase;
      else {
        if (G < winG0 || G >= winG1) {
          winG0 = G;
          winG1 = G + <u64>windowGroups;
          if (winG1 > <u64>groupCount) winG1 = <u64>groupCount;
          readAt(winPtr, codebooksOffset + G * <u64>groupBytes, <usize>((winG1 - winG0) * <u64>groupBytes));
        }
        base = winPtr + <usize>((G - winG0) * <u64>groupBytes);
      }
      if (pairFast) {
        // Two levels: one code byte holds both nibbles (level 0 low, level 1 high).
        const codes = <u32>load<u8>(rec + <usize>s);
        addEntryPair(out + (<usize>(s * h) << 2), base + <usize>(codes & 15) * eb, base + <usize>(K + (codes >> 4)) * eb, h);
        continue;
      }
      for (let l: u32 = 0; l < L; l++) {
        const i = s * L + l;
        const code = (<u32>load<u8>(rec + (<usize>i >> 1)) >> ((i & 1) << 2)) & 15;
        store<u32>(PTRS + (<usize>l << 2), <u32>(base + <usize>(l * K + code) * eb));
      }
    } else {
      for (let l: u32 = 0; l < L; l++) {
        const i = s * L + l;
        const code = (<u32>load<u8>(rec + (<usize>i >> 1)) >> ((i & 1) << 2)) & 15;
        const dst = winPtr + <usize>l * eb;
        readAt(dst, codebooksOffset + ((G * <u64>L + <u64>l) * <u64>K + <u64>code) * <u64>eb, eb);
        store<u32>(PTRS + (<usize>l << 2), <u32>dst);
      }
    }
    const first = s * h;
    const count = cols - first < h ? cols - first : h;
    if (scaled) addEntriesScaled(out + (<usize>first << 2), PTRS, L, count, scale);
    else addEntries(out + (<usize>first << 2), PTRS, L, count);
  }
}

/**
 * decodeCodes over the codebooks widened to f32 (resident): the same sums, from f32 entries. The
 * sub-vectors are taken in runs that share a group (row layout: up to g of them; column-block: one),
 * so the loop over one run has no group bookkeeping.
 */
function decodeWide(t: u32, rec: usize, out: usize, scaled: bool, scale: f32): void {
  const S = subvecsPerRow;
  const h = subvec;
  const L = levels;
  const eb = <usize>h << 2;
  const K = RVQ_CODEBOOK_SIZE;
  const wideGroup = <usize>groupBytes << 1;
  const rowLayout = layout == LAYOUT_ROW;
  // Row layout: the first run ends where token t's first group does.
  let run: u32 = rowLayout ? group - <u32>((<u64>t * <u64>S) % <u64>group) : 1;
  let base: usize = wide + <usize>groupOf(t, 0) * wideGroup;
  const pair = L == 2 && !scaled;
  let s: u32 = 0;
  while (s < S) {
    const end = S - s < run ? S : s + run;
    for (; s < end; s++) {
      const first = s * h;
      const count = cols - first < h ? cols - first : h;
      const dst = out + (<usize>first << 2);
      if (pair) {
        // Two levels: one code byte holds both nibbles (level 0 low, level 1 high).
        const codes = <u32>load<u8>(rec + <usize>s);
        addEntryPairF32(dst, base + <usize>(codes & 15) * eb, base + <usize>(K + (codes >> 4)) * eb, count);
        continue;
      }
      for (let l: u32 = 0; l < L; l++) {
        const i = s * L + l;
        const code = (<u32>load<u8>(rec + (<usize>i >> 1)) >> ((i & 1) << 2)) & 15;
        store<u32>(PTRS + (<usize>l << 2), <u32>(base + <usize>(l * K + code) * eb));
      }
      if (scaled) addEntriesScaledF32(dst, PTRS, L, count, scale);
      else addEntriesF32(dst, PTRS, L, count);
    }
    base += wideGroup;
    run = rowLayout ? group : 1;
  }
}
