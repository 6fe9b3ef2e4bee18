// The smallest WASI host the runtime needs: exactly the eleven wasi_snapshot_preview1 functions it
// imports, over files held in memory (as firmware would serve them from flash). It documents what
// an embedder must provide on a microcontroller (WAMR or wasm3 embedded in firmware, or a custom
// host), and lets the tests run the device builds under the quirks of such hosts: a NUL counted in
// preopen names (wasm3), several preopens, short reads.

/** The imports the runtime declares (assembly/wasi.ts); a host must provide these and no more. */
export const RUNTIME_IMPORTS = [
  "args_get",
  "args_sizes_get",
  "fd_close",
  "fd_filestat_get",
  "fd_pread",
  "fd_prestat_dir_name",
  "fd_prestat_get",
  "fd_read",
  "fd_write",
  "path_open",
  "proc_exit",
] as const;

export interface MinimalWasiOptions {
  /** argv[1..]: the command and its arguments. */
  args: readonly string[];
  /** Preopened directories, in fd order from 3: name -> files (relative path -> bytes). */
  preopens: readonly { name: string; files: Record<string, Uint8Array> }[];
  /** Count and copy a NUL after each preopen name, as wasm3 does. */
  nulInPreopenNames?: boolean;
  /** Return at most this many bytes per fd_pread (a flash driver's page), to exercise short reads. */
  maxReadBytes?: number;
  /**
   * Grow the module's memory by this many pages at the first WASI call and fill them with 0xA5, as
   * the component model's preview1 adapter does for its own state; the result reports whether they
   * were left untouched.
   */
  foreignPages?: number;
}

export interface MinimalWasiResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: string;
  peakMemoryBytes: number;
  /** How many times each import was called. */
  calls: Record<string, number>;
  /** With `foreignPages`: whether the runtime left those pages alone. */
  foreignPagesIntact?: boolean;
}

const ERRNO = { success: 0, badf: 8, inval: 28, io: 29, isdir: 31, noent: 44, notdir: 54 } as const;

/** The host's side of one instance: its imports, and what the guest wrote and called. */
export interface MinimalWasi {
  /** The import object to instantiate the runtime with. */
  readonly imports: WebAssembly.Imports;
  /** Gives the host the instance's memory; call it right after instantiating, before any export. */
  attach(memory: WebAssembly.Memory): void;
  /** Everything written to stdout and stderr so far. */
  stdout(): Uint8Array;
  stderr(): string;
  /** How many times each import was called. */
  readonly calls: Record<string, number>;
  /** With `foreignPages`: whether the runtime left those pages alone (undefined before they are taken). */
  foreignPagesIntact(): boolean | undefined;
}

/** proc_exit's way out of the guest: thrown through its frames and caught by the caller of the export. */
export class MinimalWasiExit {
  constructor(readonly code: number) {}
}

/**
 * The minimal host's imports over `options` (files in memory, args, quirks), for a command
 * (runMinimalWasi) or a library instance (host/table.ts: a blob handed over as bytes).
 */
export function createMinimalWasi(options: MinimalWasiOptions): MinimalWasi {
  let memory!: WebAssembly.Memory;
  const view = () => new DataView(memory.buffer);
  const bytes = () => new Uint8Array(memory.buffer);
  const encoder = new TextEncoder();
  const argv = ["carvq-rt", ...options.args].map((a) => encoder.encode(`${a}\0`));
  const names = options.preopens.map((p) => encoder.encode(options.nulInPreopenNames ? `${p.name}\0` : p.name));
  const open = new Map<number, Uint8Array>();
  let nextFd = 3 + options.preopens.length;
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const calls: Record<string, number> = {};
  let foreign: { start: number; length: number } | null = null;
  const count = (name: string) => {
    calls[name] = (calls[name] ?? 0) + 1;
    if (options.foreignPages && foreign === null) {
      const start = memory.grow(options.foreignPages) * 65536;
      foreign = { start, length: options.foreignPages * 65536 };
      bytes().fill(0xa5, start, start + foreign.length);
    }
  };

  const imports: Record<string, (...args: never[]) => number | void> = {
    args_sizes_get(argcPtr: number, sizePtr: number) {
      count("args_sizes_get");
      view().setUint32(argcPtr, argv.length, true);
      view().setUint32(
        sizePtr,
        argv.reduce((n, a) => n + a.length, 0),
        true,
      );
      return ERRNO.success;
    },
    args_get(argvPtr: number, bufPtr: number) {
      count("args_get");
      let at = bufPtr;
      argv.forEach((a, i) => {
        view().setUint32(argvPtr + 4 * i, at, true);
        bytes().set(a, at);
        at += a.length;
      });
      return ERRNO.success;
    },
    fd_prestat_get(fd: number, buf: number) {
      count("fd_prestat_get");
      const i = fd - 3;
      if (i < 0 || i >= names.length) return ERRNO.badf;
      view().setUint32(buf, 0, true);
      view().setUint32(buf + 4, names[i].length, true);
      return ERRNO.success;
    },
    fd_prestat_dir_name(fd: number, ptr: number, len: number) {
      count("fd_prestat_dir_name");
      const i = fd - 3;
      if (i < 0 || i >= names.length) return ERRNO.badf;
      bytes().set(names[i].subarray(0, len), ptr);
      return ERRNO.success;
    },
    path_open(
      dirFd: number,
      _dirflags: number,
      pathPtr: number,
      pathLen: number,
      _oflags: number,
      _rb: bigint,
      _ri: bigint,
      _fdflags: number,
      fdPtr: number,
    ) {
      count("path_open");
      const i = dirFd - 3;
      if (i < 0 || i >= names.length) return ERRNO.badf;
      const path = new TextDecoder().decode(bytes().subarray(pathPtr, pathPtr + pathLen));
      const file = options.preopens[i].files[path];
      if (file === undefined) return ERRNO.noent;
      const fd = nextFd++;
      open.set(fd, file);
      view().setUint32(fdPtr, fd, true);
      return ERRNO.success;
    },
    fd_filestat_get(fd: number, buf: number) {
      count("fd_filestat_get");
      const file = open.get(fd);
      if (file === undefined) return ERRNO.badf;
      bytes().fill(0, buf, buf + 64);
      view().setUint8(buf + 16, 4); // regular file
      view().setBigUint64(buf + 32, BigInt(file.length), true);
      return ERRNO.success;
    },
    fd_pread(fd: number, iovs: number, iovsLen: number, offset: bigint, nreadPtr: number) {
      count("fd_pread");
      const file = open.get(fd);
      if (file === undefined) return ERRNO.badf;
      let at = Number(offset);
      let total = 0;
      for (let k = 0; k < iovsLen; k++) {
        const ptr = view().getUint32(iovs + 8 * k, true);
        let len = view().getUint32(iovs + 8 * k + 4, true);
        if (options.maxReadBytes !== undefined) len = Math.min(len, options.maxReadBytes - total);
        const chunk = file.subarray(Math.min(at, file.length), Math.min(at + len, file.length));
        bytes().set(chunk, ptr);
        total += chunk.length;
        at += chunk.length;
        if (chunk.length < len || (options.maxReadBytes !== undefined && total >= options.maxReadBytes)) break;
      }
      view().setUint32(nreadPtr, total, true);
      return ERRNO.success;
    },
    fd_write(fd: number, iovs: number, iovsLen: number, nwrittenPtr: number) {
      count("fd_write");
      if (fd !== 1 && fd !== 2) return ERRNO.badf;
      let total = 0;
      for (let k = 0; k < iovsLen; k++) {
        const ptr = view().getUint32(iovs + 8 * k, true);
        const len = view().getUint32(iovs + 8 * k + 4, true);
        (fd === 1 ? out : err).push(bytes().slice(ptr, ptr + len));
        total += len;
      }
      view().setUint32(nwrittenPtr, total, true);
      return ERRNO.success;
    },
    fd_read(fd: number, _iovs: number, _iovsLen: number, nreadPtr: number) {
      // stdin (lookup --stdin) is empty here: the end of the stream at once.
      count("fd_read");
      if (fd !== 0) return ERRNO.badf;
      view().setUint32(nreadPtr, 0, true);
      return ERRNO.success;
    },
    fd_close(fd: number) {
      count("fd_close");
      return open.delete(fd) ? ERRNO.success : ERRNO.badf;
    },
    proc_exit(code: number) {
      count("proc_exit");
      throw new MinimalWasiExit(code);
    },
  };

  const join = (parts: Uint8Array[]) => {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all;
  };
  return {
    imports: { wasi_snapshot_preview1: imports as unknown as WebAssembly.ModuleImports },
    attach(m) {
      memory = m;
    },
    stdout: () => join(out),
    stderr: () => new TextDecoder().decode(join(err)),
    calls,
    foreignPagesIntact() {
      const taken = foreign as { start: number; length: number } | null;
      return taken === null
        ? undefined
        : bytes()
            .subarray(taken.start, taken.start + taken.length)
            .every((b) => b === 0xa5);
    },
  };
}

/** Runs the runtime's `_start` once under the minimal host. */
export function runMinimalWasi(module: WebAssembly.Module, options: MinimalWasiOptions): MinimalWasiResult {
  const host = createMinimalWasi(options);
  const instance = new WebAssembly.Instance(module, host.imports);
  const memory = instance.exports.memory as WebAssembly.Memory;
  host.attach(memory);
  let exitCode = 0;
  try {
    (instance.exports._start as () => void)();
  } catch (e) {
    if (!(e instanceof MinimalWasiExit)) throw e;
    exitCode = e.code;
  }
  const intact = host.foreignPagesIntact();
  return {
    exitCode,
    stdout: host.stdout(),
    stderr: host.stderr(),
    peakMemoryBytes: memory.buffer.byteLength,
    calls: host.calls,
    ...(intact !== undefined ? { foreignPagesIntact: intact } : {}),
  };
}
