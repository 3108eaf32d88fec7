// The relay's DoT and DoH transports alone, in this process: 50 queries in
// flight against unbound (answering from cache), and this process's CPU per
// query. No relay engine, no dnsperf, no UDP legs: what each transport's
// client side costs, for bench/profile.ts. DoH runs through the relay's own
// HTTP/2 client and through Node's http2 module (h2/node-driver.ts).

import { readFile } from "node:fs/promises";
import { createDohH2Upstream } from "../relay/src/transports/doh-h2.ts";
import { createNodeH2Driver } from "../relay/src/transports/h2/node-driver.ts";
import { createStreamPool } from "../relay/src/transports/stream-pool.ts";
import { buildQuery } from "../shared/dns/query.ts";
import type { Upstream } from "../shared/engine/upstream.ts";

export interface TransportTarget {
  dotPort: number;
  dohPort: number;
  caFile: string;
  /** Names the zone answers, e.g. "h0.bench.test." … */
  names: string[];
}

const KINDS = [
  "DoT pool",
  "DoH POST (own client)",
  "DoH GET (own client)",
  "DoH POST (node:http2)",
  "DoH GET (node:http2)",
] as const;

function make(kind: (typeof KINDS)[number], target: TransportTarget, ca: string): Upstream {
  const tls = { servername: "dns.test", ca };
  if (kind === "DoT pool") {
    return createStreamPool({
      name: "dot",
      host: "127.0.0.1",
      port: target.dotPort,
      tls,
      size: 1,
      maxInFlight: 100,
      idleTimeoutMs: 5000,
      maxRetries: 1,
      connectTimeoutMs: 2000,
      handshakeTimeoutMs: 2000,
    });
  }
  const options = {
    name: "doh",
    origin: `https://127.0.0.1:${target.dohPort}`,
    path: "/dns-query",
    method: kind.includes("GET") ? "GET" : "POST",
    poolSize: 1,
    maxInFlight: 100,
    idleTimeoutMs: 5000,
    connectTimeoutMs: 2000,
    tls,
  } as const;
  return createDohH2Upstream(
    options,
    kind.includes("node:http2") ? createNodeH2Driver(options) : undefined,
  );
}

async function run(upstream: Upstream, queries: Uint8Array[], total: number) {
  await upstream.query(queries[0]!, new AbortController().signal);
  let sent = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async () => {
    while (sent < total) {
      await upstream.query(queries[sent++ % queries.length]!, new AbortController().signal);
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
  const cpu = process.cpuUsage(cpu0);
  const ms = performance.now() - t0;
  await upstream.close();
  return { seconds: ms / 1000, cpuUs: cpu.user + cpu.system };
}

/** Rounds of `total` queries per transport, in turn; the table's lines. */
export async function transportCpu(
  target: TransportTarget,
  rounds: number,
  total = 20_000,
): Promise<string[]> {
  const ca = await readFile(target.caFile, "utf8");
  const queries = target.names.map((name, i) => buildQuery(name, 1, { id: i }));
  const sums = new Map<string, { seconds: number; cpuUs: number; queries: number }>();
  for (let round = 0; round < rounds; round++) {
    for (const kind of KINDS) {
      const r = await run(make(kind, target, ca), queries, total);
      const sum = sums.get(kind) ?? { seconds: 0, cpuUs: 0, queries: 0 };
      sums.set(kind, {
        seconds: sum.seconds + r.seconds,
        cpuUs: sum.cpuUs + r.cpuUs,
        queries: sum.queries + total,
      });
    }
  }
  const dot = sums.get("DoT pool")!;
  const dotPerQ = dot.cpuUs / dot.queries;
  return [
    "| transport (in-process, 50 in flight) | queries/s | CPU µs / query | vs DoT pool |",
    "|---|---|---|---|",
    ...KINDS.map((kind) => {
      const s = sums.get(kind)!;
      const perQ = s.cpuUs / s.queries;
      return `| ${kind} | ${(s.queries / s.seconds).toFixed(0)} | ${perQ.toFixed(1)} | ${(perQ / dotPerQ).toFixed(2)} |`;
    }),
  ];
}
