// The relay's UDP → DoT path with workers: 1 and workers: 2, one after the
// other in one run, under dnsperf at -q 50 from several client sockets (the
// kernel spreads SO_REUSEPORT traffic by source address and port; one socket
// would all go to one worker). Twice: on this Node, where each worker binds
// its own SO_REUSEPORT socket, and as the release bundle under the machine's
// own Node when that one cannot (Node 20: the workers share one socket).
// `npm run bench` includes it; `node bench/workers.ts` runs only this part
// (BENCH_SECONDS sets each run's length).

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { buildRelay } from "../scripts/build-relay.ts";
import { createTestCertificates, startNsd, startUnbound } from "../test/support/dns-servers.ts";
import { machineNode } from "../test/support/release-relay.ts";
import { dnsperf } from "./dnsperf.ts";
import { treeCpuSeconds } from "./processes.ts";
import { startRelayProcess } from "./servers.ts";

export interface WorkersRow {
  title: string;
  qps: number;
  avgMs: number;
  lost: number;
  /** CPU ms of the relay (primary and workers) per 1000 completed queries. */
  cpuPer1k: number | undefined;
}

export interface WorkersBenchOptions {
  dir: string;
  /** unbound's DoT port and the CA and name its certificate verifies with. */
  dot: { port: number; ca: string; servername: string };
  queryFile: string;
  probeName: string;
  seconds: number;
  poolSize: number;
  maxInFlight: number;
}

const OUTSTANDING = 50;
const CLIENTS = 8;

interface Variant {
  title: string;
  workers: number;
  command?: { node: string; entry: string };
}

/** The machine's own `node` (what a LAN host runs), if it differs from ours. */
function otherMachineNode(): { path: string; version: string } | undefined {
  const node = machineNode();
  return node.version === process.versions.node ? undefined : node;
}

async function variants(dir: string): Promise<Variant[]> {
  const here = `Node ${process.versions.node}`;
  const list: Variant[] = [
    { title: `workers: 1 (${here})`, workers: 1 },
    { title: `workers: 2 (${here})`, workers: 2 },
  ];
  const other = otherMachineNode();
  if (other) {
    const entry = join(dir, "doh-relay.mjs");
    await buildRelay(entry);
    const command = { node: other.path, entry };
    list.push(
      { title: `workers: 1 (bundle, Node ${other.version})`, workers: 1, command },
      { title: `workers: 2 (bundle, Node ${other.version})`, workers: 2, command },
    );
  }
  return list;
}

export async function benchWorkers(options: WorkersBenchOptions): Promise<WorkersRow[]> {
  const rows: WorkersRow[] = [];
  for (const [i, variant] of (await variants(options.dir)).entries()) {
    const relay = await startRelayProcess({
      dir: options.dir,
      name: `dot-workers-${i}`,
      upstream: {
        url: `tls://127.0.0.1:${options.dot.port}`,
        ca: options.dot.ca,
        tls_servername: options.dot.servername,
        pool: { size: options.poolSize, max_in_flight: options.maxInFlight },
      },
      probeName: options.probeName,
      workers: variant.workers,
      ...(variant.command ? { command: variant.command } : {}),
    });
    try {
      const run = {
        target: { port: relay.port },
        queryFile: options.queryFile,
        outstanding: OUTSTANDING,
        maxQps: 200_000,
        clients: CLIENTS,
      };
      await dnsperf({ ...run, seconds: 1 }); // warm-up: JIT, pools
      const cpu0 = treeCpuSeconds(relay.proc.child.pid);
      const r = await dnsperf({ ...run, seconds: options.seconds });
      const cpu1 = treeCpuSeconds(relay.proc.child.pid);
      rows.push({
        title: variant.title,
        qps: r.qps,
        avgMs: r.avgLatency * 1000,
        lost: r.lost,
        cpuPer1k:
          cpu0 === undefined || cpu1 === undefined || r.completed === 0
            ? undefined
            : ((cpu1 - cpu0) * 1_000_000) / r.completed,
      });
      process.stdout.write(
        `bench: relay → DoT, ${variant.title.padEnd(34)}: ${r.qps.toFixed(0).padStart(6)} q/s, ${(r.avgLatency * 1000).toFixed(3)} ms avg, ${r.lost} lost\n`,
      );
    } finally {
      await relay.proc.stop();
    }
  }
  return rows;
}

/** The report section: a table, each workers: 2 row against the workers: 1 row above it. */
export function workersSection(rows: WorkersRow[], cores: number): string[] {
  return [
    "## Workers (relay → DoT)",
    "",
    `bench/workers.ts: dnsperf (-c ${CLIENTS} client sockets, -q ${OUTSTANDING}) → the relay over UDP → unbound's DoT`,
    "listener, with workers: 1 and then 2. On a Node with SO_REUSEPORT (22.12 / 23.1+) each worker binds",
    "its own UDP socket; the release bundle under Node 20 shares one socket between its workers. Each",
    "worker has its own DoT pool, so two workers hold twice the connections. All of it (dnsperf,",
    `unbound, every relay process) shares ${cores} cores.`,
    "",
    "| relay | q/s | vs workers: 1 | avg ms | lost | relay CPU ms / 1000 q |",
    "|---|---|---|---|---|---|",
    ...rows.map((row, i) => {
      const base = i % 2 === 1 ? rows[i - 1]?.qps : row.qps;
      const ratio = base ? `${(row.qps / base).toFixed(2)}×` : "–";
      const cpu = row.cpuPer1k === undefined ? "–" : row.cpuPer1k.toFixed(0);
      return `| ${row.title} | ${row.qps.toFixed(0)} | ${ratio} | ${row.avgMs.toFixed(3)} | ${row.lost} | ${cpu} |`;
    }),
  ];
}

if (import.meta.main) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 6);
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-bench-workers-"));
  const certs = await createTestCertificates();
  const zone = "bench.test.";
  const hosts = Array.from({ length: 200 }, (_, i) => `h${i} IN A 192.0.2.${i % 250}`).join("\n");
  const nsd = await startNsd({
    zones: {
      [zone]: `$ORIGIN ${zone}\n$TTL 300\n@ IN SOA ns admin 1 3600 600 86400 300\n@ IN NS ns\nns IN A 127.0.0.1\n${hosts}\n`,
    },
  });
  const unbound = await startUnbound({ stubs: { [zone]: nsd.port }, tls: certs });
  try {
    const queryFile = join(dir, "queries.txt");
    await writeFile(queryFile, Array.from({ length: 200 }, (_, i) => `h${i}.${zone} A`).join("\n"));
    const rows = await benchWorkers({
      dir,
      dot: { port: unbound.tlsPort!, ca: certs.caFile, servername: "dns.test" },
      queryFile,
      probeName: `h0.${zone}`,
      seconds,
      poolSize: 2,
      maxInFlight: 100,
    });
    process.stdout.write(`\n${workersSection(rows, availableParallelism()).join("\n")}\n`);
  } finally {
    await unbound.stop();
    await nsd.stop();
    await rm(certs.dir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}
