// The relay's DoH3 upstream (relay/src/transports/doh3.ts) beside its HTTP/2
// DoH upstream (doh-h2.ts), both against the same server in another process:
// test/support/h3-doh-server (Go: quic-go's http3 for HTTP/3, net/http for
// HTTP/2, one handler answering from memory), so the two rows differ only in
// the HTTP version. One connection each (h2 pool size 1), POST. For each
// concurrency level, queries run for `seconds` or up to a count, whichever
// ends first. Run from bench/run.ts, or alone: `node bench/doh3.ts [seconds]`.

import { readFile, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { createDohH2Upstream } from "../relay/src/transports/doh-h2.ts";
import { createDoh3Upstream } from "../relay/src/transports/doh3.ts";
import { buildQuery } from "../shared/dns/query.ts";
import type { Upstream } from "../shared/engine/upstream.ts";
import { createTestCertificates } from "../test/support/dns-servers.ts";
import { startH3DohServer } from "../test/support/h3-doh-server.ts";

export interface DohVersionBenchRow {
  transport: "DoH3 (h3://)" | "DoH over HTTP/2 (https://)";
  concurrency: number;
  qps: number;
  avgMs: number;
  /** The relay side's CPU time (user + system) per query. */
  cpuMsPerQuery: number;
}

const MAX_QUERIES = 200_000;
const WARMUP_QUERIES = 200;

async function measure(
  upstream: Upstream,
  seconds: number,
  concurrency: number,
): Promise<Omit<DohVersionBenchRow, "transport">> {
  const query = buildQuery("bench.doh3.test", 1, { id: 4242 });
  const ask = () => upstream.query(query, AbortSignal.timeout(5000));
  const deadline = performance.now() + seconds * 1000;
  let started = 0;
  let latencyMs = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < MAX_QUERIES && performance.now() < deadline) {
        started++;
        const t = performance.now();
        await ask();
        latencyMs += performance.now() - t;
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    concurrency,
    qps: started / elapsed,
    avgMs: latencyMs / started,
    cpuMsPerQuery: (cpu.user + cpu.system) / 1000 / started,
  };
}

export async function benchDoh3(opts: {
  seconds: number;
  concurrency: number[];
}): Promise<DohVersionBenchRow[]> {
  const certs = await createTestCertificates();
  const server = await startH3DohServer({
    certFile: certs.certFile,
    keyFile: certs.keyFile,
    h2: true,
  });
  const ca = await readFile(certs.caFile, "utf8");
  const maxInFlight = Math.max(...opts.concurrency, 1);
  const common = { connectTimeoutMs: 2000, idleTimeoutMs: 30_000, maxRetries: 1, maxInFlight };
  const subjects: [DohVersionBenchRow["transport"], Upstream][] = [
    [
      "DoH3 (h3://)",
      createDoh3Upstream({
        name: "doh3-bench",
        host: "127.0.0.1",
        port: server.port,
        path: "/dns-query",
        method: "POST",
        servername: "dns.test",
        ca,
        handshakeTimeoutMs: 2000,
        ...common,
      }),
    ],
    [
      "DoH over HTTP/2 (https://)",
      createDohH2Upstream({
        name: "h2-bench",
        origin: `https://127.0.0.1:${server.h2Port}`,
        path: "/dns-query",
        method: "POST",
        poolSize: 1,
        tls: { servername: "dns.test", ca },
        ...common,
      }),
    ],
  ];
  const rows: DohVersionBenchRow[] = [];
  try {
    for (const [transport, upstream] of subjects) {
      const query = buildQuery("warmup.doh3.test", 1);
      for (let i = 0; i < WARMUP_QUERIES; i++)
        await upstream.query(query, AbortSignal.timeout(5000));
      for (const concurrency of opts.concurrency) {
        rows.push({ transport, ...(await measure(upstream, opts.seconds, concurrency)) });
      }
    }
    return rows;
  } finally {
    await Promise.all(subjects.map(([, upstream]) => upstream.close()));
    await server.stop();
    await rm(certs.dir, { recursive: true, force: true });
  }
}

export function doh3Table(rows: readonly DohVersionBenchRow[]): string[] {
  return [
    "| transport | in flight | q/s | avg ms | relay CPU ms/query |",
    "|---|---|---|---|---|",
    ...rows.map(
      (row) =>
        `| ${row.transport} | ${row.concurrency} | ${row.qps.toFixed(0)} | ${row.avgMs.toFixed(2)} | ${row.cpuMsPerQuery.toFixed(3)} |`,
    ),
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const seconds = Number(process.argv[2] ?? 3);
  const rows = await benchDoh3({ seconds, concurrency: [1, 10, 50] });
  process.stdout.write(`${doh3Table(rows).join("\n")}\n`);
}
