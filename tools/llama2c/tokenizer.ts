// llama2.c tokenizer files (tokenizer.bin, tok512.bin): int32 max_token_length, then for every token
// a float32 merge score, an int32 byte length and that many bytes (sentencepiece pieces with "▁"
// already turned into spaces; raw bytes as "<0xXX>"). Decoding follows run.c's decode(): the space a
// piece starts with is dropped right after BOS, and "<0xXX>" pieces are single bytes, so text is
// assembled as bytes and only then read as UTF-8. Encoding is run.c's encode(): a dummy space prefix,
// one token per UTF-8 character (byte fallback: byte + 3), then merging the best-scoring pair until
// none is in the vocabulary.
import { readFileSync } from "node:fs";
import { CarvqError } from "../errors.ts";

export const BOS = 1;
export const EOS = 2;
/** Ids 3..258 are the raw bytes 0x00..0xFF in llama2.c's sentencepiece vocabularies. */
const BYTE_FALLBACK_OFFSET = 3;

export interface Tokenizer {
  readonly path: string;
  readonly maxTokenLength: number;
  /** Each token's piece as bytes. */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
  /** Piece (as a latin1 string of its bytes, so any byte sequence is a key) to id. */
  readonly ids: ReadonlyMap<string, number>;
}

const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");

/** Reads a llama2.c tokenizer file; with `vocabSize`, refuses a file that holds a different number of tokens. */
export function loadTokenizer(path: string, vocabSize?: number): Tokenizer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new CarvqError(`${path}: cannot read tokenizer (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (bytes.length < 4) throw new CarvqError(`${path}: ${bytes.length} bytes; a llama2.c tokenizer starts with a 4-byte max_token_length`);
  const maxTokenLength = bytes.readInt32LE(0);
  if (maxTokenLength < 1 || maxTokenLength > 1 << 16)
    throw new CarvqError(`${path}: max_token_length is ${maxTokenLength}; expected 1 to 65536`);
  const pieces: Uint8Array[] = [];
  const scores: number[] = [];
  let at = 4;
  while (at < bytes.length && (vocabSize === undefined || pieces.length < vocabSize)) {
    if (at + 8 > bytes.length)
      throw new CarvqError(`${path}: token ${pieces.length} header at byte ${at} runs past the end of the file (${bytes.length} bytes)`);
    const score = bytes.readFloatLE(at);
    const length = bytes.readInt32LE(at + 4);
    if (length < 0 || length > maxTokenLength)
      throw new CarvqError(`${path}: token ${pieces.length} has length ${length}; expected 0 to max_token_length ${maxTokenLength}`);
    if (at + 8 + length > bytes.length)
      throw new CarvqError(`${path}: token ${pieces.length} bytes run past the end of the file (${bytes.length} bytes)`);
    pieces.push(new Uint8Array(bytes.subarray(at + 8, at + 8 + length)));
    scores.push(score);
    at += 8 + length;
  }
  if (vocabSize !== undefined && pieces.length !== vocabSize)
    throw new CarvqError(`${path}: tokenizer has ${pieces.length} tokens, the model ${vocabSize}; it belongs to another model`);
  if (vocabSize !== undefined && at !== bytes.length)
    throw new CarvqError(`${path}: tokenizer has more than the model's ${vocabSize} tokens; it belongs to another model`);
  const ids = new Map<string, number>();
  pieces.forEach((piece, id) => {
    const key = latin1(piece);
    if (!ids.has(key)) ids.set(key, id);
  });
  return { path, maxTokenLength, pieces, scores: Float32Array.from(scores), ids };
}

const RAW_BYTE = /^<0x([0-9A-Fa-f]{2})>$/;

/** The bytes token `id` contributes after `previous` (run.c's decode): BOS becomes a line break, <unk>/EOS nothing. */
export function tokenBytes(tokenizer: Tokenizer, previous: number, id: number): Uint8Array {
  if (!Number.isInteger(id) || id < 0 || id >= tokenizer.pieces.length)
    throw new CarvqError(`${tokenizer.path}: token id ${id} is out of range (0 to ${tokenizer.pieces.length - 1})`);
  if (id === BOS) return previous < 0 ? new Uint8Array(0) : Uint8Array.of(0x0a); // a story boundary
  if (id === EOS || id === 0) return new Uint8Array(0);
  let piece = tokenizer.pieces[id];
  if ((previous === BOS || previous < 0) && piece[0] === 0x20) piece = piece.subarray(1);
  const raw = RAW_BYTE.exec(latin1(piece));
  return raw ? Uint8Array.of(parseInt(raw[1], 16)) : piece;
}

/** Text of a token sequence (a leading BOS prints nothing; later BOS tokens start a new line). */
export function decode(tokenizer: Tokenizer, ids: ArrayLike<number>): string {
  const parts: Uint8Array[] = [];
  let previous = -1;
  for (let i = 0; i < ids.length; i++) {
    parts.push(tokenBytes(tokenizer, previous, ids[i]));
    previous = ids[i];
  }
  return Buffer.concat(parts).toString("utf8");
}

/** The piece of one token as text, exactly as stored (spaces included), for per-token displays. */
export function pieceText(tokenizer: Tokenizer, id: number): string {
  return Buffer.from(tokenBytes(tokenizer, 0, id)).toString("utf8");
}

/** Token ids of `text` (run.c's encode, sentencepiece's dummy prefix space), optionally after a BOS. */
export function encode(tokenizer: Tokenizer, text: string, options: { bos?: boolean } = {}): number[] {
  const tokens: number[] = [];
  if (options.bos !== false) tokens.push(BOS);
  if (text.length === 0) return tokens;
  const ids = tokenizer.ids;
  const space = ids.get(" ");
  const work: number[] = [];
  if (space !== undefined) work.push(space);
  for (const char of text) {
    const bytes = Buffer.from(char, "utf8");
    const id = ids.get(bytes.toString("latin1"));
    if (id !== undefined) work.push(id);
    else for (const b of bytes) work.push(b + BYTE_FALLBACK_OFFSET);
  }
  for (;;) {
    let bestScore = -Infinity;
    let bestId = -1;
    let bestAt = -1;
    for (let i = 0; i + 1 < work.length; i++) {
      const merged = latin1(tokenizer.pieces[work[i]]) + latin1(tokenizer.pieces[work[i + 1]]);
      const id = ids.get(merged);
      if (id !== undefined && tokenizer.scores[id] > bestScore) {
        bestScore = tokenizer.scores[id];
        bestId = id;
        bestAt = i;
      }
    }
    if (bestAt < 0) break;
    work.splice(bestAt, 2, bestId);
  }
  return tokens.concat(work);
}
