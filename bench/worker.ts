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
import { readdirSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { WRANGLER_ENV } from "../scripts/stack.ts";
import { buildQuery } from "../shared/dns/query.ts";
import { Rcode, readRcode } from "../shared/dns/wire.ts";
import { buildCompiledList } from "../shared/policy/compiled-list.ts";
import { type RunningServer, startNsd } from "../test/support/dns-servers.ts";
import { type DohTestServer, startDohTestServer } from "../test/support/doh-test-server.ts";
import { listNames } from "../test/support/list-names.ts";
import { cpuSeconds } from "./processes.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const REQUESTS = Number(process.env.BENCH_WORKER_REQUESTS ?? 1500);
const LIST_SIZES = (process.env.BENCH_WORKER_LISTS ?? "1000000,5000000").split(",").map(Number);

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
  /** The same with a compiled block list by URL (the first query asks a listed name). */
  coldWithList: ColdListRow[];
}

export interface ColdListRow {
  names: number;
  fileMb: number;
  firstQueryMs: number;
  /** workerd's resident memory after that first answer, over the list-less cold worker's. */
  memoryGrowthMb: number;
}

/** Resident memory of a process, MB. */
async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
}

/** Serves `bytes` at any path on a free loopback port. */
async function serveBytes(bytes: Uint8Array): Promise<{ url: string; close(): Promise<void> }> {
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/octet-stream" });
    res.end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/list.bin`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A fresh workerd's first answer (ms) and its memory then (MB). */
async function coldStart(script: string, config: unknown, name: string) {
  const fresh = startWorker(script, config);
  try {
    const url = await fresh.ready;
    const t0 = performance.now();
    const rcode = await dnsPost(url, name);
    const ms = performance.now() - t0;
    return { ms, rcode, rss: await rssMb(await workerdPid()) };
  } finally {
    await fresh.dispose();
  }
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

/**
 * A wrangler --outdir bundle as Miniflare modules: the script, and beside it
 * the Lua policy scripts it imports as text (wrangler.toml's Text rule).
 */
export function bundleModules(script: string) {
  const dir = dirname(script);
  const texts = readdirSync(dir).filter((name) => name.endsWith(".lua"));
  return {
    modulesRoot: dir,
    modules: [
      { type: "ESModule" as const, path: script },
      ...texts.map((name) => ({ type: "Text" as const, path: join(dir, name) })),
    ],
  };
}

function startWorker(script: string, config: unknown): Miniflare {
  return new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          name: "doh-edge",
          ...bundleModules(script),
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
      const cold: { ms: number; rss: number }[] = [];
      for (let i = 0; i < 3; i++)
        cold.push(await coldStart(built.script, config, `cold${i}.bench.test`));
      cold.sort((x, y) => x.ms - y.ms);
      const coldBaseline = cold[1]!;
      const coldWithList: ColdListRow[] = [];
      for (const count of LIST_SIZES) {
        const names = listNames(count, 16);
        const { bytes } = buildCompiledList(names);
        const list = await serveBytes(bytes);
        try {
          const run = await coldStart(
            built.script,
            { ...config, blocklists: [{ url: list.url }] },
            names[0]!,
          );
          if (run.rcode !== Rcode.NXDOMAIN)
            throw new Error("bench:worker: the compiled list was not applied");
          coldWithList.push({
            names: count,
            fileMb: bytes.length / 2 ** 20,
            firstQueryMs: run.ms,
            memoryGrowthMb: run.rss - coldBaseline.rss,
          });
        } finally {
          await list.close();
        }
      }
      return { bundleKiB: built.kib, rows, coldFirstQueryMs: coldBaseline.ms, coldWithList };
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
    "",
    "A cold isolate with a compiled block list by URL (served from loopback), its first query for a",
    "listed name (so it waits for the list): the answer's time, and workerd's memory over the cold",
    "isolate without a list.",
    "",
    "| names | file (MB) | first answer (ms) | workerd memory growth (MB) |",
    "|---|---|---|---|",
    ...bench.coldWithList.map(
      (r) =>
        `| ${r.names.toLocaleString("en-US")} | ${r.fileMb.toFixed(1)} | ${r.firstQueryMs.toFixed(0)} | ${r.memoryGrowthMb.toFixed(1)} |`,
    ),
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await benchWorker();
  process.stdout.write(`${workerTable(result).join("\n")}\n`);
}
