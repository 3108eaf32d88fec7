// How unbound's DoT listener answers pipelined queries: one TLS connection
// from this process, bursts of `depth` queries written at once, the next
// burst when every answer of the last one is in. Per depth, 2 s or 2,000
// queries, whichever ends first; latency percentiles per query. unbound 1.17
// holds the second and later answers of a burst about 44 ms (the shape of
// Nagle on its side meeting our delayed ACK), which is why a pool of
// connections with `max_in_flight: 1` serves it faster than pipelining.
//
//   node bench/dot-pipelining.ts [--depths 1,2,5,10]

import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { connect } from "node:tls";
import { parseArgs } from "node:util";
import { createFrameReader, frameMessage } from "../shared/dns/framing.ts";
import { buildQuery } from "../shared/dns/query.ts";
import { createTestCertificates, startNsd, startUnbound } from "../test/support/dns-servers.ts";

const { values: args } = parseArgs({
  options: { depths: { type: "string", default: "1,2,5,10" } },
});
const HOSTS = 50;
const SECONDS = 2;
const MAX_QUERIES = 2000;

const zone = [
  "$ORIGIN bench.test.",
  "$TTL 3600",
  "@ SOA ns1 host 1 3600 600 86400 60",
  "@ NS ns1",
  "ns1 A 127.0.0.1",
  ...Array.from({ length: HOSTS }, (_, i) => `h${i} A 10.0.0.${i}`),
  "",
].join("\n");

const certs = await createTestCertificates();
const nsd = await startNsd({ zones: { "bench.test.": zone } });
const unbound = await startUnbound({ stubs: { "bench.test.": nsd.port }, tls: certs });
try {
  const socket = connect({
    host: "127.0.0.1",
    port: unbound.tlsPort!,
    servername: "dns.test",
    ca: readFileSync(certs.caFile, "utf8"),
  });
  socket.setNoDelay(true);
  await new Promise((ready) => socket.once("secureConnect", ready));
  const reader = createFrameReader();
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  let allIn: (() => void) | undefined;
  socket.on("data", (chunk: Buffer) => {
    for (const answer of reader.push(chunk)) {
      const id = (answer[0]! << 8) | answer[1]!;
      latencies.push(performance.now() - sentAt.get(id)!);
      sentAt.delete(id);
      if (sentAt.size === 0) allIn?.();
    }
  });
  let nextId = 0;
  /** One burst of `depth` queries in one write; resolves when every answer is in. */
  const burst = (depth: number) => {
    const done = new Promise<void>((resolve) => {
      allIn = resolve;
    });
    socket.cork();
    for (let i = 0; i < depth; i++) {
      const id = nextId++ & 0xffff;
      sentAt.set(id, performance.now());
      socket.write(frameMessage(buildQuery(`h${id % HOSTS}.bench.test.`, 1, { id })));
    }
    socket.uncork();
    return done;
  };
  await burst(HOSTS); // unbound's cache filled
  for (const depth of args.depths.split(",").map(Number)) {
    latencies.length = 0;
    const started = performance.now();
    let sent = 0;
    while (sent < MAX_QUERIES && performance.now() - started < SECONDS * 1000) {
      await burst(depth);
      sent += depth;
    }
    const ms = performance.now() - started;
    const sorted = latencies.toSorted((a, b) => a - b);
    const at = (p: number) => sorted[Math.floor((sorted.length - 1) * p)]!.toFixed(2);
    process.stdout.write(
      `depth ${depth}: ${((sent / ms) * 1000).toFixed(0)} q/s, latency p50 ${at(0.5)} p90 ${at(0.9)} max ${at(1)} ms\n`,
    );
  }
  socket.destroy();
} finally {
  await unbound.stop();
  await nsd.stop();
  await rm(certs.dir, { recursive: true, force: true });
}
