// What metrics.statsd costs the query path: the relay's UDP → DoT path under
// dnsperf with statsd off, with a live collector (a UDP socket in this
// process counting what arrives), and with a dead one (a closed port: every
// flush comes back as ICMP port-unreachable), one after the other in one
// run. The interval is 1 s, ten times the default, so a run holds several
// flushes. `npm run bench` includes it; `node bench/statsd.ts` runs only
// this part (BENCH_SECONDS sets each run's length).

import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import {
  createTestCertificates,
  freePort,
  startNsd,
  startUnbound,
} from "../test/support/dns-servers.ts";
import { dnsperf } from "./dnsperf.ts";
import { cpuSeconds } from "./processes.ts";
import { startRelayProcess } from "./servers.ts";

export interface StatsdRow {
  title: string;
  qps: number;
  avgMs: number;
  lost: number;
  /** Relay CPU µs per completed query. */
  cpuUsPerQuery: number | undefined;
  /** Packets and bytes the collector received (live only). */
  packets?: number;
  bytes?: number;
}

export interface StatsdBenchOptions {
  dir: string;
  dot: { port: number; ca: string; servername: string };
  queryFile: string;
  probeName: string;
  seconds: number;
}

const OUTSTANDING = 50;
const CLIENTS = 8;
const INTERVAL = "1s";
/** Each variant runs this many times, interleaved; the table shows medians. */
const ROUNDS = 3;

/** A UDP socket on 127.0.0.1 counting packets and bytes. */
async function startCounter() {
  const socket = createSocket("udp4");
  const seen = { packets: 0, bytes: 0 };
  socket.on("message", (msg) => {
    seen.packets++;
    seen.bytes += msg.length;
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    port: socket.address().port,
    seen,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

interface Variant {
  title: string;
  statsdPort: number | undefined;
}

const median = (values: number[]) => {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

type RelayProcess = Awaited<ReturnType<typeof startRelayProcess>>;

function startVariant(options: StatsdBenchOptions, i: number, statsdPort: number | undefined) {
  const statsd = { addr: `127.0.0.1:${statsdPort}`, interval: INTERVAL };
  return startRelayProcess({
    dir: options.dir,
    name: `statsd-${i}`,
    upstream: {
      url: `tls://127.0.0.1:${options.dot.port}`,
      ca: options.dot.ca,
      tls_servername: options.dot.servername,
      pool: { size: 2, max_in_flight: 100 },
    },
    probeName: options.probeName,
    ...(statsdPort === undefined ? {} : { extra: { metrics: { statsd } } }),
  });
}

interface Samples {
  qps: number[];
  avgMs: number[];
  cpu: number[];
  lost: number;
}

/** dnsperf against each relay in turn, ROUNDS times (a warm-up first). */
async function measure(options: StatsdBenchOptions, relays: RelayProcess[]): Promise<Samples[]> {
  const samples: Samples[] = relays.map(() => ({ qps: [], avgMs: [], cpu: [], lost: 0 }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, relay] of relays.entries()) {
      const run = {
        target: { port: relay.port },
        queryFile: options.queryFile,
        outstanding: OUTSTANDING,
        maxQps: 200_000,
        clients: CLIENTS,
      };
      if (round === 0) await dnsperf({ ...run, seconds: 1 }); // warm-up: JIT, pools
      const cpu0 = cpuSeconds(relay.proc.child.pid);
      const r = await dnsperf({ ...run, seconds: options.seconds });
      const cpu1 = cpuSeconds(relay.proc.child.pid);
      const s = samples[i]!;
      s.qps.push(r.qps);
      s.avgMs.push(r.avgLatency * 1000);
      s.lost += r.lost;
      if (cpu0 !== undefined && cpu1 !== undefined && r.completed > 0) {
        s.cpu.push(((cpu1 - cpu0) * 1e6) / r.completed);
      }
    }
  }
  return samples;
}

/** One relay process per variant, all up at once; dnsperf visits them in turn. */
export async function benchStatsd(options: StatsdBenchOptions): Promise<StatsdRow[]> {
  const collector = await startCounter();
  const variants: Variant[] = [
    { title: "off", statsdPort: undefined },
    { title: "live collector", statsdPort: collector.port },
    { title: "dead collector", statsdPort: await freePort() },
  ];
  const relays: RelayProcess[] = [];
  try {
    for (const [i, variant] of variants.entries()) {
      relays.push(await startVariant(options, i, variant.statsdPort));
    }
    const samples = await measure(options, relays);
    const rows: StatsdRow[] = variants.map((variant, i) => {
      const s = samples[i]!;
      return {
        title: variant.title,
        qps: median(s.qps),
        avgMs: median(s.avgMs),
        lost: s.lost,
        cpuUsPerQuery: s.cpu.length > 0 ? median(s.cpu) : undefined,
        ...(variant.statsdPort === collector.port ? collector.seen : {}),
      };
    });
    for (const row of rows) {
      process.stdout.write(
        `bench: statsd ${row.title.padEnd(15)}: ${row.qps.toFixed(0).padStart(6)} q/s, ${row.avgMs.toFixed(3)} ms avg, ${row.lost} lost, ${row.cpuUsPerQuery?.toFixed(1) ?? "?"} µs CPU/query\n`,
      );
    }
    return rows;
  } finally {
    for (const relay of relays) await relay.proc.stop();
    await collector.close();
  }
}

export function statsdSection(rows: StatsdRow[], load: readonly number[]): string[] {
  const off = rows[0];
  return [
    "## statsd cost (relay → DoT)",
    "",
    `bench/statsd.ts: dnsperf (-c ${CLIENTS}, -q ${OUTSTANDING}) → the relay over UDP → unbound's DoT listener, with`,
    `metrics.statsd off, sending to a live collector, and sending to a closed port, \`interval: ${INTERVAL}\`;`,
    `three relay processes up at once, visited in turn ${ROUNDS} times; medians of the runs. Packets and bytes`,
    "are everything the live collector received, warm-up included. q/s moves with whatever else the",
    `machine runs (1-minute load average ${load[0]?.toFixed(1)} at the end); CPU per query is the steadier figure.`,
    "",
    "| statsd | q/s | vs off | avg ms | lost | relay CPU µs / query | packets (bytes) received |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((row) => {
      const ratio = off ? `${(row.qps / off.qps).toFixed(2)}×` : "–";
      const cpu = row.cpuUsPerQuery === undefined ? "–" : row.cpuUsPerQuery.toFixed(1);
      const got = row.packets === undefined ? "–" : `${row.packets} (${row.bytes})`;
      return `| ${row.title} | ${row.qps.toFixed(0)} | ${ratio} | ${row.avgMs.toFixed(3)} | ${row.lost} | ${cpu} | ${got} |`;
    }),
  ];
}

if (import.meta.main) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 6);
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-bench-statsd-"));
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
    const rows = await benchStatsd({
      dir,
      dot: { port: unbound.tlsPort!, ca: certs.caFile, servername: "dns.test" },
      queryFile,
      probeName: `h0.${zone}`,
      seconds,
    });
    process.stdout.write(`\n${statsdSection(rows, loadavg()).join("\n")}\n`);
  } finally {
    await unbound.stop();
    await nsd.stop();
    await rm(certs.dir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}
