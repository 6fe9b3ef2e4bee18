// Finding a blob's path under the host's preopened directories and opening it read-only, as
// wasi-libc resolves paths: the longest matching preopen name wins, "." matches any relative path.
import {
  path_open, fd_prestat_get, fd_prestat_dir_name, fd_filestat_get, ERRNO_SUCCESS, ERRNO_BADF,
  ERRNO_NOENT, ERRNO_ACCES, ERRNO_NOTCAPABLE, ERRNO_ISDIR, FILETYPE_REGULAR_FILE, LOOKUP_SYMLINK_FOLLOW,
  RIGHTS_READ_FILE,
} from "./wasi";
import { arenaAlloc, arenaMark, arenaRelease } from "./arena";
import { putStr, putU64 } from "./text";
import { fail, EXIT_IO } from "./exit";
import { blobErr, ioErr } from "./blob";
import * as blob from "./blob";

const SCRATCH: usize = memory.data(64, 16);

function strip(ptr: usize, len: usize): usize {
  // number of leading "./" pairs and extra slashes after them
  let i: usize = 0;
  while (i + 1 < len && load<u8>(ptr + i) == 0x2e && load<u8>(ptr + i + 1) == 0x2f) {
    i += 2;
    while (i < len && load<u8>(ptr + i) == 0x2f) i++;
  }
  return i;
}

/**
 * Finds the preopened directory that holds `path` (the longest matching preopen name, as
 * wasi-libc does) and opens the file read-only. Sets the blob's path, `fd` and `fileSize`, or
 * records the refusal (EXIT_IO) and returns false.
 */
export function openBlob(ptr: usize, len: usize): bool {
  blob.pathPtr = ptr;
  blob.pathLen = len;
  const mark = arenaMark();
  let bestFd: i32 = -1;
  let bestScore: i32 = -1;
  let bestRel: usize = 0;
  const absolute = len > 0 && load<u8>(ptr) == 0x2f;
  for (let dirFd: u32 = 3; dirFd < 1024; dirFd++) {
    const err = fd_prestat_get(dirFd, SCRATCH);
    if (err == ERRNO_BADF) break;
    if (err != ERRNO_SUCCESS || load<u8>(SCRATCH) != 0) continue;
    const nameLen = <usize>load<u32>(SCRATCH, 4);
    if (nameLen > 4096) continue;
    arenaRelease(mark);
    const name = arenaAlloc(<u64>nameLen + 1);
    if (name == 0) break;
    if (fd_prestat_dir_name(dirFd, name, <u32>nameLen) != ERRNO_SUCCESS) continue;
    let n = nameLen;
    while (n > 0 && load<u8>(name + n - 1) == 0) n--; // wasm3 counts and copies the NUL
    while (n > 1 && load<u8>(name + n - 1) == 0x2f) n--; // trailing slashes
    let score: i32 = -1;
    let rel: usize = 0;
    const skipName = strip(name, n);
    if (n - skipName == 0 || (n - skipName == 1 && load<u8>(name + skipName) == 0x2e)) {
      if (!absolute) {
        score = 0; // "." matches any relative path
        rel = strip(ptr, len);
      }
    } else if (n == 1 && load<u8>(name) == 0x2f) {
      if (absolute) {
        score = 1;
        rel = 0;
        while (rel < len && load<u8>(ptr + rel) == 0x2f) rel++;
      }
    } else {
      const nm = name + skipName;
      const nl = n - skipName;
      const skipPath = absolute == (load<u8>(nm) == 0x2f) ? strip(ptr, len) : len + 1;
      if (skipPath <= len && len - skipPath >= nl && memory.compare(ptr + skipPath, nm, nl) == 0) {
        const after = skipPath + nl;
        if (after == len || load<u8>(ptr + after) == 0x2f) {
          score = 2 + <i32>nl;
          rel = after;
          while (rel < len && load<u8>(ptr + rel) == 0x2f) rel++;
        }
      }
    }
    if (score > bestScore) {
      bestScore = score;
      bestFd = <i32>dirFd;
      bestRel = rel;
    }
  }
  arenaRelease(mark);
  if (bestFd < 0) {
    blobErr();
    putStr("cannot open: no preopened directory holds this path (give the host access, e.g. wasmtime run --dir=.)");
    return fail(EXIT_IO);
  }
  const relPtr = ptr + bestRel;
  const relLen = len - bestRel;
  const err = relLen == 0
    ? ERRNO_ISDIR
    : path_open(<u32>bestFd, LOOKUP_SYMLINK_FOLLOW, relPtr, <u32>relLen, 0, RIGHTS_READ_FILE, 0, 0, SCRATCH);
  if (err != ERRNO_SUCCESS) {
    blobErr();
    putStr("cannot open: ");
    if (err == ERRNO_NOENT) putStr("no such file");
    else if (err == ERRNO_ACCES || err == ERRNO_NOTCAPABLE) putStr("permission denied");
    else if (err == ERRNO_ISDIR) putStr("is a directory");
    else {
      putStr("WASI errno ");
      putU64(err);
    }
    return fail(EXIT_IO);
  }
  blob.fd = load<u32>(SCRATCH);
  const serr = fd_filestat_get(blob.fd, SCRATCH);
  if (serr != ERRNO_SUCCESS) return ioErr("cannot stat", serr);
  if (load<u8>(SCRATCH, 16) != FILETYPE_REGULAR_FILE) {
    blobErr();
    putStr("cannot open: not a regular file");
    return fail(EXIT_IO);
  }
  blob.fileSize = load<u64>(SCRATCH, 32);
  return true;
}

