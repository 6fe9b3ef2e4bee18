// carvq-rt: the device runtime as a WASI command.
//
//   carvq-rt lookup [--mode resident|streaming|auto] [--adaptor-batch N] [--adaptor-tile BYTES] <blob> <token> [<token> ...]
//       writes each requested row, in the order asked, as raw little-endian float32 to stdout
//   carvq-rt lookup [lookup's options] --stdin <blob>
//       validates the blob once, then reads whitespace-separated token ids from stdin until its end
//       and writes each row as soon as its token is read (for pipes and engines that talk over them)
//   carvq-rt info <blob>
//       validates the blob and prints a one-line JSON summary with the memory plan
//   carvq-rt bench [lookup's options] <blob> <case> <count> <repetitions>
//       only in modules built with CARVQ_BENCH=1 (build/bench/): times a path inside the engine (bench.ts)
//
// Exit codes: see exit.ts and docs/RUNTIME.md. The memory budget is the module's declared maximum
// memory (asc --maximumMemory), also compiled in as CARVQ_BUDGET_PAGES; CARVQ_DEFAULT_MODE picks
// the mode when --mode is not given (0 auto, 1 resident, 2 streaming).
import { args_sizes_get, args_get, writeAll, readSome } from "./wasi";
import { arenaInit, arenaAlloc, arenaFree, arenaUsed, committedBytes, BUDGET_BYTES } from "./arena";
import { crcInit } from "./crc32";
import { textBegin, textFlush, putStr, putU64, putByte, putBytes, putJsonString, putHex32, putMilli } from "./text";
import { errBegin, die, dieFailed, failure, EXIT_OK, EXIT_USAGE, EXIT_IO, EXIT_BUDGET } from "./exit";
import {
  closeBlob, pathPtr, pathLen, fileSize, method, rows, cols, subvec, levels, codebookSize, group, layout,
  codeBits, rowBytes, groupCount, sectionCount, headerPtr, versionMinor, rowScaleCount, adapted,
  adTablePrecision, adMlpPrecision, adLayers, adWidth, adTableLength, adTableRowBytes,
} from "./blob";
import { verifySections } from "./verify";
import { tableBegin, tableOpenFile, tablePlan, tableClose, checkToken } from "./table";
import { caseId, plannedTokens, runBench } from "./bench";
import { adaptorResidentNeed, adaptorStreamingNeed, minTileBytes, mlpBytes, setCaps } from "./adaptor";
import {
  MODE_AUTO, MODE_RESIDENT, MODE_STREAMING, residentNeed, streamingNeed, decodeToken, finishRows, outPtr,
  outRows, rowOutBytes,
} from "./lookup";
import {
  METHOD_RVQ, METHOD_INT4, METHOD_INT3, SECTION_TABLE_OFFSET, SECTION_ENTRY_BYTES, S_ID, S_CRC,
  S_OFFSET, S_LENGTH, SECTION_CODES, SECTION_CODEBOOKS, SECTION_METADATA, SECTION_ROW_SCALES, LAYOUT_ROW,
  SECTION_ADAPTOR_TABLE, SECTION_ADAPTOR_MLP, ADAPTOR_INT8, VERSION_MINOR,
} from "./format";

const VERSION = "0.1.0";
const SCRATCH: usize = memory.data(16, 16);

/** bench: widen a resident blob's codebooks to f32 at open as the library does (--no-widen: decode from FP16). */
let widenForBench = true;
let argc: u32 = 0;
let argv: usize = 0;

function argPtr(i: u32): usize {
  return <usize>load<u32>(argv + (<usize>i << 2));
}

function argLen(i: u32): usize {
  const p = argPtr(i);
  let n: usize = 0;
  while (load<u8>(p + n) != 0) n++;
  return n;
}

function argIs(i: u32, s: string): bool {
  const p = argPtr(i);
  const n = <usize>s.length;
  if (argLen(i) != n) return false;
  for (let k: usize = 0; k < n; k++) if (<u32>load<u8>(p + k) != <u32>s.charCodeAt(<i32>k)) return false;
  return true;
}

function putUsage(): void {
  putStr("usage: carvq-rt lookup [--mode resident|streaming|auto] [--adaptor-batch N] [--adaptor-tile BYTES] <blob> <token> [<token> ...]\n");
  putStr("       carvq-rt lookup [--mode resident|streaming|auto] [--adaptor-batch N] [--adaptor-tile BYTES] --stdin <blob>\n");
  putStr("       carvq-rt info <blob>\n");
  putStr("       carvq-rt --version\n");
  if (CARVQ_BENCH) putStr("       carvq-rt bench [lookup's options] [--no-widen] <blob> decode|lookup|adaptor|fp16|copy <count> <repetitions>\n");
  putStr("lookup writes each row as raw little-endian float32 to stdout, in the order asked.\n");
  putStr("--stdin reads whitespace-separated token ids from stdin until its end and writes each row as soon as its\n");
  putStr("token is read; the blob is validated once. A bad id stops it (exit 2 or 5) after the rows before it.\n");
  putStr("--adaptor-batch and --adaptor-tile cap the tokens the adaptor evaluates together and the bytes of its\n");
  putStr("MLP held in memory at once (streaming: below the MLP's size, it streams in tiles); blobs without one ignore them.\n");
  putStr("exit codes: 0 ok, 2 usage, 3 cannot open/read/write, 4 bad blob, 5 token out of range, 6 memory budget exceeded\n");
}

function usageError(what: string, argIndex: i32): void {
  errBegin();
  putStr(what);
  if (argIndex >= 0) {
    putStr(" '");
    putBytes(argPtr(<u32>argIndex), argLen(<u32>argIndex), 60);
    putStr("'");
  }
  putStr(" (run carvq-rt --help)");
  die(EXIT_USAGE);
}

function readArgs(): void {
  if (args_sizes_get(SCRATCH, SCRATCH + 4) != 0) {
    errBegin();
    putStr("cannot read the command line");
    die(EXIT_IO);
  }
  argc = load<u32>(SCRATCH);
  const bufSize = <u64>load<u32>(SCRATCH, 4);
  argv = arenaAlloc(<u64>argc * 4 + 4);
  const buf = argv != 0 ? arenaAlloc(bufSize + 1) : 0;
  if (buf == 0) {
    errBegin();
    putStr("budget exceeded: the command line (");
    putU64(bufSize);
    putStr(" bytes) does not fit the memory budget of ");
    putU64(BUDGET_BYTES);
    putStr(" bytes");
    die(EXIT_BUDGET);
  }
  if (args_get(argv, buf) != 0) {
    errBegin();
    putStr("cannot read the command line");
    die(EXIT_IO);
  }
}

/** Parses a decimal token id; returns -1 if the argument is not a whole number below 2^32. */
function parseToken(i: u32): i64 {
  const p = argPtr(i);
  const n = argLen(i);
  if (n == 0 || n > 10) return -1;
  let v: i64 = 0;
  for (let k: usize = 0; k < n; k++) {
    const c = <i32>load<u8>(p + k) - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v > 0xffffffff ? -1 : v;
}

/** Parses a whole number below 2^32 (an option's value); -1 if it is not one. */
function parseCount(i: u32): i64 {
  return parseToken(i);
}

function modeName(m: u32): string {
  return m == MODE_RESIDENT ? "resident" : m == MODE_STREAMING ? "streaming" : "auto";
}

function cmdLookup(first: u32, asked: u32): void {
  if (first >= argc) usageError("lookup: missing <blob>", -1);
  const blobArg = first;
  if (blobArg + 1 >= argc) usageError("lookup: give at least one token", -1);
  for (let i = blobArg + 1; i < argc; i++) if (parseToken(i) < 0) usageError("lookup: token is not a whole number:", <i32>i);
  if (!tableOpenFile(argPtr(blobArg), argLen(blobArg))) dieFailed();
  for (let i = blobArg + 1; i < argc; i++) if (!checkToken(<u64>parseToken(i))) dieFailed();
  const count = argc - blobArg - 1;
  if (!tablePlan(asked, count)) dieFailed();
  const rowOut = <usize>rowOutBytes();
  let filled: u32 = 0;
  for (let i = blobArg + 1; i < argc; i++) {
    decodeToken(<u32>parseToken(i), outPtr + <usize>filled * rowOut, filled);
    filled++;
    if (filled == outRows || i + 1 == argc) {
      finishRows(filled);
      if (failure != EXIT_OK) dieFailed(); // a read failed or the file changed: no row of the batch is written
      const err = writeAll(1, outPtr, <usize>filled * rowOut);
      if (err != 0) {
        errBegin();
        putStr("cannot write to stdout (WASI errno ");
        putU64(err);
        putStr(")");
        die(EXIT_IO);
      }
      filled = 0;
    }
  }
  tableClose();
}

const STDIN_BUF_BYTES: usize = 1024;
const STDIN_BUF: usize = memory.data(<i32>STDIN_BUF_BYTES, 16);

/** Decodes token `t` (stdin mode), checks it, and writes its row to stdout at once. */
function writeStdinRow(t: i64, count: u64): void {
  if (t > 0xffffffff) {
    errBegin();
    putStr("lookup --stdin: token ");
    putU64(count + 1);
    putStr(" is not a whole number below 2^32");
    die(EXIT_USAGE);
  }
  if (!checkToken(<u64>t)) dieFailed();
  decodeToken(<u32>t, outPtr, 0);
  finishRows(1);
  if (failure != EXIT_OK) dieFailed();
  const err = writeAll(1, outPtr, <usize>rowOutBytes());
  if (err != 0) {
    errBegin();
    putStr("cannot write to stdout (WASI errno ");
    putU64(err);
    putStr(")");
    die(EXIT_IO);
  }
}

/** lookup --stdin <blob>: one validation, then a row per token read from stdin, as it comes. */
function cmdLookupStdin(first: u32, asked: u32): void {
  if (first >= argc) usageError("lookup --stdin: missing <blob>", -1);
  if (first + 1 < argc) usageError("lookup --stdin: the tokens come from stdin, not the command line:", <i32>(first + 1));
  if (!tableOpenFile(argPtr(first), argLen(first))) dieFailed();
  if (!tablePlan(asked, 1, 0, 0, true)) dieFailed();
  let value: i64 = 0;
  let digits: u32 = 0;
  let count: u64 = 0;
  while (true) {
    const n = readSome(0, STDIN_BUF, STDIN_BUF_BYTES);
    if (n < 0) {
      errBegin();
      putStr("cannot read stdin (WASI errno ");
      putU64(<u64>(-1 - n));
      putStr(")");
      die(EXIT_IO);
    }
    if (n == 0) break;
    for (let k: usize = 0; k < <usize>n; k++) {
      const c = <u32>load<u8>(STDIN_BUF + k);
      if (c >= 0x30 && c <= 0x39) {
        // Digits past the eleventh cannot make a number below 2^32: stop counting, keep it too big.
        if (digits < 11) value = value * 10 + <i64>(c - 0x30);
        digits++;
        if (digits > 10) value = 0x100000000;
      } else if (c == 0x20 || (c >= 0x09 && c <= 0x0d)) {
        if (digits > 0) {
          writeStdinRow(value, count);
          count++;
        }
        value = 0;
        digits = 0;
      } else {
        errBegin();
        putStr("lookup --stdin: token ");
        putU64(count + 1);
        putStr(" is not a whole number (byte ");
        putU64(c);
        putStr(" in it)");
        die(EXIT_USAGE);
      }
    }
  }
  if (digits > 0) writeStdinRow(value, count);
  tableClose();
}

/** bench <blob> <case> <count> <repetitions>: validates like lookup, then times the case (bench.ts). */
function cmdBench(first: u32, asked: u32): void {
  if (first + 4 != argc) usageError("bench: give <blob> <case> <count> <repetitions>", -1);
  const kase = caseId(argPtr(first + 1), argLen(first + 1));
  if (kase < 0) usageError("bench: the case must be decode, lookup, adaptor, fp16 or copy, got", <i32>(first + 1));
  const count = parseCount(first + 2);
  if (count < 1) usageError("bench: <count> must be a whole number from 1, got", <i32>(first + 2));
  const repetitions = parseCount(first + 3);
  if (repetitions < 1 || repetitions > 100) usageError("bench: <repetitions> must be a whole number from 1 to 100, got", <i32>(first + 3));
  if (!tableOpenFile(argPtr(first), argLen(first))) dieFailed();
  if (!tablePlan(asked, plannedTokens(<u32>kase, <u32>count), 0, 0, widenForBench)) dieFailed();
  runBench(<u32>kase, <u32>count, <u32>repetitions);
  tableClose();
}

function putKey(k: string): void {
  putStr(",\"");
  putStr(k);
  putStr("\":");
}

function cmdInfo(first: u32): void {
  if (first >= argc) usageError("info: missing <blob>", -1);
  if (first + 1 < argc) usageError("info: unexpected argument", <i32>(first + 1));
  if (!tableOpenFile(argPtr(first), argLen(first))) dieFailed();
  const used = arenaUsed();
  const resNeed = residentNeed();
  const strNeed = streamingNeed();
  const free = arenaFree();
  if (!verifySections()) dieFailed(); // always by streaming: info works for blobs of any size
  closeBlob();
  const isRvq = method == METHOD_RVQ;
  textBegin(1);
  putStr("{\"format\":\"carvq\",\"formatVersion\":\"1.");
  putU64(versionMinor);
  putStr("\",\"file\":");
  putJsonString(pathPtr, pathLen);
  putKey("fileBytes");
  putU64(fileSize);
  putKey("method");
  putStr(isRvq ? "\"rvq\"" : method == METHOD_INT4 ? "\"int4\"" : method == METHOD_INT3 ? "\"int3\"" : "\"int2\"");
  putKey("rows");
  putU64(rows);
  putKey("cols");
  putU64(cols);
  putKey("subvec");
  putU64(subvec);
  putKey("levels");
  putU64(levels);
  putKey("codebookSize");
  putU64(codebookSize);
  putKey("group");
  putU64(group);
  putKey("layout");
  putStr(!isRvq ? "null" : layout == LAYOUT_ROW ? "\"row\"" : "\"col\"");
  putKey("codeBits");
  putU64(codeBits);
  putKey("rowBytes");
  putU64(rowBytes);
  putKey("groupCount");
  putU64(groupCount);
  putKey("rowScales");
  putU64(rowScaleCount);
  putKey("adaptor");
  if (!adapted) putStr("null");
  else {
    putStr("{\"tablePrecision\":");
    putStr(adTablePrecision == ADAPTOR_INT8 ? "\"int8\"" : "\"fp16\"");
    putKey("mlpPrecision");
    putStr(adMlpPrecision == ADAPTOR_INT8 ? "\"int8\"" : "\"fp16\"");
    putKey("m0");
    putU64(adWidth(0));
    putKey("layers");
    putU64(adLayers);
    putKey("widths");
    putByte(0x5b);
    for (let k: u32 = 0; k <= adLayers; k++) {
      if (k > 0) putByte(0x2c);
      putU64(adWidth(k));
    }
    putByte(0x5d);
    putKey("tableBytes");
    putU64(adTableLength);
    putKey("tableRowBytes");
    putU64(adTableRowBytes);
    putKey("mlpBytes");
    putU64(mlpBytes());
    putKey("residentBytes");
    putU64(adaptorResidentNeed());
    putKey("streamingBytes");
    putU64(adaptorStreamingNeed());
    putKey("minTileBytes");
    putU64(minTileBytes());
    putByte(0x7d);
  }
  putKey("bitsPerParameter");
  const params = <u64>rows * <u64>cols;
  putMilli((fileSize * 8000 + params / 2) / params);
  putKey("sections");
  putByte(0x5b);
  for (let i: u32 = 0; i < sectionCount; i++) {
    const e = headerPtr + SECTION_TABLE_OFFSET + i * SECTION_ENTRY_BYTES;
    const id = load<u32>(e + S_ID);
    if (i > 0) putByte(0x2c);
    putStr("{\"id\":");
    putU64(id);
    putStr(",\"name\":");
    putStr(id == SECTION_CODES ? "\"CODES\"" : id == SECTION_CODEBOOKS ? "\"CODEBOOKS\"" : id == SECTION_METADATA ? "\"METADATA\"" : id == SECTION_ROW_SCALES ? "\"ROW_SCALES\"" : id == SECTION_ADAPTOR_TABLE ? "\"ADAPTOR_TABLE\"" : id == SECTION_ADAPTOR_MLP ? "\"ADAPTOR_MLP\"" : "\"?\"");
    putKey("offset");
    putU64(load<u64>(e + S_OFFSET));
    putKey("length");
    putU64(load<u64>(e + S_LENGTH));
    putKey("crc");
    putByte(0x22);
    putHex32(load<u32>(e + S_CRC));
    putByte(0x22);
    putByte(0x7d);
  }
  putByte(0x5d);
  putKey("runtime");
  putStr("{\"version\":\"");
  putStr(VERSION);
  putStr("\",\"build\":");
  putStr(ASC_FEATURE_SIMD ? "\"simd\"" : "\"scalar\"");
  putKey("budgetBytes");
  putU64(BUDGET_BYTES);
  putKey("staticBytes");
  putU64(<u64>__heap_base);
  putKey("defaultMode");
  putByte(0x22);
  putStr(modeName(<u32>CARVQ_DEFAULT_MODE));
  putByte(0x22);
  putKey("residentBytes");
  putU64(used + resNeed);
  putKey("residentFits");
  putStr(resNeed <= free ? "true" : "false");
  putKey("streamingBytes");
  putU64(used + strNeed);
  putKey("streamingFits");
  putStr(strNeed <= free ? "true" : "false");
  putKey("peakMemoryBytes");
  putU64(committedBytes());
  putStr("}}\n");
  if (textFlush() != 0) {
    errBegin();
    putStr("cannot write to stdout");
    die(EXIT_IO);
  }
}

export function _start(): void {
  arenaInit();
  crcInit();
  readArgs();
  tableBegin();
  if (argc < 2) usageError("missing command: lookup [--mode resident|streaming|auto] <blob> <token>... or info <blob>", -1);
  if (argIs(1, "--help") || argIs(1, "-h") || argIs(1, "help")) {
    textBegin(1);
    putUsage();
    textFlush();
    return;
  }
  if (argIs(1, "--version")) {
    textBegin(1);
    putStr("carvq-rt ");
    putStr(VERSION);
    putStr(" (blob format 1.0 to 1.");
    putU64(<u64>VERSION_MINOR);
    putStr(", ");
    putStr(ASC_FEATURE_SIMD ? "simd" : "scalar");
    putStr(" build, memory budget ");
    putU64(BUDGET_BYTES);
    putStr(" bytes, default mode ");
    putStr(modeName(<u32>CARVQ_DEFAULT_MODE));
    putStr(")\n");
    textFlush();
    return;
  }
  // The bench command exists only where CARVQ_BENCH is 1: a constant-false branch is not compiled,
  // so device modules carry neither the command nor its clock import.
  let isBench = false;
  if (CARVQ_BENCH) isBench = argIs(1, "bench");
  const isLookup = isBench || argIs(1, "lookup");
  if (!isLookup && !argIs(1, "info")) usageError("unknown command", 1);
  let i: u32 = 2;
  let asked = MODE_AUTO;
  let batchCap: i64 = 0;
  let tileCap: i64 = 0;
  let fromStdin = false;
  while (i < argc) {
    if (argIs(i, "--")) {
      i++;
      break;
    }
    if (argIs(i, "--mode")) {
      if (!isLookup) usageError("info takes no option", <i32>i);
      if (i + 1 >= argc) usageError("--mode needs a value: resident, streaming or auto", -1);
      i++;
      if (argIs(i, "resident")) asked = MODE_RESIDENT;
      else if (argIs(i, "streaming")) asked = MODE_STREAMING;
      else if (argIs(i, "auto")) asked = MODE_AUTO;
      else usageError("--mode must be resident, streaming or auto, got", <i32>i);
      i++;
      continue;
    }
    if (argIs(i, "--no-widen")) {
      if (!isBench) usageError("--no-widen is an option of bench only", <i32>i);
      widenForBench = false;
      i++;
      continue;
    }
    if (argIs(i, "--stdin")) {
      if (!isLookup || isBench) usageError("--stdin is an option of lookup only", <i32>i);
      fromStdin = true;
      i++;
      continue;
    }
    const isBatch = argIs(i, "--adaptor-batch");
    if (isBatch || argIs(i, "--adaptor-tile")) {
      if (!isLookup) usageError("info takes no option", <i32>i);
      if (i + 1 >= argc) usageError(isBatch ? "--adaptor-batch needs a number of tokens" : "--adaptor-tile needs a number of bytes", -1);
      i++;
      const v = parseCount(i);
      if (v < 1) usageError(isBatch ? "--adaptor-batch must be a whole number from 1, got" : "--adaptor-tile must be a whole number of bytes from 1, got", <i32>i);
      if (isBatch) batchCap = v;
      else tileCap = v;
      i++;
      continue;
    }
    if (argLen(i) > 0 && load<u8>(argPtr(i)) == 0x2d) usageError("unknown option", <i32>i);
    break;
  }
  setCaps(<u32>batchCap, <u64>tileCap);
  if (CARVQ_BENCH) {
    if (isBench) {
      cmdBench(i, asked);
      return;
    }
  }
  if (fromStdin) cmdLookupStdin(i, asked);
  else if (isLookup) cmdLookup(i, asked);
  else cmdInfo(i);
}
