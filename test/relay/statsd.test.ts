// metrics.statsd end to end: a relay in process with real nsd behind it,
// real queries in front, and a UDP collector in the test reading the
// packets. Flushes are driven by a manual clock, so nothing sleeps for the
// interval. The statsd values must match the relay's own /metrics.

import { createSocket, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../relay/src/log.ts";
import { createRelayMetrics, familyTotal } from "../../relay/src/metrics.ts";
import { type Relay, startRelay } from "../../relay/src/relay.ts";
import { createStatsdReporter } from "../../relay/src/statsd/reporter.ts";
import type { StatsdSinkStats } from "../../relay/src/statsd/sink.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readRcode } from "../../shared/dns/wire.ts";
import { createManualClock, type ManualClock } from "../../shared/engine/manual-clock.ts";
import type { PoolStats } from "../../shared/engine/upstream.ts";
import { freePort, type RunningServer, startNsd } from "../support/dns-servers.ts";
import { ephemeralConfig, portOf, tcpPipeline, udpFrom, ZONE } from "./relay-harness.ts";

interface Collector {
  port: number;
  packets: string[];
  /** Waits until `predicate` holds for the packets received (or fails after 3 s). */
  until(predicate: (lines: string[]) => boolean): Promise<string[]>;
  close(): Promise<void>;
}

async function startCollector(port = 0): Promise<Collector> {
  const socket: Socket = createSocket("udp4");
  const packets: string[] = [];
  socket.on("message", (msg) => packets.push(msg.toString("utf8")));
  await new Promise<void>((resolve) => socket.bind(port, "127.0.0.1", resolve));
  const lines = () => packets.flatMap((p) => p.split("\n"));
  return {
    port: socket.address().port,
    packets,
    async until(predicate) {
      const deadline = Date.now() + 3000;
      while (!predicate(lines())) {
        if (Date.now() > deadline) throw new Error(`collector got:\n${lines().join("\n")}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return lines();
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** The value of the one line `name:<value>|<type>` (undefined when absent). */
function sent(lines: string[], name: string, type: "c" | "g"): number | undefined {
  const found = lines.filter((l) => l.startsWith(`${name}:`) && l.endsWith(`|${type}`));
  if (found.length > 1) throw new Error(`${name} sent ${found.length} times`);
  const line = found[0];
  return line === undefined ? undefined : Number(line.slice(name.length + 1, -2));
}

async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const timerLines = (lines: string[], name: string) =>
  lines.filter((l) => l.startsWith(`${name}:`) && /\|ms(\|@[\d.]+)?$/.test(l));

let nsd: RunningServer;
let deadUpstreamPort: number;

beforeAll(async () => {
  [nsd, deadUpstreamPort] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    freePort(),
  ]);
});

afterAll(async () => {
  await nsd?.stop();
});

function relayConfig(statsd: Record<string, unknown>) {
  return ephemeralConfig({
    listen: { udp: "127.0.0.1:5053", tcp: "127.0.0.1:5053", metrics: "127.0.0.1:9153" },
    allow: ["127.0.0.1/32"],
    upstreams: [
      // tcp:// is pooled: its connections show up as pool series.
      { name: "nsd.tcp", url: `tcp://127.0.0.1:${nsd.port}` },
      { name: "dead", url: `udp://127.0.0.1:${deadUpstreamPort}` },
    ],
    routes: [
      { zones: ["."], upstreams: ["nsd.tcp"], timeout: "2s" },
      { zones: ["dead.test."], upstreams: ["dead"], timeout: "300ms" },
    ],
    metrics: { statsd },
  });
}

async function startWith(
  statsd: Record<string, unknown>,
  clock: ManualClock,
  logLines: string[] = [],
): Promise<Relay> {
  return startRelay(
    relayConfig(statsd),
    createLogger("warn", (line) => logLines.push(line)),
    { statsdClock: clock },
  );
}

const query = (name: string, id: number) => buildQuery(name, 1, { id });

describe("statsd reporting", () => {
  it("sends per-listener and per-upstream series that match /metrics", async () => {
    const collector = await startCollector();
    const clock = createManualClock();
    const relay = await startWith({ addr: `127.0.0.1:${collector.port}` }, clock);
    try {
      const udp = portOf(relay, "udp");
      for (let i = 0; i < 5; i++) {
        const answer = await udpFrom("127.0.0.1", udp, query("www.relay.test", i + 1));
        expect(answer && readRcode(answer)).toBe(Rcode.NOERROR);
      }
      const nx = await udpFrom("127.0.0.1", udp, query("nope.relay.test", 9));
      expect(nx && readRcode(nx)).toBe(Rcode.NXDOMAIN);
      const failed = await udpFrom("127.0.0.1", udp, query("x.dead.test", 10));
      expect(failed && readRcode(failed)).toBe(Rcode.SERVFAIL);
      const tcp = portOf(relay, "tcp");
      const answers = await tcpPipeline(
        tcp,
        [1, 2, 3].map((id) => query("www.relay.test", id)),
      );
      expect(answers).toHaveLength(3);

      // The relay sees the TCP client go away a moment after the client closes.
      await until(async () =>
        (await relay.ops.metrics()).includes('doh_relay_connections{listener="tcp"} 0'),
      );
      clock.advance(10_000);
      const lines = await collector.until((l) =>
        l.some((x) => x.startsWith("doh_relay.listener.tcp.cx_close")),
      );
      for (const packet of collector.packets)
        expect(Buffer.byteLength(packet)).toBeLessThanOrEqual(1432);

      // Listeners: queries, rcodes, one latency sample per query, connections.
      expect(sent(lines, "doh_relay.listener.udp.queries", "c")).toBe(7);
      expect(sent(lines, "doh_relay.listener.udp.rcode.NOERROR", "c")).toBe(5);
      expect(sent(lines, "doh_relay.listener.udp.rcode.NXDOMAIN", "c")).toBe(1);
      expect(sent(lines, "doh_relay.listener.udp.rcode.SERVFAIL", "c")).toBe(1);
      expect(timerLines(lines, "doh_relay.listener.udp.latency")).toHaveLength(7);
      expect(sent(lines, "doh_relay.listener.tcp.queries", "c")).toBe(3);
      expect(sent(lines, "doh_relay.listener.tcp.cx_open", "c")).toBe(1);
      expect(sent(lines, "doh_relay.listener.tcp.cx_close", "c")).toBe(1);
      expect(sent(lines, "doh_relay.listener.tcp.connections", "g")).toBe(0);
      expect(sent(lines, "doh_relay.in_flight", "g")).toBe(0);

      // Upstreams: the same numbers the Prometheus text has ("." in a name becomes "_").
      const prom = await relay.ops.metrics();
      const u = "doh_relay.upstream.nsd_tcp";
      expect(sent(lines, `${u}.requests`, "c")).toBe(9);
      expect(sent(lines, `${u}.successes`, "c")).toBe(9);
      expect(sent(lines, `${u}.wins`, "c")).toBe(9);
      expect(sent(lines, `${u}.rcode.NOERROR`, "c")).toBe(8);
      expect(sent(lines, `${u}.rcode.NXDOMAIN`, "c")).toBe(1);
      expect(timerLines(lines, `${u}.latency`)).toHaveLength(9);
      expect(familyTotal(prom, "response_success_count_total")).toBe(9);
      // Pool series: what /statusz says of the pool (the pipelined TCP queries may open a second connection).
      const pool = (relay.ops.status() as { pools: Record<string, PoolStats> }).pools["nsd.tcp"];
      expect(pool?.opened).toBeGreaterThanOrEqual(1);
      expect(sent(lines, `${u}.pool.cx_open`, "c")).toBe(pool?.opened);
      expect(sent(lines, `${u}.pool.connections`, "g")).toBe(pool?.open);
      expect(sent(lines, `${u}.pool.in_flight`, "g")).toBe(0);
      expect(sent(lines, `${u}.pool.reused`, "c")).toBe(pool?.reused);
      expect(sent(lines, `${u}.pool.fresh`, "c")).toBe(pool?.fresh);
      expect((pool?.reused ?? 0) + (pool?.fresh ?? 0)).toBe(9);
      const deadErrors = lines.filter((l) => l.startsWith("doh_relay.upstream.dead.errors."));
      expect(deadErrors).toHaveLength(1);
      expect(deadErrors[0]).toMatch(/^doh_relay\.upstream\.dead\.errors\.[a-z_]+:1\|c$/);
      expect(sent(lines, "doh_relay.upstream.dead.requests", "c")).toBe(1);
      expect(sent(lines, "doh_relay.upstream.dead.successes", "c")).toBeUndefined();

      // The next interval: counters that did not move are not sent again; gauges are.
      const before = collector.packets.length;
      clock.advance(10_000);
      const next = await collector.until(() => collector.packets.length > before);
      const second = next.slice(lines.length);
      expect(second.filter((l) => l.endsWith("|c") || l.includes("|ms"))).toEqual([]);
      expect(sent(second, `${u}.pool.connections`, "g")).toBe(pool?.open);

      // Shutdown flushes what the last interval had.
      await udpFrom("127.0.0.1", udp, query("www.relay.test", 77));
      const packetsBefore = collector.packets.length;
      await relay.shutdown(1000);
      const last = (await collector.until(() => collector.packets.length > packetsBefore)).slice(
        next.length,
      );
      expect(sent(last, "doh_relay.listener.udp.queries", "c")).toBe(1);
    } finally {
      await relay.shutdown(100).catch(() => {});
      await collector.close();
    }
  });

  it("costs nothing when the collector is down: answers, one log line, errors counted and reported later", async () => {
    const port = await freePort();
    const clock = createManualClock();
    const logs: string[] = [];
    const relay = await startWith({ addr: `127.0.0.1:${port}` }, clock, logs);
    let collector: Collector | undefined;
    try {
      const udp = portOf(relay, "udp");
      for (let i = 0; i < 20; i++) {
        const answer = await udpFrom("127.0.0.1", udp, query("www.relay.test", i + 1));
        expect(answer && readRcode(answer)).toBe(Rcode.NOERROR);
        if (i % 5 === 4) clock.advance(10_000);
      }
      const stats = () => (relay.ops.status() as { statsd: StatsdSinkStats }).statsd;
      // The port-unreachable for each flush comes back as a read error.
      await until(async () => stats().sendErrors >= 4);
      const warnings = logs.map((l) => JSON.parse(l) as { msg: string });
      expect(warnings.map((w) => w.msg)).toEqual(["statsd send failed"]);

      // A collector on that port now: the next flush tells it what was lost.
      const errors = stats().sendErrors;
      collector = await startCollector(port);
      clock.advance(10_000);
      const lines = await collector.until((l) => l.some((x) => x.includes("statsd.send_errors")));
      expect(sent(lines, "doh_relay.statsd.send_errors", "c")).toBe(errors);
      expect(sent(lines, "doh_relay.listener.udp.queries", "c")).toBeUndefined();
    } finally {
      await relay.shutdown(100);
      await collector?.close();
    }
  });

  it("answers when the statsd host does not resolve, and says so once", async () => {
    const clock = createManualClock();
    const logs: string[] = [];
    const relay = await startWith({ addr: "statsd.invalid:8125" }, clock, logs);
    try {
      const udp = portOf(relay, "udp");
      for (let i = 0; i < 3; i++) {
        const answer = await udpFrom("127.0.0.1", udp, query("www.relay.test", i + 1));
        expect(answer && readRcode(answer)).toBe(Rcode.NOERROR);
        clock.advance(10_000);
      }
      const stats = () => (relay.ops.status() as { statsd: StatsdSinkStats }).statsd;
      await until(async () => stats().resolveErrors >= 3);
      expect(stats().packetsDropped).toBeGreaterThan(0);
      expect(stats().packetsSent).toBe(0);
      expect(logs.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
        "statsd host not resolved",
      ]);
    } finally {
      await relay.shutdown(100);
    }
  });

  it("keeps a worker's gauges apart, and caps timer samples and packet size as configured", async () => {
    const collector = await startCollector();
    const clock = createManualClock();
    const config = relayConfig({
      addr: `127.0.0.1:${collector.port}`,
      max_packet_size: 512,
      timer_samples: 20,
      prefix: "lan.relay",
    }).metrics.statsd!;
    const reporter = createStatsdReporter({
      config,
      logger: createLogger("error", () => {}),
      clock,
      worker: 2,
    });
    try {
      const metrics = reporter.wrapMetrics(createRelayMetrics());
      metrics.inFlight(1);
      for (let i = 0; i < 500; i++) metrics.query("udp", "NOERROR", i / 1e6);
      // Flushed at once: the socket is still connecting, and the packets wait for it.
      clock.advance(config.interval);
      const lines = await collector.until((l) => l.some((x) => x.includes("in_flight")));
      expect(sent(lines, "lan.relay.worker.2.in_flight", "g")).toBe(1);
      expect(sent(lines, "lan.relay.listener.udp.queries", "c")).toBe(500);
      const samples = timerLines(lines, "lan.relay.listener.udp.latency");
      expect(samples).toHaveLength(20);
      for (const line of samples) expect(line).toMatch(/\|ms\|@0\.04$/);
      expect(collector.packets.length).toBeGreaterThan(1);
      for (const p of collector.packets) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(512);
    } finally {
      await reporter.close();
      await collector.close();
    }
  });
});
