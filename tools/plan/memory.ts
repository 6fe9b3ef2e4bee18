// What a blob needs from a device target (targets/<name>.json) before it is made: the runtime's
// linear memory in the target's mode, and whether it fits the target's budget.
//
// The runtime plans its own memory (assembly/lookup.ts: residentNeed, streamingNeed) and reports
// the plan with `info`. Rather than copy those formulas, we ask the target's own module: `info` on
// a small stand-in blob with the same width and options (two rows, all codes and values zero), run under the
// in-memory WASI host. Streaming needs do not depend on the row count (one record, one output row,
// one codebook entry per level, the row scales); the resident need is the whole file plus a part
// that does not depend on it, so the stand-in's is shifted by the real file size. Both are then
// raised by COMMAND_LINE_SLACK for a real lookup's command line (a path and ~100 token ids), which
// the runtime also places in the arena.
import { compiledModule, loadTarget, wasmPath, type RuntimeInfo, type Target } from "../../host/node.ts";
import { runMinimalWasi } from "../../host/minimal-wasi.ts";
import { rvqSections, scalarSections } from "../blob/table.ts";
import { DEFAULT_COMPRESS_OPTIONS, planCompression, sealBlob, type CompressOptions } from "../compress.ts";
import { CODEBOOK_SIZE, subvectorCount } from "../quant/layout.ts";
import { CarvqError } from "../errors.ts";
import { RVQ_METHOD } from "../quant/methods.ts";

/** Bytes allowed for a lookup's command line beyond the `info` run's: a long path and ~100 tokens. */
export const COMMAND_LINE_SLACK = 1024;

export interface MemoryNeed {
  target: string;
  mode: "resident" | "streaming";
  /** Linear memory the runtime needs for this blob in the target's mode, slack included. */
  needBytes: number;
  budgetBytes: number;
  fits: boolean;
}

function align16(v: number): number {
  return Math.ceil(v / 16) * 16;
}

const measured = new Map<string, { resident: number; streaming: number; standInFile: number }>();

function standInMatrix(rows: number, cols: number) {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = Math.cos(i * 0.37) * (1 + (i % 5));
  return { rows, cols, data };
}

/** A blob of two rows with these options whose codes and values are all zero: the runtime's memory plan does not depend on them. */
function standInBlob(cols: number, o: CompressOptions): Uint8Array {
  const { weights: _weights, ...plain } = o;
  const rows = 2;
  const matrix = standInMatrix(rows, cols);
  // One group for the stand-in: any group size is valid, and the need does not depend on it.
  const plan = planCompression(
    matrix,
    { ...plain, group: o.method === RVQ_METHOD ? Math.min(o.group, rows) : o.block, restarts: 1, klEncode: 0, tuneKl: 0, adaptor: "none" },
    {},
  );
  const header = plan.header;
  const sections =
    header.method === RVQ_METHOD
      ? rvqSections(header, {
          codes: new Uint8Array(rows * subvectorCount(cols, header.subvec) * header.levels),
          codebooks: new Uint16Array(header.groupCount * header.levels * CODEBOOK_SIZE * header.subvec),
          groupCount: header.groupCount,
          rowScales: header.rowScaled ? { halves: new Uint16Array(o.rowScaleCount), index: new Uint8Array(rows) } : null,
        })
      : scalarSections(header, {
          scales: new Uint16Array(rows * header.groupCount),
          codes: new Uint8Array(rows * cols),
          blocks: header.groupCount,
        });
  return sealBlob(matrix, plan, sections, {}, { relMSE: 1, cosine: 0 }).bytes;
}

/** The runtime's `info` memory figures for a stand-in of `cols` columns compressed with `o`. */
function measure(target: Target, cols: number, o: CompressOptions): { resident: number; streaming: number; standInFile: number } {
  const key = JSON.stringify([target.name, cols, o.method, o.h, o.levels, o.layout, o.rowScaleCount, o.block]);
  let found = measured.get(key);
  if (found !== undefined) return found;
  const bytes = standInBlob(cols, o);
  const run = runMinimalWasi(compiledModule(wasmPath({ target: target.name })), {
    args: ["info", "/m/b.carvq"],
    preopens: [{ name: "/m", files: { "b.carvq": bytes } }],
  });
  if (run.exitCode !== 0) throw new CarvqError(`target ${target.name}: the runtime's info failed on a stand-in blob: ${run.stderr.trim()}`);
  const info = JSON.parse(new TextDecoder().decode(run.stdout)) as RuntimeInfo;
  found = { resident: info.runtime.residentBytes, streaming: info.runtime.streamingBytes, standInFile: bytes.length };
  measured.set(key, found);
  return found;
}

/**
 * The memory the target's runtime needs for a blob of `fileBytes` bytes, `cols` columns, compressed
 * with `options`, in the target's mode; needs the target's module (npm run build).
 */
export function memoryNeed(targetOrName: Target | string, cols: number, options: Partial<CompressOptions>, fileBytes: number): MemoryNeed {
  const target = typeof targetOrName === "string" ? loadTarget(targetOrName) : targetOrName;
  const o: CompressOptions = { ...DEFAULT_COMPRESS_OPTIONS, ...options };
  const m = measure(target, cols, o);
  const need = target.mode === "resident" ? m.resident - align16(m.standInFile + 8) + align16(fileBytes + 8) : m.streaming;
  const needBytes = need + COMMAND_LINE_SLACK;
  return {
    target: target.name,
    mode: target.mode,
    needBytes,
    budgetBytes: target.memoryBudgetBytes,
    fits: needBytes <= target.memoryBudgetBytes,
  };
}

/**
 * The largest blob a resident target can hold: budget minus everything that is not the file
 * (static data, command line, header, one output row), for `cols` columns. Null for streaming
 * targets, whose memory does not bound the blob.
 */
export function maxResidentBlobBytes(targetOrName: Target | string, cols: number, options: Partial<CompressOptions>): number | null {
  const target = typeof targetOrName === "string" ? loadTarget(targetOrName) : targetOrName;
  if (target.mode !== "resident") return null;
  const base = memoryNeed(target, cols, options, 0).needBytes - align16(8);
  // need(file) = base + align16(file + 8) <= budget  <=>  file + 8 <= floor16(budget - base)
  return Math.max(0, Math.floor((target.memoryBudgetBytes - base) / 16) * 16 - 8);
}
