// How big an adaptor is, and how big it may be: the `--adaptor` spec (none, paper, auto or explicit
// widths), its exact cost in blob bytes, and the `auto` choice of widths from a bit budget so that a
// narrow table never pays the paper's fixed overhead.
import * as F from "../../assembly/format.ts";
import { mlpSectionBytes, tableRowBytes, type AdaptorPrecision } from "./model.ts";

/** `--adaptor`: none, the paper's 16 -> 384 -> 512 -> n, auto (from a bit budget), or m0,hidden... widths. */
export type AdaptorSpec = "none" | "paper" | "auto" | readonly number[];

/** The paper's sigma0 width and hidden widths (CARVQ: 16 -> 384 -> 512 -> n). */
export const PAPER_WIDTHS: readonly number[] = [16, 384, 512];

/** Default `--adaptor-bpp` for auto. */
export const DEFAULT_ADAPTOR_BPP = 0.1;

/** sigma0 widths auto tries, widest first. */
const AUTO_M0 = [16, 12, 8, 6, 4, 3, 2, 1];
/** Largest share of the budget auto gives to sigma0 (the per-token table). */
const AUTO_TABLE_SHARE = 0.7;
/** auto's hidden widths: m2 a multiple of 8 up to the paper's 512, m1 = 3/4 of it (the paper's ratio). */
const AUTO_MAX_M2 = 512;
const AUTO_MIN_M2 = 8;

/** Parses `--adaptor`; returns an error message (without the flag's name) for a bad value. */
export function parseAdaptorSpec(raw: string): AdaptorSpec | { error: string } {
  if (raw === "none" || raw === "paper" || raw === "auto") return raw;
  const parts = raw.split(",");
  if (parts.length < 1 || parts.length > F.MAX_ADAPTOR_LAYERS || !parts.every((p) => /^\d+$/.test(p.trim()))) {
    return {
      error: `must be none, paper, auto or 1 to ${F.MAX_ADAPTOR_LAYERS} comma-separated widths m0,m1,... (e.g. 16,384,512), got '${raw}'`,
    };
  }
  const widths = parts.map(Number);
  const bad = widths.find((w) => w < 1 || w > F.MAX_ADAPTOR_WIDTH);
  if (bad !== undefined) return { error: `widths must be 1 to ${F.MAX_ADAPTOR_WIDTH}, got ${bad} in '${raw}'` };
  return widths;
}

/** The spec as recorded in metadata and printed: "none", "paper", "auto" or "m0,m1,...". */
export function specName(spec: AdaptorSpec): string {
  return typeof spec === "string" ? spec : spec.join(",");
}

/**
 * Blob bytes an adaptor of `widths` (m0, hidden..., n) adds for `rows` tokens: both sections, their
 * two section-table entries and at most 63 bytes of alignment padding before each.
 */
export function adaptorBlobBytes(
  rows: number,
  widths: readonly number[],
  precision: AdaptorPrecision,
  tablePrecision: AdaptorPrecision = precision,
): number {
  const table = F.ADAPTOR_TABLE_HEADER_BYTES + rows * tableRowBytes(tablePrecision === "int8", widths[0]);
  return table + mlpSectionBytes(precision === "int8", widths) + 2 * (F.SECTION_ENTRY_BYTES + F.SECTION_ALIGN - 1);
}

export interface AutoChoice {
  /** m0, hidden..., n; null when the budget holds no useful adaptor. */
  widths: number[] | null;
  /** What was decided and why, in one line. */
  reason: string;
}

function kilobytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/**
 * Widths for a budget of `bpp` bits per parameter of the table (V × n): the paper's when they fit,
 * else the widest sigma0 (from 16 down) whose table takes at most 70 % of the budget and leaves
 * room for a two-hidden-layer MLP m0 -> 3/4·m2 -> m2 -> n with m2 >= 8, m2 as large as fits.
 */
export function autoWidths(rows: number, cols: number, bpp: number, precision: AdaptorPrecision): AutoChoice {
  const budget = Math.floor((bpp * rows * cols) / 8);
  const paper = [...PAPER_WIDTHS, cols];
  const paperBytes = adaptorBlobBytes(rows, paper, precision);
  if (paperBytes <= budget)
    return {
      widths: paper,
      reason: `auto: the paper's ${paper.join("-")} (${kilobytes(paperBytes)}) fits the ${bpp} bpp budget (${kilobytes(budget)})`,
    };
  for (const m0 of AUTO_M0) {
    const tableBytes = adaptorBlobBytes(rows, [m0, cols], precision) - mlpSectionBytes(precision === "int8", [m0, cols]);
    if (tableBytes > AUTO_TABLE_SHARE * budget) continue;
    for (let m2 = AUTO_MAX_M2; m2 >= AUTO_MIN_M2; m2 -= 8) {
      const m1 = Math.max(8, Math.round((0.75 * m2) / 8) * 8);
      const widths = [m0, m1, m2, cols];
      const bytes = adaptorBlobBytes(rows, widths, precision);
      if (bytes <= budget)
        return {
          widths,
          reason: `auto: ${widths.join("-")} (${kilobytes(bytes)}) for the ${bpp} bpp budget (${kilobytes(budget)}); the paper's ${paper.join("-")} would take ${kilobytes(paperBytes)}`,
        };
    }
  }
  const smallest = adaptorBlobBytes(rows, [1, 8, 8, cols], precision);
  return {
    widths: null,
    reason: `auto: no adaptor; the ${bpp} bpp budget (${kilobytes(budget)}) cannot hold even 1-8-8-${cols} (${kilobytes(smallest)}; ${precision} sigma0 costs ${tableRowBytes(precision === "int8", 1)} bytes per token at m0 = 1)`,
  };
}

/** m0, hidden..., n for a spec (auto resolved with `autoWidths`); null for none. */
export function resolveWidths(spec: AdaptorSpec, rows: number, cols: number, bpp: number, precision: AdaptorPrecision): AutoChoice {
  if (spec === "none") return { widths: null, reason: "no adaptor requested" };
  if (spec === "paper") return { widths: [...PAPER_WIDTHS, cols], reason: `the paper's ${[...PAPER_WIDTHS, cols].join("-")}` };
  if (spec === "auto") return autoWidths(rows, cols, bpp, precision);
  return { widths: [...spec, cols], reason: `widths ${[...spec, cols].join("-")}` };
}
