// The blob layout, version 1: the single source of truth for every byte offset and code.
//
// This file is compiled twice: by AssemblyScript into the runtime (assembly/) and by TypeScript
// into the offline tools (tools/blob/). It must therefore stay plain constants: integer literals
// only, no types that exist in one language but not the other. docs/FORMAT.md describes the same
// layout in prose for implementers in other languages; change both together.

// ---- File header (little-endian, HEADER_BYTES long, at offset 0) ----
// Version 1.1 adds the optional ROW_SCALES section (gain-shape); 1.2 the optional corrective
// adaptor (ADAPTOR_TABLE + ADAPTOR_MLP). A blob is written with the lowest version it needs.
/** "CRVQ" read as a little-endian u32: bytes 0x43 0x52 0x56 0x51. */
export const MAGIC = 0x51565243;
export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 2;
export const HEADER_BYTES = 64;

export const H_MAGIC = 0; // u32
export const H_VERSION_MAJOR = 4; // u16
export const H_VERSION_MINOR = 6; // u16
export const H_HEADER_BYTES = 8; // u32, = HEADER_BYTES
export const H_SECTION_COUNT = 12; // u32
export const H_METHOD = 16; // u32, one of METHOD_*
export const H_ROWS = 20; // u32, V: tokens
export const H_COLS = 24; // u32, n: values per token
export const H_SUBVEC = 28; // u32, h: sub-vector length (RVQ), 0 for scalar methods
export const H_LEVELS = 32; // u32, L: residual levels (RVQ), 0 for scalar methods
export const H_CODEBOOK_SIZE = 36; // u32, K: centroids per codebook (RVQ: 16), 0 for scalar
export const H_GROUP = 40; // u32, RVQ: sub-vectors per group (g); scalar: values per scale block
export const H_LAYOUT = 44; // u32, one of LAYOUT_* (RVQ), 0 for scalar methods
export const H_CODE_BITS = 48; // u32, bits per stored code: 4 for RVQ, 4/3/2 for int4/int3/int2
export const H_ROW_BYTES = 52; // u32, bytes of one token's record in the codes section
export const H_GROUP_COUNT = 56; // u32, RVQ: number of codebook groups; scalar: scale blocks per row
export const H_HEADER_CRC = 60; // u32, CRC-32 of bytes [0, 60) followed by the whole section table

// ---- Section table (immediately after the header) ----
export const SECTION_TABLE_OFFSET = 64;
export const SECTION_ENTRY_BYTES = 24;
export const S_ID = 0; // u32, one of SECTION_*
export const S_CRC = 4; // u32, CRC-32 (IEEE, as zlib) of the section's bytes
export const S_OFFSET = 8; // u64, from the start of the file, a multiple of SECTION_ALIGN
export const S_LENGTH = 16; // u64, bytes, without alignment padding
/** Sections start on this boundary; the gap before one is zero bytes. */
export const SECTION_ALIGN = 64;
/** A v1 blob never has more sections than this; readers refuse larger counts before allocating. */
export const MAX_SECTIONS = 16;

export const SECTION_CODES = 1; // V records of H_ROW_BYTES bytes, token-major
export const SECTION_CODEBOOKS = 2; // RVQ only: FP16 centroids, group-major
export const SECTION_METADATA = 3; // UTF-8 JSON, informative only
/** v1.1, RVQ only: FP16 row scales; when present each CODES record starts with a u8 index into them. */
export const SECTION_ROW_SCALES = 4;
/** A ROW_SCALES section holds 1 to this many FP16 values (one u8 index per row selects one). */
export const MAX_ROW_SCALES = 256;
/** v1.2: the adaptor's per-token table sigma0 (V rows of m0 values). */
export const SECTION_ADAPTOR_TABLE = 5;
/** v1.2: the adaptor's MLP sigma1 (m0 -> hidden... -> n). Present exactly when ADAPTOR_TABLE is. */
export const SECTION_ADAPTOR_MLP = 6;

// ---- Adaptor sections (v1.2) ----
/** Weight precision codes (ADAPTOR_TABLE and ADAPTOR_MLP each start with one, as a u32). */
export const ADAPTOR_INT8 = 0; // int8 values, one FP16 scale per row (table) or per output channel (MLP)
export const ADAPTOR_FP16 = 1; // FP16 values, no scales
/** ADAPTOR_TABLE starts with u32 precision, u32 m0; then V records. */
export const ADAPTOR_TABLE_HEADER_BYTES = 8;
/** ADAPTOR_MLP starts with u32 precision, u32 layer_count, then layer_count + 1 u32 widths. */
export const MAX_ADAPTOR_LAYERS = 4;
export const MAX_ADAPTOR_WIDTH = 4096;
/** LayerNorm epsilon of the adaptor's hidden layers. */
export const ADAPTOR_LN_EPS = 0.00001;

// ---- Methods ----
export const METHOD_RVQ = 1;
export const METHOD_INT4 = 2;
export const METHOD_INT3 = 3;
export const METHOD_INT2 = 4;

// ---- RVQ group layouts ----
/** Paper layout: group = floor((token * S + s) / g), S = ceil(n / h) sub-vectors per row. */
export const LAYOUT_ROW = 0;
/** Column-block layout: group = floor(token / g) * S + s. */
export const LAYOUT_COL = 1;

/** RVQ codes are 4-bit: K = 16 centroids per codebook. */
export const RVQ_CODE_BITS = 4;
export const RVQ_CODEBOOK_SIZE = 16;

// ---- Limits every reader enforces before allocating ----
export const MAX_ROWS = 0x1000000; // 16,777,216 tokens
export const MAX_COLS = 65536;
export const MAX_SUBVEC = 256;
export const MAX_LEVELS = 8;
export const MAX_SCALE_BLOCK = 65536;
