// bench/results.md: machine facts, a table per path, ratios against the
// direct and dnsdist paths, and a small text plot of throughput.

import type { DnsperfResult } from "./dnsperf.ts";

export interface LevelResult extends DnsperfResult {
  /** CPU ms per 1000 completed queries of the forwarding hop (relay or dnsdist). */
  hopCpuPer1k?: number;
  /** Same for unbound. */
  unboundCpuPer1k?: number;
  /** Distinct TCP connections to unbound's DoT/DoH port seen during the run (sampled with ss). */
  upstreamConnections?: number;
  /** Connections the relay opened during the run (its own counter), per 10,000 queries. */
  handshakesPer10k?: number;
}

export interface PathResult {
  id: string;
  title: string;
  description: string;
  levels: Map<number, LevelResult | { error: string }>;
}

export interface ReportInput {
  facts: [string, string][];
  settings: string[];
  paths: PathResult[];
  levels: readonly number[];
  /** Levels whose queries/s is a throughput (dnsperf is not pacing itself). */
  qpsLevels: readonly number[];
  ratios: { title: string; numerator: string; denominator: string }[];
  /** Hop CPU per query of one path over another's, level by level. */
  cpuRatios?: { title: string; numerator: string; denominator: string }[];
  relayCounters: string[];
  /** More sections, each a list of lines (its own heading included). */
  sections?: string[][];
  notes: string[];
}

const ms = (s: number) => (s * 1000).toFixed(3);
const num = (n: number | undefined, digits = 0) => (n === undefined ? "–" : n.toFixed(digits));

export function ok(r: LevelResult | { error: string } | undefined): LevelResult | undefined {
  return r && !("error" in r) ? r : undefined;
}

function pathTable(path: PathResult, levels: readonly number[]): string[] {
  const results = [...path.levels.values()].map(ok);
  const conns = results.some((r) => r?.upstreamConnections !== undefined);
  const handshakes = results.some((r) => r?.handshakesPer10k !== undefined);
  const head = [
    "| outstanding (-q) | queries/s | avg latency (ms) | sent | lost | hop CPU ms/1k q | unbound CPU ms/1k q |",
  ];
  if (conns) head[0] += " upstream connections seen |";
  if (handshakes) head[0] += " handshakes / 10k q |";
  const cols = head[0]!.split("|").length - 2;
  const lines = [...head, `|${" --- |".repeat(cols)}`];
  for (const level of levels) {
    const r = path.levels.get(level);
    if (!r) {
      lines.push(`| ${level} | not run${" | ".repeat(cols - 2)} |`);
      continue;
    }
    if ("error" in r) {
      lines.push(`| ${level} | failed: ${r.error.split("\n")[0]}${" | ".repeat(cols - 2)} |`);
      continue;
    }
    let row = `| ${level} | ${num(r.qps)} | ${ms(r.avgLatency)} | ${r.sent} | ${r.lost} | ${num(r.hopCpuPer1k, 1)} | ${num(r.unboundCpuPer1k, 1)} |`;
    if (conns) row += ` ${num(r.upstreamConnections)} |`;
    if (handshakes) row += ` ${num(r.handshakesPer10k, 1)} |`;
    lines.push(row);
  }
  return lines;
}

function ratioTable(input: ReportInput): string[] {
  const byId = new Map(input.paths.map((p) => [p.id, p]));
  const lines = [
    `| ratio | ${input.levels.map((l) => `q=${l} qps | q=${l} latency`).join(" | ")} |`,
    `|---|${input.levels.map(() => "---|---|").join("")}`,
  ];
  for (const ratio of input.ratios) {
    const a = byId.get(ratio.numerator);
    const b = byId.get(ratio.denominator);
    const cells = input.levels.map((level) => {
      const x = ok(a?.levels.get(level));
      const y = ok(b?.levels.get(level));
      if (!x || !y || y.qps === 0 || y.avgLatency === 0) return "– | –";
      const qps = !input.qpsLevels.includes(level) ? "n/a" : (x.qps / y.qps).toFixed(2);
      return `${qps} | ${(x.avgLatency / y.avgLatency).toFixed(2)}`;
    });
    lines.push(`| ${ratio.title} | ${cells.join(" | ")} |`);
  }
  return lines;
}

function cpuRatioTable(input: ReportInput): string[] {
  const byId = new Map(input.paths.map((p) => [p.id, p]));
  const lines = [
    `| hop CPU per query | ${input.levels.map((l) => `q=${l}`).join(" | ")} |`,
    `|---|${input.levels.map(() => "---|").join("")}`,
  ];
  for (const ratio of input.cpuRatios ?? []) {
    const cells = input.levels.map((level) => {
      const x = ok(byId.get(ratio.numerator)?.levels.get(level))?.hopCpuPer1k;
      const y = ok(byId.get(ratio.denominator)?.levels.get(level))?.hopCpuPer1k;
      return x === undefined || y === undefined || y === 0 ? "–" : (x / y).toFixed(2);
    });
    lines.push(`| ${ratio.title} | ${cells.join(" | ")} |`);
  }
  return lines;
}

function plot(input: ReportInput): string[] {
  const level = input.levels[input.levels.length - 1] ?? 1;
  const rows = input.paths.map((p) => [p.title, ok(p.levels.get(level))?.qps ?? 0] as const);
  const top = Math.max(1, ...rows.map(([, q]) => q));
  const width = Math.max(...rows.map(([t]) => t.length));
  return [
    "```text",
    `queries/s at -q ${level}`,
    ...rows.map(
      ([title, q]) =>
        `${title.padEnd(width)} |${"#".repeat(Math.round((q / top) * 50)).padEnd(50)}| ${q.toFixed(0)}`,
    ),
    "```",
  ];
}

export function renderReport(input: ReportInput): string {
  const out: string[] = [
    "# doh-edge relay benchmark",
    "",
    "Written by `npm run bench` (bench/run.ts). Every server runs on 127.0.0.1 on this machine,",
    "which is shared and noisy: compare the ratios (measured minutes apart, level by level),",
    "not the absolute numbers, and do not compare across machines.",
    "",
    "## Machine",
    "",
    ...input.facts.map(([k, v]) => `- ${k}: ${v}`),
    "",
    "## Setup",
    "",
    ...input.settings.map((s) => `- ${s}`),
    "",
    "## Ratios",
    "",
    "qps ratio above 1 = faster than the reference; latency ratio above 1 = slower.",
    `qps ratios only at -q ${input.qpsLevels.join(", ")}: below that dnsperf paces itself (see the notes).`,
    "",
    ...ratioTable(input),
    "",
    ...(input.cpuRatios?.length
      ? [
          "CPU ratio above 1 = the first path spends more CPU per query.",
          "",
          ...cpuRatioTable(input),
          "",
        ]
      : []),
    ...plot(input),
    "",
    "Charts: [queries/s by outstanding queries](qps.svg), [average latency by path](latency.svg).",
    "",
    "![queries/s by outstanding queries](qps.svg)",
    "",
    "![average latency by path](latency.svg)",
    "",
    "## Paths",
    "",
  ];
  for (const path of input.paths) {
    out.push(`### ${path.title}`, "", path.description, "", ...pathTable(path, input.levels), "");
  }
  out.push("## Relay counters at the end", "", ...input.relayCounters.map((c) => `- ${c}`), "");
  for (const section of input.sections ?? []) out.push(...section, "");
  if (input.notes.length > 0) out.push("## Notes", "", ...input.notes.map((n) => `- ${n}`), "");
  return out.join("\n");
}
