// One-line messages and the JSON summary, built without the garbage-collected runtime. Bytes go
// to one of two sinks: a static buffer flushed to a WASI file descriptor when full and at the end
// (the command's stdout text), or the failure message (messageBegin): one line kept in memory,
// cut at MESSAGE_CAP bytes, which the command prints to stderr and the library hands to its host.
import { writeAll } from "./wasi";

const CAP: usize = 1024;
const BUF: usize = memory.data(<i32>CAP, 16);
let used: usize = 0;
let target: u32 = 2;
let failed: u32 = 0;

/** The longest failure message kept, in bytes. */
export const MESSAGE_CAP: usize = 512;
/** The failure message of the last refusal (MESSAGE_CAP bytes). */
export const MESSAGE: usize = memory.data(<i32>MESSAGE_CAP, 16);
export let messageLen: usize = 0;
let toMessage = false;
/** Appends are dropped (a second refusal after the first: the first one's message is kept). */
let dropping = false;

/** Starts a new text destined for `fd` (1 = stdout, 2 = stderr). */
export function textBegin(fd: u32): void {
  used = 0;
  target = fd;
  failed = 0;
  toMessage = false;
  dropping = false;
}

/**
 * Starts a new failure message (replacing the last one), or with `keep`, leaves the last one as it
 * is and drops what follows; put*() calls go there until textBegin.
 */
export function messageBegin(keep: bool = false): void {
  if (!keep) messageLen = 0;
  toMessage = true;
  dropping = keep;
}

/** Writes what is buffered; returns the first WASI errno met since textBegin, or 0. */
export function textFlush(): u32 {
  if (used > 0 && failed == 0) failed = writeAll(target, BUF, used);
  used = 0;
  return failed;
}

export function putByte(b: u32): void {
  if (toMessage) {
    if (!dropping && messageLen < MESSAGE_CAP) store<u8>(MESSAGE + messageLen++, <u8>b);
    return;
  }
  if (used == CAP) textFlush();
  store<u8>(BUF + used, <u8>b);
  used++;
}

/** Appends an ASCII string literal (every literal in this runtime is ASCII). */
export function putStr(s: string): void {
  const n = s.length;
  for (let i = 0; i < n; i++) putByte(<u32>s.charCodeAt(i));
}

/** Appends raw bytes (a file name from argv), at most `max` of them, with "..." when cut. */
export function putBytes(ptr: usize, len: usize, max: usize = 200): void {
  const n = len < max ? len : max;
  for (let i: usize = 0; i < n; i++) {
    const c = <u32>load<u8>(ptr + i);
    putByte(c < 0x20 || c == 0x7f ? 0x3f : c);
  }
  if (len > max) putStr("...");
}

/** Appends `bytes` as a JSON string (quotes, escapes; non-ASCII bytes pass through as UTF-8). */
export function putJsonString(ptr: usize, len: usize): void {
  putByte(0x22);
  for (let i: usize = 0; i < len; i++) {
    const c = <u32>load<u8>(ptr + i);
    if (c == 0x22 || c == 0x5c) {
      putByte(0x5c);
      putByte(c);
    } else if (c < 0x20) {
      putStr("\\u00");
      putByte(hexDigit(c >> 4));
      putByte(hexDigit(c & 15));
    } else putByte(c);
  }
  putByte(0x22);
}

export function putU64(v: u64): void {
  if (v == 0) {
    putByte(0x30);
    return;
  }
  let div: u64 = 1;
  while (v / div >= 10) div *= 10;
  while (div > 0) {
    putByte(0x30 + <u32>((v / div) % 10));
    div /= 10;
  }
}

function hexDigit(d: u32): u32 {
  return d < 10 ? 0x30 + d : 0x61 + d - 10;
}

/** Appends `0x` and 8 hex digits. */
export function putHex32(v: u32): void {
  putStr("0x");
  for (let shift = 28; shift >= 0; shift -= 4) putByte(hexDigit((v >> shift) & 15));
}

/** Appends v / 1000 with three decimals (v is a count of thousandths). */
export function putMilli(v: u64): void {
  putU64(v / 1000);
  putByte(0x2e);
  const f = <u32>(v % 1000);
  putByte(0x30 + f / 100);
  putByte(0x30 + (f / 10) % 10);
  putByte(0x30 + (f % 10));
}
