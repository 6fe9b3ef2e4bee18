// Progress bars off a terminal (CI logs, files): a bar updated from synchronous work, which never
// lets the bar's own timer run, still prints a line at every interval.
import { afterEach, describe, expect, it, vi } from "vitest";
import { neighbourSets } from "../tools/quant/metrics.ts";
import { startProgress } from "../tools/progress.ts";
import { randomMatrix } from "./helpers.ts";

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("startProgress off a terminal", () => {
  it("prints from update() once the interval has passed, without the event loop turning", () => {
    expect(process.stderr.isTTY).toBeFalsy();
    const lines: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    vi.useFakeTimers({ toFake: ["performance", "Date"] });
    const bar = startProgress("working");
    bar.update(1, 10);
    const before = lines.filter((l) => l.includes("working")).length;
    bar.update(2, 10);
    expect(lines.filter((l) => l.includes("working")).length, "no new line within the interval").toBe(before);
    vi.advanceTimersByTime(6000);
    bar.update(3, 10);
    const printed = lines.filter((l) => l.includes("working"));
    expect(printed.length).toBe(before + 1);
    expect(printed[printed.length - 1]).toMatch(/working .* 3\/10/);
    bar.stop();
  });
});

describe("neighbourSets", () => {
  it("reports every query as it is done (the demo's nn10 progress)", () => {
    const seen: [number, number][] = [];
    const sets = neighbourSets(randomMatrix(100, 6, 3), 10, (done, total) => seen.push([done, total]));
    expect(sets.queries).toEqual([0, 20, 40, 60, 80]);
    expect(seen).toEqual([
      [1, 5],
      [2, 5],
      [3, 5],
      [4, 5],
      [5, 5],
    ]);
  });
});
