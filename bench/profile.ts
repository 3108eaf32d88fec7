// `npm run bench:profile`: the relay's CPU per query on each forwarding path
// next to the Node floors, in one run, and (unless --no-profile) a V8 CPU
// profile of the relay on each path with its top frames by self time.
//
//   node bench/profile.ts [--seconds 5] [--rounds 2] [--levels 10,50] [--rate 20000]
//     [--no-profile] [--no-perf] [--write] [--paths relay-udp,floor-udp]
//     [--baseline /path/to/another/checkout]
//
// Paths: relay → UDP, relay → DoH (POST and GET), relay → DoT, and the Node
// floors → UDP (bench/node-floor-udp.ts) and → DoT (bench/node-floor.ts),
// all against one unbound answering from cache. Every path runs in turn,
// round after round, so the ratios compare runs made seconds apart on this
// shared machine. Each level (-q) runs as fast as the path goes; --rate runs
// every path once more at -q 50 held to that many queries per second, where
// the CPU per query compares work done, not how many queries each system
// call carried (a faster path reads more datagrams per wake-up). Where Linux
// perf can attach, one more run per path under `perf record` splits each
// process's CPU per query by kind (kernel, GC, the project's JavaScript,
// Node's, ...; bench/perf-split.ts) and names the JavaScript functions that
// cost the most, by CPU rather than wall time. The engine's layers alone
// come from bench/engine-cpu.ts --layers. --write puts the report in
// bench/profiles.md. Bounded:
// each dnsperf run has -l and -Q; every process is stopped at the end.
//
// The recipe by hand, for any path: start the relay with
//   node --cpu-prof --cpu-prof-dir=/tmp/prof relay/src/cli.ts --config relay.yaml
// load it (dnsperf -s 127.0.0.1 -p PORT -d queries -q 50 -l 5), stop it with
// SIGTERM (it drains and exits, and Node writes the .cpuprofile), then open
// the file in Chrome DevTools (Performance → Load profile) or summarise it
// with topFrames() from bench/cpu-profile.ts.

import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import {
  createTestCertificates,
  freePort,
  startNsd,
  startUnbound,
} from "../test/support/dns-servers.ts";
import {
  type ManagedProcess,
  startProcess,
  untilReady,
  waitForDns,
} from "../test/support/processes.ts";
import { topFrames } from "./cpu-profile.ts";
import { dnsperf } from "./dnsperf.ts";
import {
  BUILTINS,
  NODE_JS,
  OWN_JS,
  PERF_KINDS,
  PERF_NODE_ARGS,
  perfAvailable,
  perfSplit,
  recordPerf,
} from "./perf-split.ts";
import { cpuSplit } from "./processes.ts";
import { startRelayProcess } from "./servers.ts";
import { transportCpu } from "./transport-cpu.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    levels: { type: "string", default: "10,50" },
    /** Queries per second of the fixed-rate run (0: none). */
    rate: { type: "string", default: "20000" },
    "no-profile": { type: "boolean", default: false },
    "no-perf": { type: "boolean", default: false },
    write: { type: "boolean", default: false },
    /** Only these path ids (e.g. relay-udp,floor-udp); all by default. */
    paths: { type: "string" },
    /** Another checkout (e.g. /work/main): its relay runs the same paths, for before/after in one run. */
    baseline: { type: "string" },
  },
});
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const LEVELS = args.levels.split(",").map(Number);
const RATE = Number(args.rate);

const ZONE = "bench.test.";
const HOSTS = 200;
const MAX_QPS = 200_000;
/** One way of loading a path: dnsperf's queries in flight and its cap on queries per second. */
interface Load {
  key: string;
  outstanding: number;
  maxQps: number;
  /** The report's "-q" column. */
  label: string;
}
const LOADS: Load[] = [
  ...LEVELS.map((q) => ({ key: String(q), outstanding: q, maxQps: MAX_QPS, label: String(q) })),
  ...(RATE > 0
    ? [{ key: "rate", outstanding: 50, maxQps: RATE, label: `50, at ${RATE} q/s` }]
    : []),
];
const WARM_UP: Load = { key: "warm-up", outstanding: 10, maxQps: MAX_QPS, label: "10" };
/** The saturating load of the ratios' first column and of the V8 profiles. */
const TOP: Load = LOADS.find((l) => l.outstanding === Math.max(...LEVELS) && l.key !== "rate")!;
const REPORT = fileURLToPath(new URL("./profiles.md", import.meta.url));
const runFile = promisify(execFile);

interface Path {
  /** Date.now() when its process was started. */
  started: number;
  id: string;
  title: string;
  port: number;
  proc: ManagedProcess;
}

interface Tally {
  completed: number;
  cpu: number;
  /** Of `cpu`, in the kernel. */
  system: number;
  seconds: number;
  latencySum: number;
  runs: number;
}

function zone(): string {
  const lines = [
    `$ORIGIN ${ZONE}`,
    "$TTL 3600",
    `@ IN SOA ns.${ZONE} admin.${ZONE} 1 3600 600 86400 3600`,
  ];
  lines.push(`@ IN NS ns.${ZONE}`, "ns IN A 127.0.0.1");
  for (let i = 0; i < HOSTS; i++)
    lines.push(`h${i} IN A 192.0.2.${i % 250}`, `h${i} IN AAAA 2001:db8::${i.toString(16)}`);
  return `${lines.join("\n")}\n`;
}

function queries(): string {
  const lines: string[] = [];
  for (let i = 0; i < HOSTS; i++) lines.push(`h${i}.${ZONE} A`, `h${i}.${ZONE} AAAA`);
  return `${lines.join("\n")}\n`;
}

interface Upstreams {
  udp: number;
  dot: number;
  doh: number;
  ca: string;
}

/** The perf map a process started with PERF_NODE_ARGS leaves behind. */
const dropPerfMap = (proc: ManagedProcess) =>
  rm(`/tmp/perf-${proc.child.pid}.map`, { force: true });

/**
 * The relays (and floors) on every path; `nodeArgs` go to each process's
 * Node (by default PERF_NODE_ARGS, for the perf run's JavaScript names).
 */
async function startPaths(
  dir: string,
  up: Upstreams,
  cleanups: (() => Promise<unknown>)[],
  options: { nodeArgs?: (id: string) => string[] } = {},
): Promise<Path[]> {
  const probeName = `h0.${ZONE}`;
  const tls = { ca: up.ca, tls_servername: "dns.test" };
  const relays: [string, string, Record<string, unknown>][] = [
    ["relay-udp", "relay → UDP", { url: `udp://127.0.0.1:${up.udp}` }],
    ["relay-doh", "relay → DoH POST", { url: `https://127.0.0.1:${up.doh}/dns-query`, ...tls }],
    [
      "relay-doh-get",
      "relay → DoH GET",
      { url: `https://127.0.0.1:${up.doh}/dns-query`, method: "GET", ...tls },
    ],
    [
      "relay-dot",
      "relay → DoT",
      // One connection, as the floor's: more would split each turn's writes between them.
      { url: `tls://127.0.0.1:${up.dot}`, ...tls, pool: { size: 1, max_in_flight: 100 } },
    ],
  ];
  const paths: Path[] = [];
  const baseline = options.nodeArgs ? undefined : args.baseline;
  const wanted = (id: string) => !args.paths || args.paths.split(",").includes(id);
  for (const [id, title, upstream] of relays) {
    if (!wanted(id)) continue;
    for (const root of baseline ? [undefined, baseline] : [undefined]) {
      const started = Date.now();
      const relay = await startRelayProcess({
        dir,
        name: root ? `baseline-${id}` : id,
        upstream,
        probeName,
        ...(root
          ? { command: { node: process.execPath, entry: join(root, "relay/src/cli.ts") } }
          : {}),
        nodeArgs: options.nodeArgs?.(id) ?? PERF_NODE_ARGS,
      });
      cleanups.push(() => relay.proc.stop().then(() => dropPerfMap(relay.proc)));
      paths.push({
        started,
        id: root ? `baseline-${id}` : id,
        title: root ? `${title} (baseline)` : title,
        port: relay.port,
        proc: relay.proc,
      });
    }
  }
  const floors: [string, string, string, string[]][] = [
    ["floor-udp", "Node floor → UDP", "./node-floor-udp.ts", [String(up.udp)]],
    ["floor-dot", "Node floor → DoT", "./node-floor.ts", [String(up.dot), up.ca, "dns.test"]],
  ];
  for (const [id, title, script, rest] of floors) {
    if (!wanted(id)) continue;
    const port = await freePort();
    const started = Date.now();
    const proc = startProcess(id, process.execPath, [
      ...(options.nodeArgs?.(id) ?? PERF_NODE_ARGS),
      fileURLToPath(new URL(script, import.meta.url)),
      String(port),
      ...rest,
    ]);
    cleanups.push(() => proc.stop().then(() => dropPerfMap(proc)));
    await untilReady(proc, () => waitForDns(proc, port, probeName));
    paths.push({ started, id, title, port, proc });
  }
  return paths;
}

/** One dnsperf run against `path`, with the path's process CPU over it. */
async function measure(path: Path, queryFile: string, load: Load, seconds: number) {
  const before = cpuSplit(path.proc.child.pid) ?? { user: 0, system: 0 };
  const r = await dnsperf({
    target: { port: path.port },
    queryFile,
    outstanding: load.outstanding,
    seconds,
    maxQps: load.maxQps,
  });
  const after = cpuSplit(path.proc.child.pid) ?? before;
  const system = after.system - before.system;
  return { ...r, cpu: after.user - before.user + system, system };
}

/** Rounds × levels × paths, in turn; totals per path and level. */
async function compare(paths: Path[], queryFile: string): Promise<Map<string, Tally>> {
  const tallies = new Map<string, Tally>();
  for (const path of paths) await measure(path, queryFile, WARM_UP, 1);
  for (let round = 0; round < ROUNDS; round++) {
    for (const load of LOADS) {
      for (const path of paths) {
        const r = await measure(path, queryFile, load, SECONDS);
        const key = `${path.id}@${load.key}`;
        const t = tallies.get(key) ?? {
          completed: 0,
          cpu: 0,
          system: 0,
          seconds: 0,
          latencySum: 0,
          runs: 0,
        };
        t.completed += r.completed;
        t.cpu += r.cpu;
        t.system += r.system;
        t.seconds += SECONDS;
        t.latencySum += r.avgLatency;
        t.runs++;
        tallies.set(key, t);
        process.stdout.write(
          `profile: ${path.title.padEnd(18)} -q ${load.label.padStart(2)}: ${r.qps.toFixed(0).padStart(6)} q/s, ` +
            `${(r.avgLatency * 1000).toFixed(3)} ms, ${((r.cpu * 1e6) / Math.max(1, r.completed)).toFixed(1)} ms CPU/1k q, ${r.lost} lost\n`,
        );
      }
    }
  }
  return tallies;
}

function compareTable(paths: Path[], tallies: Map<string, Tally>): string[] {
  const lines = [
    "| path | -q | queries/s | avg latency (ms) | CPU ms / 1k q | of it, kernel |",
    "|---|---|---|---|---|---|",
  ];
  for (const load of LOADS) {
    for (const path of paths) {
      const t = tallies.get(`${path.id}@${load.key}`);
      if (!t) continue;
      lines.push(
        `| ${path.title} | ${load.label} | ${(t.completed / t.seconds).toFixed(0)} | ${((t.latencySum / t.runs) * 1000).toFixed(3)} | ${((t.cpu * 1e6) / Math.max(1, t.completed)).toFixed(1)} | ${((t.system * 1e6) / Math.max(1, t.completed)).toFixed(1)} |`,
      );
    }
  }
  return lines;
}

function ratioLines(tallies: Map<string, Tally>): string[] {
  const loads = LOADS.filter((l) => l === TOP || l.key === "rate");
  const cpu = (id: string, load: Load) => {
    const t = tallies.get(`${id}@${load.key}`);
    return t && t.completed > 0 ? t.cpu / t.completed : Number.NaN;
  };
  const qps = (id: string, load: Load) =>
    (tallies.get(`${id}@${load.key}`)?.completed ?? Number.NaN) /
    Math.max(1, tallies.get(`${id}@${load.key}`)?.seconds ?? 1);
  const rows: [string, (load: Load) => number][] = [
    [
      "relay DoH POST CPU/q ÷ baseline's",
      (l) => cpu("relay-doh", l) / cpu("baseline-relay-doh", l),
    ],
    ["relay UDP CPU/q ÷ baseline's", (l) => cpu("relay-udp", l) / cpu("baseline-relay-udp", l)],
    ["relay DoT CPU/q ÷ baseline's", (l) => cpu("relay-dot", l) / cpu("baseline-relay-dot", l)],
    ["relay DoH POST CPU/q ÷ relay DoT CPU/q", (l) => cpu("relay-doh", l) / cpu("relay-dot", l)],
    ["relay DoH GET CPU/q ÷ relay DoT CPU/q", (l) => cpu("relay-doh-get", l) / cpu("relay-dot", l)],
    ["relay DoH POST q/s ÷ relay DoT q/s", (l) => qps("relay-doh", l) / qps("relay-dot", l)],
    ["relay UDP CPU/q ÷ Node floor UDP CPU/q", (l) => cpu("relay-udp", l) / cpu("floor-udp", l)],
    ["relay DoT CPU/q ÷ Node floor DoT CPU/q", (l) => cpu("relay-dot", l) / cpu("floor-dot", l)],
  ];
  const shown = rows
    .map(([title, f]) => [title, loads.map(f)] as const)
    .filter(([, values]) => values.some(Number.isFinite));
  const cell = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "–");
  return [
    `| ratio (same run) | ${loads.map((l) => `-q ${l.label}`).join(" | ")} |`,
    `|---|${loads.map(() => "---|").join("")}`,
    ...shown.map(([t, values]) => `| ${t} | ${values.map(cell).join(" | ")} |`),
  ];
}

/** The load of the perf run: the fixed rate when there is one (the same work for every path). */
const PERF_LOAD: Load = LOADS.find((l) => l.key === "rate") ?? TOP;
/** JavaScript functions listed per relay path. */
const TOP_FUNCTIONS = 16;

/**
 * One more run per path under Linux perf: CPU µs per query by kind, and the
 * JavaScript functions (the project's and Node's) that cost the most.
 */
async function perfLines(paths: Path[], queryFile: string, dir: string): Promise<string[]> {
  if (args["no-perf"] || !(await perfAvailable())) return [];
  const columns: { path: Path; us: Map<string, number>; functions: [string, number][] }[] = [];
  for (const path of paths) {
    const file = join(dir, `perf-${path.id}.data`);
    const recording = recordPerf(path.proc.child.pid ?? 0, file);
    const r = await measure(path, queryFile, PERF_LOAD, SECONDS);
    await recording.stop();
    const split = await perfSplit(file);
    const perQuery = (v: number) => (v * 1000) / Math.max(1, r.completed);
    columns.push({
      path,
      us: new Map([...split.kinds].map(([k, v]) => [k, perQuery(v)])),
      functions: split.functions.map(([name, ms]) => [name, perQuery(ms)]),
    });
  }
  const total = (us: Map<string, number>) => [...us.values()].reduce((a, b) => a + b, 0);
  const lines = [
    `| CPU µs per query (-q ${PERF_LOAD.label}, perf) | ${columns.map((c) => c.path.title).join(" | ")} |`,
    `|---|${columns.map(() => "---|").join("")}`,
    ...PERF_KINDS.map(
      (kind) => `| ${kind} | ${columns.map((c) => (c.us.get(kind) ?? 0).toFixed(1)).join(" | ")} |`,
    ),
    `| total | ${columns.map((c) => total(c.us).toFixed(1)).join(" | ")} |`,
  ];
  for (const c of columns) {
    if (c.path.id.startsWith("baseline-")) continue;
    const own = c.us.get(OWN_JS) ?? 0;
    const node = c.us.get(NODE_JS) ?? 0;
    const builtins = c.us.get(BUILTINS) ?? 0;
    lines.push(
      "",
      `### ${c.path.title}: JavaScript and V8 builtins by function (perf, µs per query)`,
      "",
      `The project's files ${own.toFixed(2)} µs, Node's own JavaScript ${node.toFixed(2)} µs, V8 builtins ${builtins.toFixed(2)} µs per query.`,
      "",
      "| µs / query | function |",
      "|---|---|",
      ...c.functions
        .slice(0, TOP_FUNCTIONS)
        .map(([name, us]) => `| ${us.toFixed(3)} | \`${name}\` |`),
    );
  }
  return lines;
}

/** bench/engine-cpu.ts --layers in its own process: its table's lines. */
async function engineLayers(): Promise<string[]> {
  const script = fileURLToPath(new URL("./engine-cpu.ts", import.meta.url));
  const { stdout } = await runFile(process.execPath, [script, "--layers", "--rounds", "3"], {
    timeout: 300_000,
  });
  return stdout.trim().split("\n");
}

/** Each relay path again under --cpu-prof, one -q 50 run each; its top frames. */
async function profiles(dir: string, up: Upstreams, queryFile: string): Promise<string[]> {
  const profDir = (id: string) => join(dir, "prof", id);
  const cleanups: (() => Promise<unknown>)[] = [];
  const lines: string[] = [];
  try {
    const paths = await startPaths(dir, up, cleanups, {
      nodeArgs: (id) => ["--cpu-prof", `--cpu-prof-dir=${profDir(id)}`],
    });
    for (const path of paths) {
      await measure(path, queryFile, WARM_UP, 1);
      const skipMs = Date.now() - path.started;
      await measure(path, queryFile, TOP, SECONDS);
      await path.proc.stop();
      const files = await readdir(profDir(path.id));
      if (files.length === 0) continue;
      const summary = await topFrames(join(profDir(path.id), files[0]!), 15, skipMs);
      const areas = summary.areas.map((a) => `${a.frame} ${(a.share * 100).toFixed(0)}%`);
      lines.push(`### ${path.title}`, "", `By area: ${areas.join(", ")}.`, "");
      lines.push("| self time | frame |", "|---|---|");
      for (const f of summary.frames) {
        lines.push(`| ${(f.share * 100).toFixed(1)}% | \`${f.frame}\` |`);
      }
      lines.push("");
    }
  } finally {
    while (cleanups.length > 0) await cleanups.pop()?.();
  }
  return lines;
}

async function main(): Promise<void> {
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const dir = await mkdtemp(join(tmpdir(), "doh-edge-profile-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const queryFile = join(dir, "queries.txt");
    await writeFile(queryFile, queries());
    const certs = await createTestCertificates();
    cleanups.push(() => rm(certs.dir, { recursive: true, force: true }));
    const nsd = await startNsd({ zones: { [ZONE]: zone() } });
    cleanups.push(() => nsd.stop());
    const unbound = await startUnbound({ stubs: { [ZONE]: nsd.port }, tls: certs, doh: true });
    cleanups.push(() => unbound.stop());
    const up = {
      udp: unbound.port,
      dot: unbound.tlsPort!,
      doh: unbound.dohPort!,
      ca: certs.caFile,
    };
    await dnsperf({
      target: { port: unbound.port },
      queryFile,
      outstanding: 10,
      seconds: 2,
      maxQps: 5000,
    });
    const load0 = loadavg();
    const paths = await startPaths(dir, up, cleanups);
    const tallies = await compare(paths, queryFile);
    const split = await perfLines(paths, queryFile, dir);
    for (const path of paths) await path.proc.stop();
    const transports = await transportCpu(
      {
        dotPort: up.dot,
        dohPort: up.doh,
        caFile: up.ca,
        names: Array.from({ length: HOSTS }, (_, i) => `h${i}.${ZONE}`),
      },
      ROUNDS,
    );
    const layers = await engineLayers();
    const load1 = loadavg();
    const frames = args["no-profile"] ? [] : await profiles(dir, up, queryFile);
    const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" / ");
    const report = [
      "# Relay CPU per path, and where it goes",
      "",
      `Written by \`npm run bench:profile -- --write\` (bench/profile.ts) on ${new Date().toISOString()}: ${ROUNDS} rounds of ${SECONDS} s per path and level, every path in turn, dnsperf -c 1 against unbound answering from cache. CPU = the process's user+system time per 1,000 completed queries.`,
      "",
      `Load average (1/5/15 min) at start ${load(load0)}, at end ${load(load1)}, on ${availableParallelism()} CPUs: other work shares the machine, so only ratios within this run mean anything.` +
        (args.baseline
          ? ` "(baseline)" rows run the relay of ${args.baseline} in the same rounds; its transports that this checkout did not change show how far two runs of the same code drift here.`
          : ""),
      "",
      ...compareTable(paths, tallies),
      "",
      ...ratioLines(tallies),
      "",
      ...(split.length > 0
        ? [
            "## CPU per query by kind",
            "",
            `One more run per path under \`perf record\` at -q ${PERF_LOAD.label} (Linux perf, cpu-clock samples of every thread, the kernel's included; bench/perf-split.ts sorts them by DSO and symbol, and every process runs with ${PERF_NODE_ARGS.join(" ")}, so its JavaScript is named by file). Unlike the V8 profile below it charges system calls and task switches to the CPU they used, not the wall time they took; perf's own sampling adds a little to every path. V8's builtins and garbage collector run for the project's JavaScript and Node's alike; the kernel, Node's C++, malloc and OpenSSL are the I/O's.`,
            "",
            ...split,
            "",
          ]
        : []),
      "## The transports alone",
      "",
      "bench/transport-cpu.ts: each transport in the bench's own process, 50 queries in flight to the same unbound, 20,000 queries per round, rounds in turn; no relay engine, no dnsperf, no UDP legs.",
      "",
      ...transports,
      "",
      "## The engine by layer",
      "",
      "`npm run bench:engine -- --layers`: the relay's per-query JavaScript in one process over an upstream that answers in a microtask, the same queries entering at each layer in turn (3 rounds, medians). Each row includes the harness (a loop of awaits, a copy of each query) and everything below it; the last column is the layer's own cost.",
      "",
      ...layers,
      "",
      ...(frames.length > 0
        ? [
            "## Top frames (self time, -q 50, relay under --cpu-prof)",
            "",
            "Self time over the measured run only (start-up and warm-up left out), as a share of the busy (non-idle) samples. The recipe is in bench/profile.ts's header. `doSend` (a UDP send), `writeBuffer` and `writev` (TLS socket writes) are synchronous system calls: the sampler counts the time the thread spends in them, waiting for a CPU included, so on a loaded machine their share overstates their CPU; the kernel column above is the CPU the process spent in the kernel.",
            "",
            ...frames,
          ]
        : []),
    ].join("\n");
    process.stdout.write(`\n${report}\n`);
    if (args.write) await writeFile(REPORT, report);
  } finally {
    while (cleanups.length > 0) {
      try {
        await cleanups.pop()?.();
      } catch (error) {
        process.stderr.write(`profile: cleanup failed: ${(error as Error).message}\n`);
      }
    }
  }
}

await main();
