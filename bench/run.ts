// `npm run bench`: dnsperf against ten paths to one unbound (stub zone at
// nsd), all on 127.0.0.1, at several outstanding-query levels:
//   direct UDP, dnsdist → UDP, relay → UDP, the Node floor → UDP
//   (bench/node-floor-udp.ts), direct DoH, relay → DoH, direct DoT,
//   dnsdist → DoT, relay → DoT, and the Node floor → DoT (bench/node-floor.ts;
//   the floors at -q 50 only); then the relay → DoT with
//   workers: 1 against workers: 2 (bench/workers.ts), and with statsd off,
//   live and dead (bench/statsd.ts).
// Writes bench/results.md and prints a summary. Bounded: each dnsperf run
// has -l seconds and -Q/-q limits; the whole run stays under 5 minutes.
// Every process is stopped and every temp dir removed, also on error.

import { spawnSync } from "node:child_process";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildRelay } from "../scripts/build-relay.ts";
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
import { exampleConfigOnLoopback, idleRssKb, machineNode } from "../test/support/release-relay.ts";
import { benchBlocklist, blocklistTable } from "./blocklist.ts";
import { latencyChart, qpsChart } from "./charts.ts";
import { type DnsperfTarget, dnsperf } from "./dnsperf.ts";
import { benchDoh3, doh3Table } from "./doh3.ts";
import { benchDoq } from "./doq.ts";
import { benchLuaPolicy, luaPolicySection } from "./lua-policy.ts";
import { cpuSeconds } from "./processes.ts";
import { type LevelResult, type PathResult, renderReport } from "./report.ts";
import {
  fetchMetrics,
  metricSum,
  type RelayServer,
  startDnsdist,
  startRelayProcess,
} from "./servers.ts";
import { benchStatsd, statsdSection } from "./statsd.ts";
import { benchWorker, workerTable } from "./worker.ts";
import { benchWorkers, workersSection } from "./workers.ts";

/** The relay's idle memory with the example config: the release build under the machine's Node, and the sources under ours. */
async function relayFootprint(dir: string): Promise<string[]> {
  const bundle = join(dir, "doh-relay.mjs");
  await buildRelay(bundle);
  const config = await exampleConfigOnLoopback(join(dir, "footprint.yaml"));
  const node = machineNode();
  const built = await idleRssKb(node.path, bundle, config);
  const sources = await idleRssKb(process.execPath, join(ROOT, "relay/bin/doh-relay.mjs"), config);
  const bundleKb = (await stat(bundle)).size / 1024;
  process.stdout.write(`bench: relay idle RSS ${(built / 1024).toFixed(1)} MB (release build)\n`);
  return [
    "## Relay footprint",
    "",
    "Idle resident memory two seconds after start, with relay/relay.example.yaml (its upstreams moved to",
    "loopback; nothing is sent).",
    "",
    "| relay | Node | RSS (MB) |",
    "|---|---|---|",
    `| release build (\`npm run build:relay\`, ${bundleKb.toFixed(0)} KB) | ${node.version} | ${(built / 1024).toFixed(1)} |`,
    `| sources (relay/bin/doh-relay.mjs) | ${process.versions.node} | ${(sources / 1024).toFixed(1)} |`,
  ];
}

const LEVELS = [1, 10, 50] as const;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const MAX_QPS = 200_000;
const HOSTS = 200;
const ZONE_NAME = "bench.test.";
/** Stop starting new dnsperf runs after this long (the whole run must stay under 4 min). */
const BUDGET_MS = 200_000;
const DOT_POOL_SIZE = 2;
const DOT_MAX_IN_FLIGHT = 100;
const RESULTS = fileURLToPath(new URL("./results.md", import.meta.url));
const QPS_CHART = fileURLToPath(new URL("./qps.svg", import.meta.url));
const LATENCY_CHART = fileURLToPath(new URL("./latency.svg", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function relayConnectionsOpened(relay: RelayServer): Promise<number> {
  return metricSum(
    await fetchMetrics(relay.metricsPort),
    "doh_relay_upstream_connections_opened_total",
  );
}

function benchZone(): string {
  const lines = [
    `$ORIGIN ${ZONE_NAME}`,
    "$TTL 3600",
    `@ IN SOA ns.${ZONE_NAME} admin.${ZONE_NAME} 1 3600 600 86400 3600`,
    `@ IN NS ns.${ZONE_NAME}`,
    "ns IN A 127.0.0.1",
  ];
  for (let i = 0; i < HOSTS; i++) {
    lines.push(`h${i} IN A 192.0.2.${i % 250}`, `h${i} IN AAAA 2001:db8::${i.toString(16)}`);
  }
  return `${lines.join("\n")}\n`;
}

function queryLines(): string {
  const lines: string[] = [];
  for (let i = 0; i < HOSTS; i++) lines.push(`h${i}.${ZONE_NAME} A`, `h${i}.${ZONE_NAME} AAAA`);
  return `${lines.join("\n")}\n`;
}

/** The first line with a version number that `command args` prints (stdout or stderr). */
function version(command: string, args: string[]): string {
  const out = spawnSync(command, args, { encoding: "utf8", timeout: 5000 });
  const text = `${out.stdout ?? ""}\n${out.stderr ?? ""}`;
  return text.split("\n").find((l) => /\d+\.\d+/.test(l)) ?? "?";
}

interface PathSpec {
  id: string;
  title: string;
  description: string;
  target: DnsperfTarget;
  hop?: ManagedProcess;
  relay?: RelayServer;
  /** unbound's TCP port this path's connections go to (sampled with ss). */
  upstreamPort?: number;
  /** Only these outstanding levels (default all). */
  levels?: readonly number[];
}

/**
 * Client sides of established TCP connections to `port` right now, owned by
 * the process with `pid` (or, without one, by a process named `command`):
 * other paths keep their own connections to the same port open.
 */
function connectionsTo(port: number, owner: { pid?: number; command?: string }): string[] {
  const out = spawnSync("ss", ["-Htnp", "state", "established", `( dport = :${port} )`], {
    encoding: "utf8",
  });
  const mine = (line: string) =>
    owner.pid !== undefined
      ? line.includes(`pid=${owner.pid},`)
      : line.includes(`(("${owner.command}"`);
  return out.stdout
    .split("\n")
    .filter(mine)
    .map((line) => line.trim().split(/\s+/)[2])
    .filter((local): local is string => local !== undefined && local !== "");
}

/** The Debian packages behind the commands the bench runs. */
const NEEDS: Record<string, string> = {
  nsd: "nsd",
  unbound: "unbound",
  dnsdist: "dnsdist",
  dnsperf: "dnsperf",
  openssl: "openssl",
  ss: "iproute2",
  // The HTTP/3 DoH server of bench/doh3.ts, built from source in GOPATH mode.
  go: "golang-go golang-github-lucas-clemente-quic-go-dev golang-github-miekg-dns-dev",
};

/** Commands the bench needs that are not installed. */
function missingTools(): string[] {
  return Object.keys(NEEDS).filter(
    (command) => spawnSync("sh", ["-c", `command -v ${command}`]).status !== 0,
  );
}

async function main(): Promise<number> {
  const missing = missingTools();
  if (missing.length > 0) {
    process.stderr.write(
      `bench: needs ${missing.join(", ")}; it installs nothing itself. On Debian:\n` +
        `  sudo apt-get install -y ${[...new Set(missing.map((m) => NEEDS[m]))].join(" ")}\n`,
    );
    return 2;
  }
  const started = Date.now();
  const startedAt = new Date().toISOString();
  const load0 = loadavg();
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    while (cleanups.length > 0) {
      const next = cleanups.pop();
      try {
        await next?.();
      } catch (error) {
        process.stderr.write(`bench: cleanup failed: ${(error as Error).message}\n`);
      }
    }
  };
  const onSignal = () => {
    void cleanup().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const notes: string[] = [];
  try {
    const dir = await mkdtemp(join(tmpdir(), "doh-edge-bench-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const queryFile = join(dir, "queries.txt");
    await writeFile(queryFile, queryLines());
    const probeName = `h0.${ZONE_NAME}`;

    const certs = await createTestCertificates();
    cleanups.push(() => rm(certs.dir, { recursive: true, force: true }));
    const nsd = await startNsd({ zones: { [ZONE_NAME]: benchZone() } });
    cleanups.push(() => nsd.stop());
    const unbound = await startUnbound({
      stubs: { [ZONE_NAME]: nsd.port },
      tls: certs,
      doh: true,
    });
    cleanups.push(() => unbound.stop());
    const dnsdist = await startDnsdist({ dir, name: "udp", backendPort: unbound.port, probeName });
    cleanups.push(() => dnsdist.proc.stop());
    const dnsdistDot = await startDnsdist({
      dir,
      name: "dot",
      backendPort: unbound.tlsPort!,
      probeName,
      tls: { ca: certs.caFile, subjectName: "dns.test", maxInFlight: DOT_MAX_IN_FLIGHT },
    });
    cleanups.push(() => dnsdistDot.proc.stop());
    const relayUdp = await startRelayProcess({
      dir,
      name: "udp",
      upstream: { url: `udp://127.0.0.1:${unbound.port}` },
      probeName,
    });
    cleanups.push(() => relayUdp.proc.stop());
    const relayDoh = await startRelayProcess({
      dir,
      name: "doh",
      upstream: {
        url: `https://127.0.0.1:${unbound.dohPort!}/dns-query`,
        ca: certs.caFile,
        tls_servername: "dns.test",
      },
      probeName,
    });
    cleanups.push(() => relayDoh.proc.stop());
    const relayDot = await startRelayProcess({
      dir,
      name: "dot",
      upstream: {
        url: `tls://127.0.0.1:${unbound.tlsPort!}`,
        ca: certs.caFile,
        tls_servername: "dns.test",
        pool: { size: DOT_POOL_SIZE, max_in_flight: DOT_MAX_IN_FLIGHT },
      },
      probeName,
    });
    cleanups.push(() => relayDot.proc.stop());
    const floorPort = await freePort();
    const floor = startProcess("node floor (dot)", process.execPath, [
      fileURLToPath(new URL("./node-floor.ts", import.meta.url)),
      String(floorPort),
      String(unbound.tlsPort!),
      certs.caFile,
      "dns.test",
    ]);
    cleanups.push(() => floor.stop());
    await untilReady(floor, () => waitForDns(floor, floorPort, probeName));
    const floorUdpPort = await freePort();
    const floorUdp = startProcess("node floor (udp)", process.execPath, [
      fileURLToPath(new URL("./node-floor-udp.ts", import.meta.url)),
      String(floorUdpPort),
      String(unbound.port),
    ]);
    cleanups.push(() => floorUdp.stop());
    await untilReady(floorUdp, () => waitForDns(floorUdp, floorUdpPort, probeName));
    process.stdout.write(
      `bench: servers up after ${((Date.now() - started) / 1000).toFixed(1)}s\n`,
    );

    const specs: PathSpec[] = [
      {
        id: "direct-udp",
        title: "direct UDP",
        description: "dnsperf → unbound, plain UDP.",
        target: { port: unbound.port },
      },
      {
        id: "dnsdist-udp",
        title: "dnsdist → UDP",
        description: "dnsperf → dnsdist 1.7 (no packet cache) → unbound, UDP both legs.",
        target: { port: dnsdist.port },
        hop: dnsdist.proc,
      },
      {
        id: "relay-udp",
        title: "relay → UDP",
        description:
          "dnsperf → relay (child process, cache off, no rate limit) → unbound, UDP both legs.",
        target: { port: relayUdp.port },
        hop: relayUdp.proc,
        relay: relayUdp,
      },
      {
        id: "floor-udp",
        title: "Node floor → UDP",
        description:
          "dnsperf → bench/node-floor-udp.ts → unbound: UDP in, one connected UDP socket out, its own message IDs, " +
          "nothing else. A reference for what Node itself costs on this path, at -q 50 only.",
        target: { port: floorUdpPort },
        hop: floorUdp,
        levels: [50],
      },
      {
        id: "direct-doh",
        title: "direct DoH",
        description:
          "dnsperf -m doh (one HTTP/2 connection, GET /dns-query?dns=…) → unbound's DoH listener. GET, not POST: see the notes.",
        target: { port: unbound.dohPort!, doh: "GET" },
      },
      {
        id: "relay-doh",
        title: "relay → DoH",
        description:
          "dnsperf → relay over UDP → unbound's DoH listener over pooled HTTP/2 (POST, pool size 2), through the relay's own HTTP/2 client (relay/src/transports/h2/).",
        target: { port: relayDoh.port },
        hop: relayDoh.proc,
        relay: relayDoh,
        upstreamPort: unbound.dohPort!,
      },
      {
        id: "direct-dot",
        title: "direct DoT",
        description: "dnsperf -m dot (one TLS connection, pipelined) → unbound's DoT listener.",
        target: { port: unbound.tlsPort!, dot: true },
        upstreamPort: unbound.tlsPort!,
      },
      {
        id: "dnsdist-dot",
        title: "dnsdist → DoT",
        description: `dnsperf → dnsdist 1.7 over UDP → unbound's DoT listener (tls='openssl', certificate verified, maxInFlight=${DOT_MAX_IN_FLIGHT}).`,
        target: { port: dnsdistDot.port },
        hop: dnsdistDot.proc,
        upstreamPort: unbound.tlsPort!,
      },
      {
        id: "relay-dot",
        title: "relay → DoT",
        description: `dnsperf → relay over UDP → unbound's DoT listener over the relay's pool (size ${DOT_POOL_SIZE}, max_in_flight ${DOT_MAX_IN_FLIGHT}, certificate verified).`,
        target: { port: relayDot.port },
        hop: relayDot.proc,
        relay: relayDot,
        upstreamPort: unbound.tlsPort!,
      },
      {
        id: "floor-dot",
        title: "Node floor → DoT",
        description:
          "dnsperf → bench/node-floor.ts over UDP → unbound's DoT listener: the same I/O as the relay (UDP in and out, " +
          "one pipelined TLS connection, certificate verified, writes corked per event-loop turn) with no engine, limits, " +
          "metrics or timeouts. A reference for what Node itself costs on this path, at -q 50 only.",
        target: { port: floorPort },
        hop: floor,
        upstreamPort: unbound.tlsPort!,
        levels: [50],
      },
    ];
    const paths: PathResult[] = specs.map((s) => ({
      id: s.id,
      title: s.title,
      description: s.description,
      levels: new Map(),
    }));

    // Fill unbound's cache, then warm each path (JIT, connections).
    await dnsperf({
      target: { port: unbound.port },
      queryFile,
      outstanding: 10,
      seconds: 3,
      maxQps: 5000,
    });
    for (const spec of specs) {
      try {
        await dnsperf({
          target: spec.target,
          queryFile,
          outstanding: 10,
          seconds: 1,
          maxQps: MAX_QPS,
        });
      } catch (error) {
        notes.push(`${spec.title}: warm-up failed: ${(error as Error).message.split("\n")[0]}`);
      }
    }

    // Level by level, every path in turn, so each ratio compares runs made close together.
    for (const level of LEVELS) {
      for (const [i, spec] of specs.entries()) {
        const path = paths[i]!;
        if (spec.levels && !spec.levels.includes(level)) continue;
        if (Date.now() - started > BUDGET_MS) {
          notes.push(`${spec.title} at -q ${level}: skipped, time budget used up`);
          continue;
        }
        const hop0 = cpuSeconds(spec.hop?.child.pid);
        const unbound0 = cpuSeconds(unbound.pid);
        const seen = new Set<string>();
        const owner =
          spec.hop?.child.pid !== undefined ? { pid: spec.hop.child.pid } : { command: "dnsperf" };
        const sampler =
          spec.upstreamPort !== undefined
            ? setInterval(() => {
                for (const c of connectionsTo(spec.upstreamPort!, owner)) seen.add(c);
              }, 200)
            : undefined;
        const opened0 = spec.relay ? await relayConnectionsOpened(spec.relay) : undefined;
        try {
          const r = await dnsperf({
            target: spec.target,
            queryFile,
            outstanding: level,
            seconds: SECONDS,
            maxQps: MAX_QPS,
          });
          const per1k = (before: number | undefined, after: number | undefined) =>
            before === undefined || after === undefined || r.completed === 0
              ? undefined
              : ((after - before) * 1000 * 1000) / r.completed;
          const result: LevelResult = {
            ...r,
            ...(spec.hop ? { hopCpuPer1k: per1k(hop0, cpuSeconds(spec.hop.child.pid)) } : {}),
            unboundCpuPer1k: per1k(unbound0, cpuSeconds(unbound.pid)),
          };
          if (spec.upstreamPort !== undefined) {
            for (const c of connectionsTo(spec.upstreamPort, owner)) seen.add(c);
            result.upstreamConnections = seen.size;
          }
          if (spec.relay && opened0 !== undefined && r.completed > 0) {
            const opened1 = await relayConnectionsOpened(spec.relay);
            result.handshakesPer10k = ((opened1 - opened0) * 10_000) / r.completed;
          }
          path.levels.set(level, result);
          process.stdout.write(
            `bench: ${spec.title.padEnd(14)} -q ${String(level).padStart(2)}: ${r.qps.toFixed(0).padStart(6)} q/s, ${(r.avgLatency * 1000).toFixed(3)} ms avg, ${r.lost} lost\n`,
          );
        } catch (error) {
          const message = (error as Error).message;
          path.levels.set(level, { error: message.split("\n")[0] ?? "error" });
          notes.push(`${spec.title} at -q ${level} failed: ${message.slice(0, 500)}`);
          process.stdout.write(
            `bench: ${spec.title} -q ${level}: FAILED ${message.split("\n")[0]}\n`,
          );
        } finally {
          if (sampler) clearInterval(sampler);
        }
      }
    }

    const relayCounters: string[] = [];
    for (const [name, relay] of [
      ["relay → UDP", relayUdp],
      ["relay → DoH", relayDoh],
      ["relay → DoT", relayDot],
    ] as const) {
      try {
        const text = await fetchMetrics(relay.metricsPort);
        relayCounters.push(
          `${name}: ${metricSum(text, "doh_relay_queries_total")} queries answered, ` +
            `${metricSum(text, "doh_relay_refused_total")} refused, ` +
            `${metricSum(text, "doh_relay_dropped_total")} dropped, ` +
            `${metricSum(text, "doh_relay_upstream_connections_opened_total")} upstream connections opened in the whole run ` +
            `(${metricSum(text, "doh_relay_upstream_tls_resumed_total")} TLS resumptions, ` +
            `${metricSum(text, "doh_relay_upstream_reconnects_total")} reconnects), ` +
            `${metricSum(text, "doh_relay_upstream_connections")} open at the end`,
        );
      } catch (error) {
        relayCounters.push(`${name}: /metrics unreadable: ${(error as Error).message}`);
      }
    }
    notes.push(
      "dnsperf paces itself at low concurrency: at -q 1 its queries/s is far below 1 / latency (tens or " +
        "hundreds of q/s at well under a millisecond), and at -q 1 and -q 10 its queries/s varies several-fold " +
        "from run to run and does not follow the latency (in trial runs direct UDP at -q 10 gave 1,000 q/s " +
        "once and 9,300 q/s another time). So queries/s is a throughput only at -q 50; at -q 1 and -q 10 " +
        "compare the latencies (measured per query) and the CPU per query.",
      "direct DoH measures dnsperf's DoH client as much as unbound: the relay, which speaks UDP to dnsperf " +
        "and HTTP/2 to unbound, can show a lower latency than direct DoH at -q 1.",
      "direct DoH uses GET: with dnsperf 2.10, -O doh-method=POST against unbound costs ~44 ms per query on " +
        "loopback (≈ 1100 q/s at -q 50, 230 q/s at -q 10, measured by hand), which looks like Nagle against " +
        "delayed ACK on dnsperf's separate HEADERS and DATA writes (not verified); GET answers in about a " +
        "millisecond or less. The relay's POSTs to the same unbound do not show the stall.",
    );
    notes.push(
      "Where the CPU goes: `npm run bench:profile -- --write` (bench/profile.ts) measures the relay's paths " +
        "and both Node floors in turn, round after round, with user and kernel CPU apart, then runs each " +
        "path under `node --cpu-prof` and lists its top frames; its report is bench/profiles.md, and its " +
        "header has the recipe for profiling any path by hand.",
    );
    notes.push(
      "upstream connections seen = distinct client sides of established connections to unbound's DoT or " +
        "DoH port owned by that path's process (the relay, dnsdist, or dnsperf for the direct paths), sampled " +
        "with ss every 0.2 s during the run, so a connection that lived less than that may be missed; " +
        "handshakes / 10k q is exact, from the relay's own counter " +
        "(doh_relay_upstream_connections_opened_total) before and after the run. The relay closes pooled " +
        "connections idle for 8 s (pool.idle_timeout), which the other paths' runs between two of its own " +
        "exceed, so each of its runs starts with fresh, resumed TLS sessions.",
    );

    let workersLines: string[];
    try {
      const rows = await benchWorkers({
        dir,
        dot: { port: unbound.tlsPort!, ca: certs.caFile, servername: "dns.test" },
        queryFile,
        probeName,
        seconds: SECONDS,
        poolSize: DOT_POOL_SIZE,
        maxInFlight: DOT_MAX_IN_FLIGHT,
      });
      workersLines = workersSection(rows, availableParallelism());
    } catch (error) {
      workersLines = [
        "## Workers (relay → DoT)",
        "",
        `failed: ${(error as Error).message.split("\n")[0]}`,
      ];
    }

    const statsdLines = await benchStatsd({
      dir,
      dot: { port: unbound.tlsPort!, ca: certs.caFile, servername: "dns.test" },
      queryFile,
      probeName,
      seconds: Math.min(SECONDS, 3),
    }).then(
      (rows) => statsdSection(rows, loadavg()),
      (error: Error) => [
        "## statsd cost (relay → DoT)",
        "",
        `failed: ${error.message.split("\n")[0]}`,
      ],
    );

    const footprintSection = await relayFootprint(dir);

    const doq = await benchDoq({ seconds: Math.min(SECONDS, 3), concurrency: [1, 10, 50] });
    process.stdout.write(
      `bench: DoQ ${doq.map((row) => `${row.qps.toFixed(0)} q/s at ${row.concurrency}`).join(", ")}\n`,
    );
    const doqSection = [
      "## DoQ (relay transport)",
      "",
      "bench/doq.ts: the relay's quic:// upstream (relay/src/transports/doq.ts, quiche through",
      "@matrixai/quic 1.2.12's native binding) against the test DoQ server answering from memory in",
      "another process, over one QUIC connection. dnsdist 1.7 has no DoQ client and kdig 3.2.6 sends",
      "one query per run, so there is no peer on this path.",
      "",
      "| in flight | q/s | avg ms | relay CPU ms/query |",
      "|---|---|---|---|",
      ...doq.map(
        (row) =>
          `| ${row.concurrency} | ${row.qps.toFixed(0)} | ${row.avgMs.toFixed(2)} | ${row.cpuMsPerQuery.toFixed(3)} |`,
      ),
    ];
    const doh3 = await benchDoh3({ seconds: Math.min(SECONDS, 3), concurrency: [1, 10, 50] });
    const doh3Section = [
      "## DoH3 beside DoH over HTTP/2 (relay transports)",
      "",
      "bench/doh3.ts: the relay's h3:// upstream (relay/src/transports/doh3.ts, on the same quiche link",
      "as DoQ) and its https:// upstream (doh-h2.ts, pool size 1), POST, each on one connection to the",
      "same Go server in another process (quic-go 0.29's http3 and net/http's HTTP/2 around one handler",
      "answering from memory), so the rows differ only in the HTTP version. Compare the CPU column with",
      "DoQ's above; q/s here includes the Go server's own cost.",
      "",
      ...doh3Table(doh3),
    ];
    const blocklist = await benchBlocklist();
    const compiled1m = blocklist.find((r) => r.kind === "compiled");
    process.stdout.write(
      `bench: compiled blocklist ${compiled1m?.names} names loaded in ${compiled1m?.loadMs.toFixed(0)} ms, ${compiled1m?.listedNs.toFixed(0)} ns per lookup\n`,
    );
    const blocklistSection = [
      "## Block lists at scale",
      "",
      "bench/blocklist.ts, on names shaped like real lists (one to three random labels of 3–15 letters",
      "under 1,000 parent domains): a text list of 1,000,000 hosts-format lines parsed into the suffix",
      "set, and compiled lists (`npm run blocklist -- build`) read from disk and opened in place.",
      `${(300_000).toLocaleString("en-US")} lookups of each kind; a compiled list holds its file's bytes and nothing else.`,
      "",
      ...blocklistTable(blocklist),
    ];
    const worker = await benchWorker();
    process.stdout.write(
      `bench: worker CPU over /healthz: ${worker.rows.map((r) => `${r.kind} ${r.overBaselineMs.toFixed(2)} ms`).join(", ")}\n`,
    );
    const workerSection = [
      "## Edge worker CPU per request",
      "",
      "bench/worker.ts (`npm run bench:worker`): the default deploy bundle (no Lua VM) in workerd,",
      "against the suite's DoH server and nsd; each kind of request in batches, four at a",
      "time, every kind in turn for 3 rounds, against `/healthz` in the same rounds; each figure is",
      'the median of its rounds ("over /healthz" pairs each round with that round\'s /healthz).',
      "",
      ...workerTable(worker),
    ];
    const lua = await benchLuaPolicy();
    process.stdout.write(
      `bench: Lua handle() ${lua.rows[0]?.relayUs.toFixed(1)} µs per call on the relay, ${lua.rows[0]?.workerUs.toFixed(1)} µs in the worker\n`,
    );
    const luaSection = luaPolicySection(lua);
    const elapsed = (Date.now() - started) / 1000;
    const load1 = loadavg();
    const report = renderReport({
      facts: [
        ["date (UTC)", startedAt],
        ["CPUs (nproc)", `${availableParallelism()} × ${cpus()[0]?.model ?? "?"}`],
        ["load average (1/5/15 min) at start", load0.map((l) => l.toFixed(2)).join(" / ")],
        ["load average at end", load1.map((l) => l.toFixed(2)).join(" / ")],
        ["node", process.version],
        ["dnsperf", version("dnsperf", ["-h"])],
        ["unbound", version("unbound", ["-V"])],
        ["dnsdist", version("dnsdist", ["--version"])],
        ["nsd", version("nsd", ["-v"])],
        ["bench run time", `${elapsed.toFixed(0)} s`],
      ],
      settings: [
        `dnsperf: one client (-c 1 -T 1), -l ${SECONDS} s per run, -q 1/10/50 outstanding, -Q ${MAX_QPS} cap, -t 2 s timeout`,
        `queries: ${HOSTS * 2} names (A and AAAA of ${HOSTS} hosts in ${ZONE_NAME}, served by nsd), cycled; unbound's cache is filled first, so unbound answers from cache`,
        "unbound 1 thread; dnsdist 1.7 defaults, no packet cache; relay as a child process (node relay/src/cli.ts), cache size 0, rate_limit qps 0 and max_in_flight 0 (unlimited), log level warn; the Node floor (bench/node-floor.ts) as a child process on the same Node",
        "DoH: unbound https-port with a throwaway CA (createTestCertificates); dnsperf -m doh sends GET on one HTTP/2 connection; the relay's https upstream POSTs (its default) with ca + tls_servername dns.test",
        "order: level by level, every path in turn, after a 3 s cache fill and a 1 s warm-up per path",
        "hop CPU = user+system CPU of the relay or dnsdist process during the run, per 1000 completed queries (from /proc); the same for unbound",
      ],
      paths,
      levels: LEVELS,
      qpsLevels: [50],
      ratios: [
        { title: "relay UDP / direct UDP", numerator: "relay-udp", denominator: "direct-udp" },
        { title: "relay UDP / dnsdist UDP", numerator: "relay-udp", denominator: "dnsdist-udp" },
        { title: "dnsdist UDP / direct UDP", numerator: "dnsdist-udp", denominator: "direct-udp" },
        { title: "relay DoH / direct DoH", numerator: "relay-doh", denominator: "direct-doh" },
        { title: "relay DoT / dnsdist DoT", numerator: "relay-dot", denominator: "dnsdist-dot" },
        { title: "relay DoT / direct DoT", numerator: "relay-dot", denominator: "direct-dot" },
        { title: "dnsdist DoT / direct DoT", numerator: "dnsdist-dot", denominator: "direct-dot" },
        { title: "relay DoT / Node floor DoT", numerator: "relay-dot", denominator: "floor-dot" },
        {
          title: "Node floor DoT / dnsdist DoT",
          numerator: "floor-dot",
          denominator: "dnsdist-dot",
        },
        { title: "relay UDP / Node floor UDP", numerator: "relay-udp", denominator: "floor-udp" },
        { title: "relay DoH / relay DoT", numerator: "relay-doh", denominator: "relay-dot" },
      ],
      cpuRatios: [
        { title: "relay DoH / relay DoT", numerator: "relay-doh", denominator: "relay-dot" },
        { title: "relay UDP / Node floor UDP", numerator: "relay-udp", denominator: "floor-udp" },
        { title: "relay DoT / Node floor DoT", numerator: "relay-dot", denominator: "floor-dot" },
        { title: "relay UDP / dnsdist UDP", numerator: "relay-udp", denominator: "dnsdist-udp" },
        { title: "relay DoT / dnsdist DoT", numerator: "relay-dot", denominator: "dnsdist-dot" },
      ],
      relayCounters,
      sections: [
        footprintSection,
        workersLines,
        statsdLines,
        doqSection,
        doh3Section,
        blocklistSection,
        workerSection,
        luaSection,
      ],
      notes,
    });
    await writeFile(RESULTS, report);
    await writeFile(QPS_CHART, qpsChart(paths, LEVELS));
    await writeFile(LATENCY_CHART, latencyChart(paths, LEVELS));
    process.stdout.write(
      `\n${report.slice(report.indexOf("## Ratios"), report.indexOf("## Paths"))}`,
    );
    process.stdout.write(`bench: wrote ${RESULTS} in ${elapsed.toFixed(0)} s\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  } finally {
    await cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

main().then((code) => {
  process.exitCode = code;
});
