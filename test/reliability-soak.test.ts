// Soak: many random lookups in streaming mode on the smallest target (mcu-128k: two 64 KiB pages),
// run after run, with the rows checked against the reference decoder, the peak linear memory of
// every run recorded (it may not grow, nor pass the budget), and the process's open file
// descriptors counted before and after. `npm run fuzz -- --soak 1000000` runs the full million.
import { describe, expect, it } from "vitest";
import { runSoak } from "../tools/fuzz/soak.ts";

const BUDGET = 131072;

describe("soak on mcu-128k, streaming", () => {
  it("100,000 random lookups on the minimal host: every row exact, peak memory the same every run and inside the budget", async () => {
    const r = await runSoak({ lookups: 100_000, host: "minimal", seed: 3, tokensPerRun: 4096 });
    expect(r.failures).toEqual([]);
    expect(r.mismatches).toBe(0);
    expect(r.lookups).toBe(100_000);
    expect(r.budgetBytes).toBe(BUDGET);
    expect(r.maxPeakBytes).toBe(r.firstPeakBytes);
    expect(r.minPeakBytes).toBe(r.firstPeakBytes);
    expect(r.maxPeakBytes).toBeLessThanOrEqual(BUDGET);
    expect(r.fdsAfter).toBe(r.fdsBefore);
  });

  it("100,000 random lookups through the Node host (node:wasi, a real file): every row exact, peak memory constant and inside the budget", async () => {
    const r = await runSoak({ lookups: 100_000, host: "node", seed: 4, tokensPerRun: 4096 });
    expect(r.failures).toEqual([]);
    expect(r.mismatches).toBe(0);
    expect(r.maxPeakBytes).toBe(r.firstPeakBytes);
    expect(r.minPeakBytes).toBe(r.firstPeakBytes);
    expect(r.maxPeakBytes).toBeLessThanOrEqual(BUDGET);
  });

  // OPEN (host/node.ts): node:wasi opens each preopened directory when a WASI instance is made and
  // never closes it, not even when the instance is collected, so every run of the command leaves one
  // descriptor open (300 runs: 300 descriptors); a long-lived process making many small lookups
  // runs out (EMFILE). Calling the instance's own fd_close on each preopen fd (3, ...) after
  // wasi.start() releases it (checked by hand: 50 runs, 0 left). Flip to `it` when fixed.
  it.fails("leaks no file descriptor through the Node host: 300 one-token runs leave the count unchanged", async () => {
    const r = await runSoak({ lookups: 300, host: "node", seed: 5, tokensPerRun: 1, verify: false });
    expect(r.failures).toEqual([]);
    expect(r.fdsAfter - r.fdsBefore).toBe(0);
  });
});
