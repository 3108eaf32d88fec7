// `npm run bench:worker`: what the edge worker costs per request and what a
// big compiled block list costs a cold isolate (issue 16). The default worker
// bundle (`wrangler deploy --dry-run`, without the Lua VM) runs against the
// suite's DoH server and nsd on loopback.
//
// CPU, for each kind of request (cache miss, cache hit, blocked name, race of
// 2) against /healthz in the same rounds, with the bundle in plain workerd
// (bench/workerd-direct.ts) and an in-isolate Cache API stand-in
// (bench/worker-cache-standin.js): Miniflare's fetch interceptor and Cache API
// are services on the isolate's own thread whose work lands in its profile.
//   - workerd's process CPU over a batch (/proc): everything workerd does,
//     including its HTTP client, which on Cloudflare runs outside the Worker;
//   - the isolate's own CPU over another batch, from a V8 CPU profile taken
//     through workerd's inspector (bench/worker-profile.ts): what Cloudflare
//     bills as the Worker's CPU time, so issue 16's CPU targets are judged by it.
// Beside the worker's miss: a floor forwarder's (bench/worker-floor.js) with
// the same I/O, and both again in Miniflare with its Cache API.
// Then a cold isolate's first answer (plain workerd), and with a compiled
// list of 1M and 5M names given as `{ asset }` and as `{ url }`: the first
// query asks a listed name (so it waits for the list), workerd's memory
// over the list-less cold worker's, right after that answer, once the load's
// background work has ended, and at its peak, and the isolate's own memory.
// BENCH_WORKER_ALL_FRAMES=1 lists the busiest frames of every kind of request.

import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rcode } from "../shared/dns/wire.ts";
import { buildCompiledList } from "../shared/policy/compiled-list.ts";
import { type RunningServer, startNsd } from "../test/support/dns-servers.ts";
import { type DohTestServer, startDohTestServer } from "../test/support/doh-test-server.ts";
import { listNames } from "../test/support/list-names.ts";
import { LUA_DEFINE, type WranglerBuild, wranglerBuild } from "../test/support/wrangler-build.ts";
import { BenchError, cpuSeconds, onCpuShare, threadSchedTimes } from "./processes.ts";
import {
  type ColdRun,
  coldStart,
  dnsPost,
  MINIFLARE_INSPECTOR_ID,
  serveBytes,
  startWorker,
  workerdPid,
} from "./worker-cold.ts";
import { type IsolateCpu, openInspector } from "./worker-profile.ts";
import { workerTable } from "./worker-report.ts";
import { DIRECT_INSPECTOR_ID, startWorkerd } from "./workerd-direct.ts";

export { workerTable };

const REQUESTS = Number(process.env.BENCH_WORKER_REQUESTS ?? 1000);
/** Rounds of every kind in turn; a row's figures are the medians of its rounds. */
const ROUNDS = Number(process.env.BENCH_WORKER_ROUNDS ?? 3);
const LIST_SIZES = (process.env.BENCH_WORKER_LISTS ?? "1000000,5000000").split(",").map(Number);
/** Fresh workerds per cold row; its figures are the median run's (a 23 MB fetch varies run to run). */
export const COLD_RUNS = 5;
/** The least a Worker can do to forward a miss, to tell the runtime's I/O cost from our code's. */
const FLOOR_SCRIPT = fileURLToPath(new URL("worker-floor.js", import.meta.url));
const FLOOR_VARIANTS = ["fetch", "fetch+cache"] as const;
export type FloorVariant = (typeof FLOOR_VARIANTS)[number];
/** /healthz and a miss: what the floor answers, and what the Miniflare-cache rows measure. */
const MISS = ["/healthz", "cache miss"];
/** The Cache API the CPU rows run with: the in-isolate stand-in, or Miniflare's own. */
type CacheKind = "stand-in" | "miniflare";
/** How long after the first answer the load's background work (a Cache API put) is given. */
const SETTLE_MS = 3000;

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
  /** workerd process CPU per request, ms. */
  cpuMs: number;
  /** The same over the /healthz baseline of the run, ms. */
  overBaselineMs: number;
  /** The isolate's sampled CPU per request (JS, GC, runtime calls on its thread), ms. */
  isolateMs: number;
  /** The same over /healthz's, ms. */
  isolateOverBaselineMs: number;
  /** The share of its runnable time the isolate's thread spent on a CPU in the profiled batch. */
  onCpuShare: number;
  /** The isolate's sampled "(program)" time per request: outside JS, runtime work or waiting, ms. */
  programMs: number;
  /** The isolate's busiest frames over the batch (self time per request, ms). */
  top: IsolateCpu["top"];
}

export interface ColdListRow {
  names: number;
  source: "asset" | "url";
  fileMb: number;
  firstQueryMs: number;
  /** First answer minus the list-less cold worker's, ms. */
  slowerMs: number;
  /** workerd's CPU time until the first answer, over the list-less cold worker's, ms. */
  slowerCpuMs: number;
  /** workerd's resident memory right after that first answer, over the list-less cold worker's, MB. */
  memoryGrowthMb: number;
  /** The same SETTLE_MS later, once the load's background work has ended, MB. */
  settledGrowthMb: number;
  /** workerd's peak resident memory over the list-less cold worker's peak, MB. */
  peakGrowthMb: number;
  /** The isolate's own memory (heap and ArrayBuffers) over the list-less cold isolate's, once settled, MB. */
  isolateGrowthMb: number;
}

export interface WorkerBench {
  /** wrangler's Total Upload of the default build (no Lua VM), KiB. */
  bundle: { kib: number; gzipKiB: number };
  /** The same for `--define DOH_EDGE_LUA:true`. */
  luaBundle: { kib: number; gzipKiB: number };
  rows: WorkerCpuRow[];
  /** The floor forwarder (bench/worker-floor.js), fetch only and with the Cache API: /healthz and miss. */
  floors: { variant: FloorVariant; rows: WorkerCpuRow[] }[];
  /** /healthz and a miss with Miniflare's Cache API, the worker's and the floor's (fetch+cache). */
  miniflareCache: { worker: WorkerCpuRow[]; floor: WorkerCpuRow[] };
  /** First DNS answer of a fresh workerd, ms after it is ready (median of runs). */
  coldFirstQueryMs: number;
  /** workerd's CPU time until then, ms. */
  coldFirstQueryCpuMs: number;
  coldWithList: ColdListRow[];
}

/** The default deploy bundle (benched), and the Lua build's upload size beside it. */
async function bundles(): Promise<{ built: WranglerBuild; lua: WranglerBuild }> {
  const [built, lua] = await Promise.all([wranglerBuild(), wranglerBuild({ args: LUA_DEFINE })]);
  await rm(lua.dir, { recursive: true, force: true });
  return { built, lua };
}

/** Sends `count` requests made by `send`, four at a time. */
async function batch(count: number, send: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < count) await send(next++);
    }),
  );
}

interface Measured {
  kind: string;
  cpuMs: number;
  isolate: IsolateCpu;
  onCpu: number;
}

const middle = (values: number[]) =>
  [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;

/**
 * The sampler counts wall time: on a loaded machine a sample also covers
 * time the thread waited for a CPU, so each batch's samples are scaled by
 * the share of its runnable time the isolate's thread spent on a CPU.
 */
const perRequest = (m: Measured, ms: number) => (ms * m.onCpu) / REQUESTS;

/** One kind's row from its rounds; "over /healthz" pairs each round with that round's /healthz. */
function rowOf(kind: string, mine: Measured[], rounds: Measured[][]): WorkerCpuRow {
  const base = rounds.map((measured) => measured[0]!);
  const isolate = mine.map((m) => perRequest(m, m.isolate.busyMs));
  const last = mine[mine.length - 1]!;
  return {
    kind,
    requests: REQUESTS * mine.length,
    cpuMs: middle(mine.map((m) => m.cpuMs)),
    overBaselineMs: middle(mine.map((m, r) => m.cpuMs - base[r]!.cpuMs)),
    isolateMs: middle(isolate),
    isolateOverBaselineMs: middle(
      isolate.map((ms, r) => ms - perRequest(base[r]!, base[r]!.isolate.busyMs)),
    ),
    onCpuShare: middle(mine.map((m) => m.onCpu)),
    programMs: middle(mine.map((m) => perRequest(m, m.isolate.programMs))),
    top: last.isolate.top.map((t) => ({ frame: t.frame, ms: perRequest(last, t.ms) })),
  };
}

/** A worker for the CPU rows: in plain workerd with the stand-in, or in Miniflare with its Cache API. */
async function running(script: string, config: unknown, cache: CacheKind) {
  if (cache === "stand-in") {
    const direct = await startWorkerd(script, config, { cacheStandIn: true });
    return { ...direct, inspectorId: DIRECT_INSPECTOR_ID };
  }
  const worker = startWorker(script, config, { inspector: true });
  const url = await worker.ready;
  return {
    url,
    pid: await workerdPid(),
    inspector: await worker.getInspectorURL(),
    inspectorId: MINIFLARE_INSPECTOR_ID,
    dispose: () => worker.dispose(),
  };
}

/**
 * Process CPU and isolate CPU per request of each kind, and each over /healthz;
 * only the kinds in `only` when given (the floor forwarder answers /healthz and misses).
 */
async function cpuRows(
  script: string,
  config: unknown,
  { only, cache = "stand-in" }: { only?: readonly string[]; cache?: CacheKind } = {},
): Promise<WorkerCpuRow[]> {
  const worker = await running(script, config, cache);
  try {
    const { url, pid } = worker;
    await dnsPost(url, "warm.bench.test");
    const mapped = existsSync(`${script}.map`) ? script : undefined;
    const session = await openInspector(worker.inspector, worker.inspectorId, mapped);
    try {
      const all: [string, (i: number) => Promise<unknown>][] = [
        ["/healthz", (i) => fetch(new URL(`/healthz?${i}`, url)).then((r) => r.arrayBuffer())],
        ["cache miss", (i) => dnsPost(url, `m${i}.bench.test`)],
        ["cache hit", () => dnsPost(url, "warm.bench.test")],
        ["blocked name", (i) => dnsPost(url, `b${i}.blocked.bench.test`)],
        ["race of 2 (miss)", (i) => dnsPost(url, `r${i}.race.bench.test`)],
      ];
      const kinds = only ? all.filter(([kind]) => only.includes(kind)) : all;
      // Rounds of every kind in turn, so that each kind meets the same spells
      // of load; each kind's figures are the medians of its rounds.
      let sent = 0;
      const rounds: Measured[][] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const measured: Measured[] = [];
        for (const [kind, send] of kinds) {
          const fresh = (i: number) => send(sent + i); // a miss stays a miss
          const before = cpuSeconds(pid) ?? Number.NaN;
          await batch(REQUESTS, fresh);
          sent += REQUESTS;
          const cpuMs = (((cpuSeconds(pid) ?? Number.NaN) - before) * 1000) / REQUESTS;
          // A second batch, profiled.
          const sched = threadSchedTimes(pid);
          const isolate = await session.profile(() => batch(REQUESTS, fresh));
          sent += REQUESTS;
          measured.push({ kind, cpuMs, isolate, onCpu: onCpuShare(sched, threadSchedTimes(pid)) });
        }
        rounds.push(measured);
      }
      return kinds.map(([kind], k) =>
        rowOf(
          kind,
          rounds.map((measured) => measured[k]!),
          rounds,
        ),
      );
    } finally {
      session.close();
    }
  } finally {
    await worker.dispose();
  }
}

/** The median run by first-answer time. */
function median(runs: ColdRun[]): ColdRun {
  return [...runs].sort((x, y) => x.ms - y.ms)[Math.floor(runs.length / 2)]!;
}

/** A cold isolate with a compiled list of `count` names, as an asset and by URL. */
async function coldListRows(
  script: string,
  config: Record<string, unknown>,
  count: number,
  baseline: { cold: ColdRun; settled: number },
): Promise<ColdListRow[]> {
  const names = listNames(count, 16);
  const { bytes } = buildCompiledList(names);
  const assetsDir = await mkdtemp(join(tmpdir(), "doh-edge-worker-assets-"));
  await mkdir(join(assetsDir, "lists"));
  await writeFile(join(assetsDir, "lists/list.bin"), bytes);
  const served = await serveBytes(bytes);
  const rows: ColdListRow[] = [];
  try {
    const sources = [
      ["asset", { asset: "/lists/list.bin" }, { assetsDir }],
      ["url", { url: served.url }, {}],
    ] as const;
    for (const [source, list, options] of sources) {
      const runs: ColdRun[] = [];
      for (let i = 0; i < COLD_RUNS; i++) {
        runs.push(
          await coldStart(script, { ...config, blocklists: [list] }, names[i]!, {
            ...options,
            settleMs: SETTLE_MS,
          }),
        );
      }
      const cold = median(runs);
      if (runs.some((r) => r.rcode !== Rcode.NXDOMAIN)) {
        throw new BenchError(
          "list_not_applied",
          `bench:worker: the ${source} list was not applied`,
        );
      }
      rows.push({
        names: count,
        source,
        fileMb: bytes.length / 2 ** 20,
        firstQueryMs: cold.ms,
        slowerMs: cold.ms - baseline.cold.ms,
        slowerCpuMs: cold.cpuMs - baseline.cold.cpuMs,
        memoryGrowthMb: cold.rss - baseline.cold.rss,
        settledGrowthMb: (cold.settledRss ?? Number.NaN) - baseline.settled,
        peakGrowthMb: cold.peak - baseline.cold.peak,
        isolateGrowthMb: cold.isolateMb - baseline.cold.isolateMb,
      });
    }
  } finally {
    await served.close();
    await rm(assetsDir, { recursive: true, force: true });
  }
  return rows;
}

export async function benchWorker(): Promise<WorkerBench> {
  const { built, lua } = await bundles();
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
    const rows = await cpuRows(built.script, config);
    const floors: WorkerBench["floors"] = [];
    for (const variant of FLOOR_VARIANTS) {
      const floorConfig = { ...config, floor: variant };
      floors.push({ variant, rows: await cpuRows(FLOOR_SCRIPT, floorConfig, { only: MISS }) });
    }
    const miniflareCache = {
      worker: await cpuRows(built.script, config, { only: MISS, cache: "miniflare" }),
      floor: await cpuRows(
        FLOOR_SCRIPT,
        { ...config, floor: "fetch+cache" },
        { only: MISS, cache: "miniflare" },
      ),
    };
    const cold: ColdRun[] = [];
    for (let i = 0; i < COLD_RUNS; i++) {
      cold.push(
        await coldStart(built.script, config, `cold${i}.bench.test`, {
          settleMs: SETTLE_MS,
        }),
      );
    }
    const baseline = { cold: median(cold), settled: median(cold).settledRss ?? Number.NaN };
    const coldWithList: ColdListRow[] = [];
    for (const count of LIST_SIZES) {
      coldWithList.push(...(await coldListRows(built.script, config, count, baseline)));
    }
    return {
      bundle: { kib: built.uploadKiB, gzipKiB: built.gzipKiB },
      luaBundle: { kib: lua.uploadKiB, gzipKiB: lua.gzipKiB },
      rows,
      floors,
      miniflareCache,
      coldFirstQueryMs: baseline.cold.ms,
      coldFirstQueryCpuMs: baseline.cold.cpuMs,
      coldWithList,
    };
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await rm(built.dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await benchWorker();
  process.stdout.write(`${workerTable(result).join("\n")}\n`);
}
