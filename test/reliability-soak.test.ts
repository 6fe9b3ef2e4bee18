// Soak: many random lookups in streaming mode on the smallest target (mcu-128k: two 64 KiB pages),
// run after run, with the rows checked against the reference decoder, the peak linear memory of
// every run recorded (it may not grow, nor pass the budget), and the process's open file
// descriptors counted before and after. `npm run fuzz -- --soak 1000000` runs the full million.
import { describe, expect, it } from "vitest";
import { runSoak } from "../tools/dev/fuzz/soak.ts";

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

  // node:wasi never closes a preopened folder by itself; host/node.ts closes them after each run
  // (before that fix, 300 runs left 300 descriptors open).
  it("leaks no file descriptor through the Node host: 300 one-token runs leave the count unchanged", async () => {
    const r = await runSoak({ lookups: 300, host: "node", seed: 5, tokensPerRun: 1, verify: false });
    expect(r.failures).toEqual([]);
    expect(r.fdsAfter - r.fdsBefore).toBe(0);
  });
});
