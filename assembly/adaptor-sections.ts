// The headers of a v1.2 blob's adaptor sections (ADAPTOR_MLP, ADAPTOR_TABLE): precision codes,
// layer count, widths, every layer's offsets, and the lengths the widths give.
import {
  ADAPTOR_INT8, ADAPTOR_FP16, ADAPTOR_TABLE_HEADER_BYTES, MAX_ADAPTOR_LAYERS, MAX_ADAPTOR_WIDTH,
  SECTION_ADAPTOR_TABLE, SECTION_ADAPTOR_MLP,
} from "./format";
import { putStr, putU64 } from "./text";
import { fail, EXIT_BAD_BLOB } from "./exit";
import {
  readAt, badSection, rows, cols, adapted, adTablePrecision, adTableOffset, adTableLength, adTableRowBytes,
  adMlpPrecision, adMlpOffset, adMlpLength, adLayers, AD_WIDTHS, AD_LAYOUT, adWidth, adTableIndex, adMlpIndex,
  L_WEIGHTS, L_SCALES, L_BIAS, L_GAMMA, L_BETA, L_END,
} from "./blob";

const AD_HEAD: usize = memory.data(32, 16);

// A problem inside an adaptor section is recorded here and reported only once every CRC has
// matched (verifySections), as the TypeScript reader does: a corrupted byte in a width is a CRC
// mismatch, not a width out of range. Until then the blob is planned as if it had no adaptor.
const FAULT_NONE: u32 = 0;
const FAULT_MLP_SHORT: u32 = 1; // a = length
const FAULT_MLP_PRECISION: u32 = 2; // a = code
const FAULT_MLP_LAYERS: u32 = 3; // a = layer_count
const FAULT_MLP_SHORT_WIDTHS: u32 = 4; // a = length, b = widths
const FAULT_MLP_WIDTH: u32 = 5; // a = k, b = width
const FAULT_MLP_OUTPUT: u32 = 6; // a = w_C
const FAULT_MLP_LENGTH: u32 = 7; // a = length, b = expected (widths in AD_WIDTHS)
const FAULT_TABLE_SHORT: u32 = 8; // a = length
const FAULT_TABLE_PRECISION: u32 = 9; // a = code
const FAULT_TABLE_M0: u32 = 10; // a = m0
const FAULT_TABLE_LENGTH: u32 = 11; // a = length, b = expected
let fault: u32 = FAULT_NONE;
let faultA: u64 = 0;
let faultB: u64 = 0;

function setFault(kind: u32, a: u64, b: u64): bool {
  fault = kind;
  faultA = a;
  faultB = b;
  return true;
}

/** Forgets the problem recorded for the last blob. */
export function resetAdaptorFault(): void {
  fault = FAULT_NONE;
  faultA = 0;
  faultB = 0;
}

/** Bytes of one stored matrix of `rows` x `width` (int8: values then one FP16 scale per row). */
function matrixBytes(int8: bool, rows: u64, width: u64): u64 {
  return int8 ? rows * width + 2 * rows : 2 * rows * width;
}

/**
 * Reads the headers of ADAPTOR_MLP and ADAPTOR_TABLE (at most 28 and 8 bytes) and checks them as
 * docs/FORMAT.md and tools/blob/adaptor.ts do: precision codes, layer_count 1 to 4, every width
 * 1 to 4096, w_C = n, m0 = w_0, and both lengths exactly what the widths give. Sizes are computed
 * in u64 from the range-checked widths. Records every layer's offsets for the kernels and sets
 * `adapted`, or records the first problem (reported by verifySections). False only when a read
 * failed (EXIT_IO recorded).
 */
export function readAdaptor(): bool {
  // MLP first, as the TypeScript reader does.
  if (adMlpLength < 8) return setFault(FAULT_MLP_SHORT, adMlpLength, 0);
  if (!readAt(AD_HEAD, adMlpOffset, 8)) return false;
  adMlpPrecision = load<u32>(AD_HEAD);
  if (adMlpPrecision != ADAPTOR_INT8 && adMlpPrecision != ADAPTOR_FP16) return setFault(FAULT_MLP_PRECISION, adMlpPrecision, 0);
  adLayers = load<u32>(AD_HEAD, 4);
  if (adLayers < 1 || adLayers > <u32>MAX_ADAPTOR_LAYERS) return setFault(FAULT_MLP_LAYERS, adLayers, 0);
  const headBytes = <u64>8 + 4 * (<u64>adLayers + 1);
  if (adMlpLength < headBytes) return setFault(FAULT_MLP_SHORT_WIDTHS, adMlpLength, adLayers + 1);
  if (!readAt(AD_WIDTHS, adMlpOffset + 8, <usize>(4 * (adLayers + 1)))) return false;
  for (let k: u32 = 0; k <= adLayers; k++) {
    const w = adWidth(k);
    if (w < 1 || w > <u32>MAX_ADAPTOR_WIDTH) return setFault(FAULT_MLP_WIDTH, k, w);
  }
  if (adWidth(adLayers) != cols) return setFault(FAULT_MLP_OUTPUT, adWidth(adLayers), 0);
  const int8 = adMlpPrecision == ADAPTOR_INT8;
  let at = headBytes;
  for (let k: u32 = 0; k < adLayers; k++) {
    const inputs = <u64>adWidth(k);
    const outputs = <u64>adWidth(k + 1);
    const e = AD_LAYOUT + (<usize>k << 5);
    store<u32>(e + L_WEIGHTS, <u32>at);
    store<u32>(e + L_SCALES, <u32>(at + outputs * inputs * (int8 ? 1 : 2)));
    at += matrixBytes(int8, outputs, inputs);
    store<u32>(e + L_BIAS, <u32>at);
    at += 2 * outputs;
    if (k + 1 < adLayers) {
      store<u32>(e + L_GAMMA, <u32>at);
      store<u32>(e + L_BETA, <u32>(at + 2 * outputs));
      at += 4 * outputs;
    } else {
      store<u32>(e + L_GAMMA, 0);
      store<u32>(e + L_BETA, 0);
    }
    store<u32>(e + L_END, <u32>at);
  }
  if (adMlpLength != at) return setFault(FAULT_MLP_LENGTH, adMlpLength, at);

  if (adTableLength < <u64>ADAPTOR_TABLE_HEADER_BYTES) return setFault(FAULT_TABLE_SHORT, adTableLength, 0);
  if (!readAt(AD_HEAD, adTableOffset, 8)) return false;
  adTablePrecision = load<u32>(AD_HEAD);
  if (adTablePrecision != ADAPTOR_INT8 && adTablePrecision != ADAPTOR_FP16) return setFault(FAULT_TABLE_PRECISION, adTablePrecision, 0);
  const m0 = load<u32>(AD_HEAD, 4);
  if (m0 != adWidth(0)) return setFault(FAULT_TABLE_M0, m0, 0);
  adTableRowBytes = adTablePrecision == ADAPTOR_INT8 ? 2 + m0 : 2 * m0;
  const wantTable = <u64>ADAPTOR_TABLE_HEADER_BYTES + <u64>rows * <u64>adTableRowBytes;
  if (adTableLength != wantTable) return setFault(FAULT_TABLE_LENGTH, adTableLength, wantTable);
  adapted = true;
  return true;
}

/** Reports the adaptor problem readAdaptor recorded, if any (EXIT_BAD_BLOB, false). */
export function reportAdaptorFault(): bool {
  if (fault == FAULT_NONE) return true;
  const table = fault >= FAULT_TABLE_SHORT;
  badSection(table ? adTableIndex : adMlpIndex, table ? SECTION_ADAPTOR_TABLE : SECTION_ADAPTOR_MLP, "");
  if (fault == FAULT_MLP_SHORT || fault == FAULT_TABLE_SHORT) {
    putStr("length ");
    putU64(faultA);
    putStr(", too short for its 8-byte header");
  } else if (fault == FAULT_MLP_PRECISION || fault == FAULT_TABLE_PRECISION) {
    putStr("precision is ");
    putU64(faultA);
    putStr(", expected 0 (int8) or 1 (fp16)");
  } else if (fault == FAULT_MLP_LAYERS) {
    putStr("layer_count is ");
    putU64(faultA);
    putStr(", expected 1 to 4");
  } else if (fault == FAULT_MLP_SHORT_WIDTHS) {
    putStr("length ");
    putU64(faultA);
    putStr(", too short for ");
    putU64(faultB);
    putStr(" widths");
  } else if (fault == FAULT_MLP_WIDTH) {
    putStr("width ");
    putU64(faultA);
    putStr(" is ");
    putU64(faultB);
    putStr(", expected 1 to 4096");
  } else if (fault == FAULT_MLP_OUTPUT) {
    putStr("output width is ");
    putU64(faultA);
    putStr(", expected the table's ");
    putU64(cols);
    putStr(" columns");
  } else if (fault == FAULT_MLP_LENGTH || fault == FAULT_TABLE_LENGTH) {
    putStr("length ");
    putU64(faultA);
    putStr(", expected ");
    putU64(faultB);
    if (fault == FAULT_MLP_LENGTH) {
      putStr(" for widths ");
      for (let k: u32 = 0; k <= adLayers; k++) {
        if (k > 0) putStr("-");
        putU64(adWidth(k));
      }
    }
  } else {
    putStr("m0 is ");
    putU64(faultA);
    putStr(", expected the MLP's input width ");
    putU64(adWidth(0));
  }
  return fail(EXIT_BAD_BLOB);
}
