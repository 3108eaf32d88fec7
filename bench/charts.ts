// SVG charts for bench/results.md, drawn by hand (no plotting dependency):
// queries/s by outstanding queries (one line per path, log scale) and
// average latency per path at each level (grouped bars, log scale).

import { ok, type PathResult } from "./report.ts";

const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

const W = 760;
const H = 420;
const M = { top: 40, right: 190, bottom: 50, left: 70 };

function xml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Powers of ten spanning [min, max]. */
function decades(min: number, max: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) out.push(10 ** e);
  return out;
}

function frame(title: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${xml(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${xml(title)}</text>`,
    `<text transform="translate(16 ${H / 2}) rotate(-90)" text-anchor="middle">${xml(yLabel)}</text>`,
    ...body,
    "</svg>",
    "",
  ].join("\n");
}

function logAxis(values: number[], format: (v: number) => string) {
  const positive = values.filter((v) => v > 0);
  const ticks = decades(Math.min(...positive, 1), Math.max(...positive, 10));
  const lo = Math.log10(ticks[0]!);
  const hi = Math.log10(ticks[ticks.length - 1]!);
  const plotH = H - M.top - M.bottom;
  const y = (v: number) =>
    M.top + plotH - ((Math.log10(Math.max(v, ticks[0]!)) - lo) / (hi - lo)) * plotH;
  const lines = ticks.flatMap((t) => [
    `<line x1="${M.left}" x2="${W - M.right}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`,
    `<text x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end">${format(t)}</text>`,
  ]);
  return { y, lines };
}

function legend(paths: PathResult[]): string[] {
  return paths.flatMap((p, i) => [
    `<rect x="${W - M.right + 14}" y="${M.top + i * 20}" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>`,
    `<text x="${W - M.right + 32}" y="${M.top + i * 20 + 10}">${xml(p.title)}</text>`,
  ]);
}

const si = (v: number) => (v >= 1000 ? `${v / 1000}k` : String(v));

/** Queries per second against outstanding queries, one line per path. */
export function qpsChart(paths: PathResult[], levels: readonly number[]): string {
  const values = paths.flatMap((p) => levels.map((l) => ok(p.levels.get(l))?.qps ?? 0));
  const { y, lines } = logAxis(values, si);
  const plotW = W - M.left - M.right;
  const x = (i: number) =>
    M.left + (levels.length === 1 ? plotW / 2 : (i / (levels.length - 1)) * plotW);
  const body = [...lines];
  levels.forEach((level, i) => {
    body.push(`<text x="${x(i)}" y="${H - M.bottom + 18}" text-anchor="middle">${level}</text>`);
  });
  body.push(
    `<text x="${M.left + plotW / 2}" y="${H - 12}" text-anchor="middle">outstanding queries (dnsperf -q)</text>`,
  );
  paths.forEach((path, p) => {
    const color = PALETTE[p % PALETTE.length];
    const points = levels
      .map((level, i) => [i, ok(path.levels.get(level))?.qps] as const)
      .filter((pt): pt is readonly [number, number] => pt[1] !== undefined && pt[1] > 0);
    if (points.length > 1) {
      body.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.map(([i, q]) => `${x(i).toFixed(1)},${y(q).toFixed(1)}`).join(" ")}"/>`,
      );
    }
    for (const [i, q] of points)
      body.push(`<circle cx="${x(i)}" cy="${y(q)}" r="3.5" fill="${color}"/>`);
  });
  return frame("Queries per second by outstanding queries (log scale)", "queries/s", [
    ...body,
    ...legend(paths),
  ]);
}

/** Average latency per path, bars grouped by outstanding queries. */
export function latencyChart(paths: PathResult[], levels: readonly number[]): string {
  const ms = paths.flatMap((p) => levels.map((l) => (ok(p.levels.get(l))?.avgLatency ?? 0) * 1000));
  const { y, lines } = logAxis(
    ms.map((v) => Math.max(v, 0.01)),
    (v) => (v < 1 ? v.toFixed(2) : String(v)),
  );
  const plotW = W - M.left - M.right;
  const groupW = plotW / levels.length;
  const barW = Math.max(2, (groupW * 0.8) / paths.length);
  const body = [...lines];
  const floor = H - M.bottom;
  levels.forEach((level, g) => {
    const gx = M.left + g * groupW + groupW * 0.1;
    body.push(
      `<text x="${gx + groupW * 0.4}" y="${floor + 18}" text-anchor="middle">-q ${level}</text>`,
    );
    paths.forEach((path, p) => {
      const r = ok(path.levels.get(level));
      if (!r) return;
      const top = y(Math.max(r.avgLatency * 1000, 0.01));
      body.push(
        `<rect x="${(gx + p * barW).toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(floor - top).toFixed(1)}" fill="${PALETTE[p % PALETTE.length]}"><title>${xml(path.title)}: ${(r.avgLatency * 1000).toFixed(3)} ms</title></rect>`,
      );
    });
  });
  return frame("Average latency by path (ms, log scale)", "milliseconds", [
    ...body,
    ...legend(paths),
  ]);
}
