// The runtime's exit codes (assembly/exit.ts, docs/RUNTIME.md), for every host: the command's exit
// status, the library's status returns and the component's failure code are the same numbers.
// This file imports nothing, so the browser-safe JS API (host/table.ts) can use it.

export const RUNTIME_EXIT = {
  ok: 0,
  usage: 2,
  io: 3,
  badBlob: 4,
  tokenRange: 5,
  budget: 6,
  internal: 70,
} as const;
