// The report of `npm run bench:worker` (bench/worker.ts), also the worker
// section of bench/results.md: the tables and issue 16's targets, judged.

import type { WorkerBench } from "./worker.ts";

/** Issue 16's worker targets. */
export const TARGETS = {
  missMs: 0.5,
  hitOrBlockedMs: 0.2,
  coldSlowerMs: 50,
  memoryMb: 60,
  names: 5_000_000,
  bundleKiB: 250,
};

const ms = (value: number) => value.toFixed(3);
const kib = (size: WorkerBench["bundle"]) =>
  `${size.kib.toFixed(1)} KiB, gzip ${size.gzipKiB.toFixed(1)} KiB`;

function cpuTable(bench: WorkerBench): string[] {
  return [
    "| request | requests | workerd process CPU (ms) | over /healthz | isolate CPU (ms) | over /healthz |",
    "|---|---|---|---|---|---|",
    ...bench.rows.map((r) => {
      const base = r.kind === "/healthz";
      return `| ${r.kind} | ${r.requests} | ${ms(r.cpuMs)} | ${base ? "—" : ms(r.overBaselineMs)} | ${ms(r.isolateMs)} | ${base ? "—" : ms(r.isolateOverBaselineMs)} |`;
    }),
  ];
}

function topFrames(bench: WorkerBench): string[] {
  const lines: string[] = [];
  for (const kind of process.env.BENCH_WORKER_ALL_FRAMES
    ? bench.rows.map((r) => r.kind)
    : ["/healthz", "cache miss"]) {
    const row = bench.rows.find((r) => r.kind === kind);
    if (!row) continue;
    lines.push(`- ${kind}: ${row.top.map((t) => `\`${t.frame}\` ${t.ms.toFixed(3)}`).join(", ")}`);
  }
  return lines;
}

function listTable(bench: WorkerBench): string[] {
  return [
    "| names | list given as | file (MB) | first answer (ms) | slower than no list (ms) | workerd CPU until it, over no list (ms) | memory growth after it (MB) | settled (MB) | peak (MB) |",
    "|---|---|---|---|---|---|---|---|---|",
    ...bench.coldWithList.map(
      (r) =>
        `| ${r.names.toLocaleString("en-US")} | \`{ ${r.source} }\` | ${r.fileMb.toFixed(1)} | ${r.firstQueryMs.toFixed(0)} | ${r.slowerMs.toFixed(0)} | ${r.slowerCpuMs.toFixed(0)} | ${r.memoryGrowthMb.toFixed(1)} | ${r.settledGrowthMb.toFixed(1)} | ${r.peakGrowthMb.toFixed(1)} |`,
    ),
  ];
}

/** Each of issue 16's worker targets with this run's figure and whether it holds. */
export function targetLines(bench: WorkerBench): string[] {
  const row = (kind: string) => bench.rows.find((r) => r.kind === kind);
  const verdict = (ok: boolean) => (ok ? "holds" : "**missed**");
  const lines: string[] = [
    `- default bundle ≤ ${TARGETS.bundleKiB} KiB: ${bench.bundle.kib.toFixed(1)} KiB, ${verdict(bench.bundle.kib <= TARGETS.bundleKiB)}`,
  ];
  const miss = row("cache miss");
  if (miss) {
    lines.push(
      `- miss ≤ ${TARGETS.missMs} ms of isolate CPU over /healthz: ${ms(miss.isolateOverBaselineMs)} ms, ${verdict(miss.isolateOverBaselineMs <= TARGETS.missMs)} (process CPU: ${ms(miss.overBaselineMs)} ms)`,
    );
  }
  for (const kind of ["cache hit", "blocked name"]) {
    const r = row(kind);
    if (!r) continue;
    lines.push(
      `- ${kind} ≤ ${TARGETS.hitOrBlockedMs} ms of isolate CPU over /healthz: ${ms(r.isolateOverBaselineMs)} ms, ${verdict(r.isolateOverBaselineMs <= TARGETS.hitOrBlockedMs)} (process CPU: ${ms(r.overBaselineMs)} ms)`,
    );
  }
  for (const r of bench.coldWithList.filter((l) => l.names === TARGETS.names)) {
    const growth = Math.max(r.memoryGrowthMb, r.settledGrowthMb);
    lines.push(
      `- ${r.names.toLocaleString("en-US")} names as \`{ ${r.source} }\`: first answer ${r.slowerMs.toFixed(0)} ms slower, ${r.slowerCpuMs.toFixed(0)} ms more workerd CPU (≤ ${TARGETS.coldSlowerMs}: ${verdict(r.slowerMs <= TARGETS.coldSlowerMs)} by wall time, ${verdict(r.slowerCpuMs <= TARGETS.coldSlowerMs)} by CPU), memory +${growth.toFixed(1)} MB (≤ ${TARGETS.memoryMb}: ${verdict(growth <= TARGETS.memoryMb)}; peak +${r.peakGrowthMb.toFixed(1)} MB)`,
    );
  }
  return lines;
}

export function workerTable(bench: WorkerBench): string[] {
  return [
    `Worker bundle (wrangler's Total Upload): ${kib(bench.bundle)}; built with the Lua VM: ${kib(bench.luaBundle)}. Cold isolate, first DNS answer: ${bench.coldFirstQueryMs.toFixed(0)} ms, ${bench.coldFirstQueryCpuMs.toFixed(0)} ms of workerd CPU (median of 3).`,
    "",
    "CPU per request. Process CPU is workerd's (/proc) over a batch: it includes workerd's HTTP client",
    "and Miniflare's Cache API, a JS service in the same workerd, which on Cloudflare run outside the",
    "Worker. Isolate CPU is the worker isolate's busy time in a V8 CPU profile of another batch",
    "(workerd's inspector; JS, GC and runtime calls on the isolate's thread, not idle time): what",
    "Cloudflare bills as the Worker's CPU time, and what the targets are judged by.",
    "",
    ...cpuTable(bench),
    "",
    "The isolate's busiest frames (self time per request, ms):",
    "",
    ...topFrames(bench),
    "",
    "A cold isolate with a compiled block list, its first query for a listed name (so it waits for",
    "the list): the answer's time and workerd's CPU time until it (all threads; robust to other load on",
    "the machine, unlike wall time), and workerd's resident memory over the list-less cold worker's",
    "right after that answer, once the load's background work has ended, and at the peak. `{ asset }`",
    "is read through Miniflare's static-assets service; `{ url }` is fetched from loopback and then",
    "put in the Cache API (Miniflare's, in the same workerd: its copy counts here, not on Cloudflare).",
    "",
    ...listTable(bench),
    "",
    "Issue 16's worker targets in this run:",
    "",
    ...targetLines(bench),
  ];
}
