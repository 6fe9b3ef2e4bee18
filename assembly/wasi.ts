// WASI preview1 imports the runtime uses, declared here so the module needs no bindings or
// generated glue: any WASI host (wasmtime, WAMR, wasm3, Node's node:wasi, jco's preview1 adapter)
// can run it as a command. Every call returns a WASI errno (0 = success).

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "args_sizes_get")
export declare function args_sizes_get(argc: usize, argvBufSize: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "args_get")
export declare function args_get(argv: usize, argvBuf: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
export declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_read")
export declare function fd_read(fd: u32, iovs: usize, iovsLen: u32, nread: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_pread")
export declare function fd_pread(fd: u32, iovs: usize, iovsLen: u32, offset: u64, nread: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_filestat_get")
export declare function fd_filestat_get(fd: u32, buf: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_close")
export declare function fd_close(fd: u32): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_prestat_get")
export declare function fd_prestat_get(fd: u32, buf: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_prestat_dir_name")
export declare function fd_prestat_dir_name(fd: u32, path: usize, pathLen: u32): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "path_open")
export declare function path_open(
  dirfd: u32, dirflags: u32, path: usize, pathLen: u32, oflags: u32,
  rightsBase: u64, rightsInheriting: u64, fdflags: u32, openedFd: usize,
): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "proc_exit")
export declare function proc_exit(code: u32): void;
// Only the bench command calls this (modules built with CARVQ_BENCH=1): asc emits an import only
// for a function it compiles, so the device modules keep exactly the eleven imports above.
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "clock_time_get")
export declare function clock_time_get(clockId: u32, precision: u64, time: usize): u32;

/** clock_time_get's monotonic clock (nanoseconds from an arbitrary start). */
export const CLOCK_MONOTONIC: u32 = 1;

export const ERRNO_SUCCESS: u32 = 0;
export const ERRNO_BADF: u32 = 8;
export const ERRNO_INTR: u32 = 27;
export const ERRNO_NOENT: u32 = 44;
export const ERRNO_ACCES: u32 = 2;
export const ERRNO_ISDIR: u32 = 31;
export const ERRNO_NOTCAPABLE: u32 = 76;

export const FILETYPE_DIRECTORY: u8 = 3;
export const FILETYPE_REGULAR_FILE: u8 = 4;
export const LOOKUP_SYMLINK_FOLLOW: u32 = 1;
/** fd_read | fd_seek | fd_tell | fd_filestat_get: what fd_pread and fd_filestat_get need. */
export const RIGHTS_READ_FILE: u64 = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 21);

/** A scratch iovec and result word, reused by every call (the runtime is single-threaded). */
const IOV: usize = memory.data(16, 16);
const RESULT: usize = IOV + 8;

/** Writes all `len` bytes at `ptr` to `fd`; returns the WASI errno of the first failure, or 0. */
export function writeAll(fd: u32, ptr: usize, len: usize): u32 {
  while (len > 0) {
    store<u32>(IOV, <u32>ptr);
    store<u32>(IOV, <u32>len, 4);
    store<u32>(RESULT, 0);
    const err = fd_write(fd, IOV, 1, RESULT);
    if (err == ERRNO_INTR) continue;
    if (err != ERRNO_SUCCESS) return err;
    const n = <usize>load<u32>(RESULT);
    if (n == 0) return 29; // EIO: a host that accepts nothing would loop forever
    ptr += n;
    len -= n;
  }
  return ERRNO_SUCCESS;
}

/**
 * Reads at most `len` bytes from `fd` (a stream: stdin) into `dst`. Returns the count (0 at the end
 * of the stream), or -1 - errno on failure.
 */
export function readSome(fd: u32, dst: usize, len: usize): i64 {
  while (true) {
    store<u32>(IOV, <u32>dst);
    store<u32>(IOV, <u32>len, 4);
    store<u32>(RESULT, 0);
    const err = fd_read(fd, IOV, 1, RESULT);
    if (err == ERRNO_INTR) continue;
    if (err != ERRNO_SUCCESS) return -1 - <i64>err;
    return <i64>load<u32>(RESULT);
  }
  return 0;
}

/**
 * Reads exactly `len` bytes at file offset `offset` of `fd` into `dst`. Returns 0 on success,
 * the WASI errno on failure, or 0xFFFF when the file ended first (it changed under us).
 */
export function preadAll(fd: u32, dst: usize, len: usize, offset: u64): u32 {
  while (len > 0) {
    store<u32>(IOV, <u32>dst);
    store<u32>(IOV, <u32>len, 4);
    store<u32>(RESULT, 0);
    const err = fd_pread(fd, IOV, 1, offset, RESULT);
    if (err == ERRNO_INTR) continue;
    if (err != ERRNO_SUCCESS) return err;
    const n = <usize>load<u32>(RESULT);
    if (n == 0) return 0xFFFF;
    dst += n;
    len -= n;
    offset += <u64>n;
  }
  return ERRNO_SUCCESS;
}
