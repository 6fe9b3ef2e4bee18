import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { reportCommand } from "../tools/cli/report.ts";
import { CarvqError } from "../tools/errors.ts";
import { plannedRuns, renderMarkdown, renderReportSvg, runReport, type ReportResult } from "../tools/plan/report.ts";
import type { Llama2cModel } from "../tools/llama2c/model.ts";
import { writeNpy } from "../tools/readers/npy.ts";
import { randomMatrix } from "./helpers.ts";

/** A minimal XML well-formedness check: one root, every tag closed in order, attributes quoted, entities known. */
function checkXml(text: string): { root: string; elements: { name: string; attrs: Record<string, string> }[] } {
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, "");
  const stack: string[] = [];
  const elements: { name: string; attrs: Record<string, string> }[] = [];
  let root = "";
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->/g;
  let last = 0;
  for (let m = tag.exec(body); m !== null; m = tag.exec(body)) {
    const between = body.slice(last, m.index);
    expect(between, `stray markup before offset ${m.index}`).not.toMatch(/[<>]/);
    expect(between.replace(/&(amp|lt|gt|quot|apos|#\d+);/g, ""), "unknown entity").not.toMatch(/&/);
    last = m.index + m[0].length;
    if (m[0].startsWith("<!--")) continue;
    const [, closing, name, attrText, selfClosing] = m;
    if (closing) {
      expect(stack.pop(), `closing </${name}>`).toBe(name);
      continue;
    }
    if (stack.length === 0) {
      expect(root, "a second root element").toBe("");
      root = name;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      expect(attrs[a[1]], `duplicate attribute ${a[1]}`).toBeUndefined();
      attrs[a[1]] = a[2];
    }
    elements.push({ name, attrs });
    if (!selfClosing) stack.push(name);
  }
  expect(body.slice(last).trim()).toBe("");
  expect(stack).toEqual([]);
  return { root, elements };
}

function checkReport(result: ReportResult, md: string, svg: string, panels: string[]): void {
  const { root, elements } = checkXml(svg);
  expect(root).toBe("svg");
  for (const panel of panels) {
    const points = elements.filter((e) => e.attrs.class === "point" && e.attrs["data-panel"] === panel);
    expect(points.length, panel).toBe(result.runs.length);
    expect(new Set(points.map((p) => p.attrs["data-index"])).size).toBe(result.runs.length);
  }
  expect(elements.filter((e) => e.attrs.class === "panel").map((e) => e.attrs["data-panel"])).toEqual(panels);
  // Markdown: a title, the command, the image, and a table with one row per run and equal column counts.
  expect(md).toMatch(/^# Rate–distortion report: /);
  expect(md).toContain("![");
  const table = md.split("\n").filter((l) => l.startsWith("| "));
  expect(table.length).toBe(2 + result.runs.length);
  const columns = table.map((l) => l.split(/(?<!\\)\|/).length);
  expect(new Set(columns).size).toBe(1);
  expect(table[1]).toMatch(/^\| ---( \| ---:?)+ \|$/);
  for (const run of result.runs) expect(md).toContain(`| ${run.method} |`);
}

describe("report", () => {
  it("runs every method on a tiny table and renders valid Markdown and an SVG with one point per run and panel", async () => {
    const matrix = randomMatrix(300, 16, 4);
    const result = await runReport(matrix, { budgets: [2, 3], seed: 1, threads: 1, from: { source: "tiny.npy" }, paperLevels: [1, 2] });
    expect(result.runs.map((r) => r.series)).toEqual(["scalar", "scalar", "scalar", "paper", "paper", "auto", "auto"]);
    for (const run of result.runs.filter((r) => r.series === "auto")) expect(run.bpp).toBeLessThanOrEqual(run.budget!);
    for (const run of result.runs) {
      expect(run.relMSE).toBeGreaterThanOrEqual(0);
      expect(run.nn10).toBeGreaterThanOrEqual(0);
      expect(run.nn10).toBeLessThanOrEqual(1);
    }
    const md = renderMarkdown(result, "carvq report tiny.npy -o out --budgets 2,3");
    expect(md).toContain("carvq report tiny.npy -o out --budgets 2,3");
    checkReport(result, md, renderReportSvg(result), ["relMSE", "nn10"]);
  });

  it("plans a model-aware twin of each auto run for --kl-encode and / or --tune-kl, only with a model", () => {
    const model = {} as Llama2cModel; // plannedRuns only asks whether there is one
    const base = { budgets: [2], seed: 0, threads: 1, from: {}, paperLevels: [], scalars: [] };
    const twins = (request: object) =>
      plannedRuns({ rows: 10, cols: 8 }, { ...base, ...request }).map((p) => [p.series, p.method, p.tuneKl ?? null, p.klEncode ?? null]);
    expect(twins({ model, klEncode: 4 })).toEqual([
      ["auto", "carvq auto ≤ 2 bpp", null, null],
      ["tuned", "carvq auto ≤ 2 bpp + kl-encode 4", 0, 4],
    ]);
    expect(twins({ model, klEncode: 4, tuneKl: 40 })[1]).toEqual(["tuned", "carvq auto ≤ 2 bpp + kl-encode 4 + tune-kl 40", 40, 4]);
    expect(twins({ model, tuneKl: 40 })[1]).toEqual(["tuned", "carvq auto ≤ 2 bpp + tune-kl 40", 40, 0]);
    expect(twins({ klEncode: 4, tuneKl: 40 })).toHaveLength(1);
  });

  it("adds a perplexity panel and columns for a llama2.c model", async () => {
    const model = "../shared/models/stories260K.bin";
    if (!existsSync(new URL(`../${model}`, import.meta.url))) return void console.warn(`skipped: ${model} is absent`);
    const dir = mkdtempSync(join(tmpdir(), "carvq-report-"));
    await reportCommand.run([fileURLToPathSafe(model), "-o", dir, "--budgets", "2", "--threads", "1"]);
    const md = readFileSync(join(dir, "report.md"), "utf8");
    const svg = readFileSync(join(dir, "report.svg"), "utf8");
    const json = JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as ReportResult & { command: string };
    expect(md).toContain(json.command);
    expect(json.runs.filter((r) => r.ppl !== undefined).length).toBe(json.runs.length);
    expect(md).toContain("| ppl |");
    const runs = md.split("\n").filter((l) => l.startsWith("| ")).length - 2;
    const { elements } = checkXml(svg);
    expect(elements.filter((e) => e.attrs.class === "point" && e.attrs["data-panel"] === "pplIncrease").length).toBe(runs);
    expect(md).toMatch(/carvq report \S+stories260K\.bin -o \S+ --budgets 2 --threads 1/);
    await expect(reportCommand.run([fileURLToPathSafe(model), "-o", dir])).rejects.toThrow(/already exists/);
  });

  it("refuses bad budgets and a missing folder flag in one line", async () => {
    await expect(reportCommand.run(["x.npy", "-o", "d", "--budgets", "1,abc"])).rejects.toThrow(/--budgets must be positive numbers/);
    await expect(reportCommand.run(["x.npy", "-o", "d", "--budgets", "0"])).rejects.toThrow(CarvqError);
    await expect(reportCommand.run(["x.npy"])).rejects.toThrow(/-o\/--output/);
  });
});

function fileURLToPathSafe(relative: string): string {
  return fileURLToPath(new URL(`../${relative}`, import.meta.url));
}

// The command through a CLI bundle, when main.ts registers it.
const cli = fileURLToPath(new URL("../dist/carvq.mjs", import.meta.url));
describe.runIf(existsSync(cli) && spawnSync(process.execPath, ["--no-warnings", cli, "report", "--help"]).status === 0)(
  "carvq report (CLI)",
  () => {
    it("writes report.md and report.svg for a tiny .npy", () => {
      const dir = mkdtempSync(join(tmpdir(), "carvq-report-cli-"));
      writeNpy(join(dir, "t.npy"), randomMatrix(200, 8, 9), true);
      const run = spawnSync(process.execPath, ["--no-warnings", cli, "report", "t.npy", "-o", "out", "--budgets", "8", "--json"], {
        cwd: dir,
        encoding: "utf8",
      });
      expect(run.status, run.stderr).toBe(0);
      const out = JSON.parse(run.stdout);
      checkReport(out, readFileSync(join(dir, "out", "report.md"), "utf8"), readFileSync(join(dir, "out", "report.svg"), "utf8"), [
        "relMSE",
        "nn10",
      ]);
    });
  },
);
