// A small hand-written SVG plot for the rate–distortion report: one panel per metric side by side,
// bits per parameter on x, one marker per run (connected within its series, in bpp order), a label
// beside each marker and one legend for all panels. No dependencies; the output is plain SVG 1.1.

export interface PlotSeries {
  id: string;
  /** Legend text. */
  name: string;
  color: string;
  marker: "circle" | "square" | "triangle" | "diamond";
  dash?: string;
}

export interface PlotPoint {
  series: string;
  /** Short text beside the marker. */
  label: string;
  x: number;
  /** Values by panel key; a missing or non-finite value is not drawn in that panel. */
  y: Record<string, number | undefined>;
}

export interface PlotPanel {
  key: string;
  title: string;
  yLabel: string;
  scale: "linear" | "log";
  /** Which way is better, drawn as a hint in the panel's corner. */
  better: "lower" | "higher";
  /** Fixed y range (else from the data). */
  yMin?: number;
  yMax?: number;
  /** A reference line (e.g. 1 for a perplexity ratio). */
  reference?: { y: number; label: string };
  /** Values above this are drawn on the panel's top edge, their value added to the label. */
  clip?: number;
}

const PANEL_W = 400;
const PANEL_H = 300;
const MARGIN = { left: 64, right: 18, top: 34, bottom: 52 };
const HEADER = 78;

interface Box {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** Rough width of 10 px Helvetica text. */
function textWidth(text: string): number {
  return text.length * 5.6;
}

function overlap(a: Box, b: Box): number {
  const w = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0);
  const h = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
  return w > 0 && h > 0 ? w * h : 0;
}

/**
 * Puts a label beside its marker where it covers no other label or marker and stays inside the
 * plot: right, left, above or below, nearest first; else wherever it overlaps least.
 */
function placeLabel(
  x: number,
  y: number,
  width: number,
  taken: readonly Box[],
  area: Box,
): { x: number; y: number; anchor: "start" | "end" | "middle"; box: Box } {
  const spots: [number, number, "start" | "end" | "middle"][] = [
    [7, -5, "start"],
    [7, 12, "start"],
    [-7, -5, "end"],
    [-7, 12, "end"],
    [0, -9, "middle"],
    [0, 18, "middle"],
    [7, -16, "start"],
    [-7, -16, "end"],
    [7, 23, "start"],
    [-7, 23, "end"],
  ];
  let best: { x: number; y: number; anchor: "start" | "end" | "middle"; box: Box } | null = null;
  let bestCost = Infinity;
  for (const [dx, dy, anchor] of spots) {
    const tx = x + dx;
    const ty = y + dy;
    const x0 = anchor === "start" ? tx : anchor === "end" ? tx - width : tx - width / 2;
    const box = { x0, x1: x0 + width, y0: ty - 9, y1: ty + 2 };
    let cost = taken.reduce((sum, b) => sum + overlap(box, b), 0);
    const inside = box.x0 >= area.x0 + 2 && box.x1 <= area.x1 - 2 && box.y0 >= area.y0 + 1 && box.y1 <= area.y1 - 1;
    if (!inside) cost += 10000;
    if (cost === 0) return { x: tx, y: ty, anchor, box };
    if (cost < bestCost) {
      bestCost = cost;
      best = { x: tx, y: ty, anchor, box };
    }
  }
  return best!;
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function num(v: number): string {
  return Number(v.toFixed(2)).toString();
}

/** Tick values that read well: 1, 2, 5 steps (linear) or 1, 2, 3, 5 per decade (log). */
function ticks(min: number, max: number, scale: "linear" | "log"): number[] {
  if (scale === "log") {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(min)) - 1; e <= Math.ceil(Math.log10(max)) + 1; e++) {
      for (const m of [1, 2, 3, 5]) {
        const v = m * 10 ** e;
        if (v >= min * 0.999 && v <= max * 1.001) out.push(Number(v.toPrecision(3)));
      }
    }
    if (out.length > 8) return out.filter((v) => /^(1|3)/.test(v.toExponential()));
    return out;
  }
  const span = max - min || 1;
  const raw = span / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => span / s <= 6) ?? 10 * power;
  const out: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

function tickText(v: number): string {
  if (v === 0) return "0";
  if (Math.abs(v) >= 1000 || Math.abs(v) < 0.001) return v.toExponential(0);
  return Number(v.toPrecision(3)).toString();
}

function markerPath(kind: PlotSeries["marker"], x: number, y: number, r: number): string {
  switch (kind) {
    case "square":
      return `<rect x="${num(x - r)}" y="${num(y - r)}" width="${num(2 * r)}" height="${num(2 * r)}"`;
    case "triangle":
      return `<path d="M${num(x)},${num(y - r * 1.2)} L${num(x + r * 1.1)},${num(y + r * 0.8)} L${num(x - r * 1.1)},${num(y + r * 0.8)} Z"`;
    case "diamond":
      return `<path d="M${num(x)},${num(y - r * 1.3)} L${num(x + r * 1.1)},${num(y)} L${num(x)},${num(y + r * 1.3)} L${num(x - r * 1.1)},${num(y)} Z"`;
    default:
      return `<circle cx="${num(x)}" cy="${num(y)}" r="${num(r)}"`;
  }
}

/**
 * Renders the plot. Every drawn marker is an element with class "point" and data-panel /
 * data-index attributes (index into `points`), so a reader (or a test) can count them.
 */
export function renderPlot(
  title: string,
  subtitle: string,
  series: readonly PlotSeries[],
  panels: readonly PlotPanel[],
  points: readonly PlotPoint[],
): string {
  const width = panels.length * PANEL_W;
  // Legend items flow left to right under the title and wrap onto as many rows as they need.
  const legend: { s: PlotSeries; x: number; y: number }[] = [];
  let lx = MARGIN.left;
  let ly = 58;
  for (const s of series) {
    if (!points.some((p) => p.series === s.id)) continue;
    const itemWidth = 32 + textWidth(s.name) * 1.15;
    if (lx > MARGIN.left && lx + itemWidth > width - MARGIN.right) {
      lx = MARGIN.left;
      ly += 20;
    }
    legend.push({ s, x: lx, y: ly });
    lx += itemWidth + 22;
  }
  const header = HEADER + (ly - 58);
  const height = header + PANEL_H;
  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${MARGIN.left}" y="22" font-size="16" font-weight="bold" fill="#222">${esc(title)}</text>`);
  out.push(`<text x="${MARGIN.left}" y="40" font-size="11" fill="#555">${esc(subtitle)}</text>`);
  out.push(`<g class="legend">`);
  for (const { s, x, y } of legend) {
    out.push(
      `<line x1="${x}" y1="${y}" x2="${x + 26}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`,
    );
    out.push(`${markerPath(s.marker, x + 13, y, 4.5)} fill="${s.color}" stroke="#fff" stroke-width="1"/>`);
    out.push(`<text x="${x + 32}" y="${y + 4}" font-size="12" fill="#222">${esc(s.name)}</text>`);
  }
  out.push(`</g>`);

  const xs = points.map((p) => p.x).filter(Number.isFinite);
  const xMax = Math.max(1, ...xs);
  const xTicks = ticks(0, xMax * 1.05, "linear");
  const xHi = Math.max(xTicks[xTicks.length - 1], xMax * 1.05);

  panels.forEach((panel, pi) => {
    const ox = pi * PANEL_W;
    const left = ox + MARGIN.left;
    const right = ox + PANEL_W - MARGIN.right;
    const top = header + MARGIN.top;
    const bottom = header + PANEL_H - MARGIN.bottom;
    const clip = panel.clip ?? Infinity;
    const values = points
      .map((p) => p.y[panel.key])
      .filter((v): v is number => v !== undefined && Number.isFinite(v) && (panel.scale === "linear" || v > 0))
      .map((v) => Math.min(v, clip));
    let lo = panel.yMin ?? (values.length ? Math.min(...values) : 0);
    let hi = panel.yMax ?? (values.length ? Math.max(...values) : 1);
    if (panel.reference) {
      lo = Math.min(lo, panel.reference.y);
      hi = Math.max(hi, panel.reference.y);
    }
    const clipped = points.some((p) => (p.y[panel.key] ?? -Infinity) > clip);
    if (panel.scale === "log") {
      lo = panel.yMin ?? lo / 1.25;
      hi = panel.yMax ?? (clipped ? clip : hi * 1.25);
    } else if (panel.yMin === undefined || panel.yMax === undefined) {
      const pad = (hi - lo || Math.abs(hi) || 1) * 0.08;
      if (panel.yMin === undefined) lo -= pad;
      if (panel.yMax === undefined) hi += pad;
    }
    const yTicks = ticks(lo, hi, panel.scale);
    const f = (v: number) => (panel.scale === "log" ? Math.log10(v) : v);
    const X = (v: number) => left + (v / xHi) * (right - left);
    const Y = (v: number) => bottom - ((f(v) - f(lo)) / (f(hi) - f(lo))) * (bottom - top);
    out.push(`<g class="panel" data-panel="${esc(panel.key)}">`);
    out.push(`<text x="${left}" y="${top - 12}" font-size="13" font-weight="bold" fill="#222">${esc(panel.title)}</text>`);
    out.push(
      `<text x="${right}" y="${top - 12}" font-size="11" fill="#777" text-anchor="end">${panel.better === "lower" ? "lower is better ↓" : "higher is better ↑"}</text>`,
    );
    out.push(
      `<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="#fafafa" stroke="#999" stroke-width="1"/>`,
    );
    for (const t of yTicks) {
      const y = Y(t);
      out.push(`<line x1="${left}" y1="${num(y)}" x2="${right}" y2="${num(y)}" stroke="#e3e3e3" stroke-width="1"/>`);
      out.push(`<text x="${left - 6}" y="${num(y + 4)}" font-size="11" fill="#444" text-anchor="end">${tickText(t)}</text>`);
    }
    for (const t of xTicks) {
      const x = X(t);
      out.push(`<line x1="${num(x)}" y1="${top}" x2="${num(x)}" y2="${bottom}" stroke="#e3e3e3" stroke-width="1"/>`);
      out.push(`<text x="${num(x)}" y="${bottom + 16}" font-size="11" fill="#444" text-anchor="middle">${tickText(t)}</text>`);
    }
    out.push(
      `<text x="${(left + right) / 2}" y="${bottom + 36}" font-size="12" fill="#222" text-anchor="middle">bits per parameter (every byte of the blob)</text>`,
    );
    out.push(
      `<text transform="translate(${ox + 16},${(top + bottom) / 2}) rotate(-90)" font-size="12" fill="#222" text-anchor="middle">${esc(panel.yLabel)}</text>`,
    );
    const taken: Box[] = [];
    if (panel.reference) {
      const y = Y(panel.reference.y);
      out.push(`<line x1="${left}" y1="${num(y)}" x2="${right}" y2="${num(y)}" stroke="#2a2" stroke-width="1" stroke-dasharray="5,3"/>`);
      out.push(`<text x="${left + 4}" y="${num(y + 13)}" font-size="10" fill="#2a2">${esc(panel.reference.label)}</text>`);
      taken.push({ x0: left + 4, x1: left + 4 + textWidth(panel.reference.label), y0: y + 3, y1: y + 15 });
    }
    const drawn = points
      .map((p, i) => ({ p, i, v: p.y[panel.key] }))
      .filter(
        (d): d is { p: PlotPoint; i: number; v: number } =>
          d.v !== undefined && Number.isFinite(d.v) && Number.isFinite(d.p.x) && (panel.scale === "linear" || d.v > 0),
      );
    const placed = drawn.map((d) => ({ ...d, x: X(d.p.x), y: Y(Math.min(d.v, clip)), clipped: d.v > clip }));
    for (const d of placed) taken.push({ x0: d.x - 5, x1: d.x + 5, y0: d.y - 5, y1: d.y + 5 });
    for (const s of series) {
      const mine = placed.filter((d) => d.p.series === s.id).sort((a, b) => a.p.x - b.p.x);
      if (mine.length > 1) {
        out.push(
          `<polyline fill="none" stroke="${s.color}" stroke-width="1.8"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""} points="${mine.map((d) => `${num(d.x)},${num(d.y)}`).join(" ")}"/>`,
        );
        // Labels keep off the lines too: small boxes along each segment count as taken (lightly).
        for (let k = 1; k < mine.length; k++) {
          const [a, b] = [mine[k - 1], mine[k]];
          const steps = Math.ceil(Math.hypot(b.x - a.x, b.y - a.y) / 6);
          for (let t = 1; t < steps; t++) {
            const x = a.x + ((b.x - a.x) * t) / steps;
            const y = a.y + ((b.y - a.y) * t) / steps;
            taken.push({ x0: x - 1.5, x1: x + 1.5, y0: y - 1.5, y1: y + 1.5 });
          }
        }
      }
    }
    const area = { x0: left, x1: right, y0: top, y1: bottom };
    for (const s of series) {
      for (const d of placed.filter((d) => d.p.series === s.id)) {
        out.push(
          `${markerPath(s.marker, d.x, d.y, 4.5)} class="point" data-panel="${esc(panel.key)}" data-index="${d.i}" fill="${s.color}" stroke="#fff" stroke-width="1"><title>${esc(`${d.p.label}: ${d.p.x.toFixed(3)} bpp, ${d.v.toPrecision(4)}`)}</title></${s.marker === "circle" ? "circle" : s.marker === "square" ? "rect" : "path"}>`,
        );
      }
    }
    for (const s of series) {
      for (const d of placed.filter((d) => d.p.series === s.id)) {
        const text = d.clipped ? `${d.p.label} ↑ ${d.v >= 100 ? Math.round(d.v) : d.v.toPrecision(3)}` : d.p.label;
        const spot = placeLabel(d.x, d.y, textWidth(text), taken, area);
        taken.push(spot.box);
        out.push(
          `<text x="${num(spot.x)}" y="${num(spot.y)}" font-size="10" fill="${s.color}" text-anchor="${spot.anchor}">${esc(text)}</text>`,
        );
      }
    }
    out.push(`</g>`);
  });
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}
