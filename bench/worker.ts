// `npm run bench:worker`: what the edge worker costs workerd per request
// (issue 16). The worker bundle (`wrangler deploy --dry-run`) runs in
// workerd through Miniflare, against the suite's DoH server and nsd on
// loopback. For each kind of request (cache miss, cache hit, blocked name,
// race of 2) it reads workerd's CPU time over a batch and subtracts a batch
// of `/healthz` requests in the same run; then the first-query time of a
// cold isolate (a fresh workerd). Also part of `npm run bench`.
// BENCH_NO_CACHE_API=1 turns the Cache API off, to see what Miniflare's
// local implementation of it (a service in the same workerd) costs a miss.

import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { WRANGLER_ENV } from "../scripts/stack.ts";
import { buildQuery } from "../shared/dns/query.ts";
import { readRcode } from "../shared/dns/wire.ts";
import { type RunningServer, startNsd } from "../test/support/dns-servers.ts";
import { type DohTestServer, startDohTestServer } from "../test/support/doh-test-server.ts";
import { cpuSeconds } from "./processes.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const REQUESTS = Number(process.env.BENCH_WORKER_REQUESTS ?? 1500);

const ZONE = `$ORIGIN bench.test.
$TTL 300
@   IN SOA ns.bench.test. admin.bench.test. 1 3600 600 86400 300
@   IN NS  ns.bench.test.
ns  IN A   127.0.0.1
*   IN A   192.0.2.7
`;

export interface WorkerCpuRow {
  kind: string;
  requests: number;
  /** workerd CPU per request, ms. */
  cpuMs: number;
  /** The same over the /healthz baseline of the run, ms. */
  overBaselineMs: number;
}

export interface WorkerBench {
  bundleKiB: number;
  rows: WorkerCpuRow[];
  /** First DNS answer of a fresh workerd, ms after it is ready (median of runs). */
  coldFirstQueryMs: number;
}

/** workerd's pid: the child of this process that Miniflare started. */
async function workerdPid(): Promise<number> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (ppid === process.pid && comm.startsWith("workerd")) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error("bench:worker: workerd process not found");
}

async function bundle(): Promise<{ dir: string; script: string; kib: number }> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-worker-bench-"));
  await run(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", dir],
    { cwd: ROOT, env: { ...process.env, ...WRANGLER_ENV, CI: "true" } },
  );
  const script = join(dir, "index.js");
  return { dir, script, kib: (await readFile(script)).length / 1024 };
}

function startWorker(script: string, config: unknown): Miniflare {
  return new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          name: "doh-edge",
          scriptPath: script,
          modulesRoot: dirname(script),
          modules: true,
          compatibilityDate: "2026-10-20",
          compatibilityFlags: ["nodejs_compat"],
          bindings: { DOH_CONFIG: JSON.stringify(config) },
          ...(process.env.BENCH_NO_CACHE_API ? { cacheAPI: false } : {}),
        },
      ],
    }),
  );
}

async function dnsPost(url: URL, name: string): Promise<number> {
  const response = await fetch(new URL("/dns-query", url), {
    method: "POST",
    headers: { "content-type": "application/dns-message", accept: "application/dns-message" },
    body: buildQuery(name, 1, { id: 7 }),
  });
  if (response.status !== 200) throw new Error(`bench:worker: HTTP ${response.status} for ${name}`);
  return readRcode(new Uint8Array(await response.arrayBuffer()));
}

/** workerd CPU per request, ms, over `count` requests made by `send`, four at a time. */
async function cpuPerRequest(pid: number, count: number, send: (i: number) => Promise<unknown>) {
  let next = 0;
  const before = cpuSeconds(pid) ?? Number.NaN;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < count) await send(next++);
    }),
  );
  return (((cpuSeconds(pid) ?? Number.NaN) - before) * 1000) / count;
}

export async function benchWorker(): Promise<WorkerBench> {
  const built = await bundle();
  const servers: (RunningServer | DohTestServer)[] = [];
  try {
    const nsdA = await startNsd({ zones: { "bench.test.": ZONE } });
    servers.push(nsdA);
    const nsdB = await startNsd({ zones: { "bench.test.": ZONE } });
    servers.push(nsdB);
    const doh = await startDohTestServer({ a: nsdA.port, b: nsdB.port });
    servers.push(doh);
    const config = {
      upstreams: [
        { name: "a", url: `http://127.0.0.1:${doh.port}/a/dns-query` },
        { name: "b", url: `http://127.0.0.1:${doh.port}/b/dns-query` },
      ],
      routes: [
        { zones: ["."], upstreams: ["a"] },
        { zones: ["race.bench.test."], upstreams: ["a", "b"], worker_count: 2, race: true },
      ],
      rules: [{ match: { suffix: "blocked.bench.test." }, action: "block" }],
    };
    const worker = startWorker(built.script, config);
    try {
      const url = await worker.ready;
      await dnsPost(url, "warm.bench.test");
      const pid = await workerdPid();
      const kinds: [string, (i: number) => Promise<unknown>][] = [
        ["/healthz", (i) => fetch(new URL(`/healthz?${i}`, url)).then((r) => r.arrayBuffer())],
        ["cache miss", (i) => dnsPost(url, `m${i}.bench.test`)],
        ["cache hit", () => dnsPost(url, "warm.bench.test")],
        ["blocked name", (i) => dnsPost(url, `b${i}.blocked.bench.test`)],
        ["race of 2 (miss)", (i) => dnsPost(url, `r${i}.race.bench.test`)],
      ];
      const measured: { kind: string; cpuMs: number }[] = [];
      for (const [kind, send] of kinds) {
        measured.push({ kind, cpuMs: await cpuPerRequest(pid, REQUESTS, send) });
      }
      const baseline = measured[0]!.cpuMs;
      const rows = measured.map((m) => ({
        kind: m.kind,
        requests: REQUESTS,
        cpuMs: m.cpuMs,
        overBaselineMs: m.cpuMs - baseline,
      }));
      await worker.dispose();
      const cold: number[] = [];
      for (let i = 0; i < 3; i++) {
        const fresh = startWorker(built.script, config);
        const freshUrl = await fresh.ready;
        const t0 = performance.now();
        await dnsPost(freshUrl, `cold${i}.bench.test`);
        cold.push(performance.now() - t0);
        await fresh.dispose();
      }
      cold.sort((x, y) => x - y);
      return { bundleKiB: built.kib, rows, coldFirstQueryMs: cold[1]! };
    } finally {
      await worker.dispose().catch(() => {});
    }
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await rm(built.dir, { recursive: true, force: true });
  }
}

export function workerTable(bench: WorkerBench): string[] {
  return [
    `Worker bundle: ${bench.bundleKiB.toFixed(1)} KiB. Cold isolate, first DNS answer: ${bench.coldFirstQueryMs.toFixed(0)} ms (median of 3).`,
    "",
    "| request | requests | workerd CPU per request (ms) | over /healthz (ms) |",
    "|---|---|---|---|",
    ...bench.rows.map(
      (r) =>
        `| ${r.kind} | ${r.requests} | ${r.cpuMs.toFixed(3)} | ${r.kind === "/healthz" ? "—" : r.overBaselineMs.toFixed(3)} |`,
    ),
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await benchWorker();
  process.stdout.write(`${workerTable(result).join("\n")}\n`);
}
