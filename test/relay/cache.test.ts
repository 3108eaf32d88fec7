// The relay's answer cache against real nsd: a repeat is answered with the
// upstream stopped, TTLs count down, negative answers are kept per the SOA
// minimum, identical queries in flight share one upstream query, and
// /metrics counts it all.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay, RelayOptions } from "../../relay/src/relay.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import { type RunningServer, startNsd } from "../support/dns-servers.ts";
import { httpGet, portOf, startTestRelay, udpFrom, ZONE } from "./relay-harness.ts";

let delay: DelayDnsServer;

beforeAll(async () => {
  delay = await startDelayDnsServer();
});

afterAll(async () => {
  await delay?.stop();
});

const cachingRelay = (upstreamPort: number, options: RelayOptions = {}) =>
  startTestRelay(
    {
      listen: { udp: "127.0.0.1:5353", metrics: "127.0.0.1:9153" },
      upstreams: [{ name: "up", url: `udp://127.0.0.1:${upstreamPort}` }],
      routes: [{ zones: ["."], upstreams: ["up"], timeout: "1s" }],
      cache: { size: 1000 },
      rate_limit: { qps: 0, max_in_flight: 0 },
    },
    [],
    options,
  );

const ask = async (relay: Relay, name: string, id: number, type = 1) =>
  (await udpFrom(
    "127.0.0.1",
    portOf(relay, "udp"),
    buildQuery(name, type, { id }),
    3000,
  )) as Uint8Array;

describe("relay answer cache", () => {
  let nsd: RunningServer;
  let relay: Relay;
  const clock = createManualClock();

  beforeAll(async () => {
    nsd = await startNsd({ zones: { "relay.test.": ZONE } });
    relay = await cachingRelay(nsd.port, { clock });
  });

  afterAll(async () => {
    await relay?.shutdown(200);
    await nsd?.stop();
  });

  it("answers a repeat with the upstream stopped, TTL counted down, and counts hits", async () => {
    const first = await ask(relay, "www.relay.test", 1);
    const nx = await ask(relay, "nope.relay.test", 2);
    expect(decodeMessage(first).answers?.[0]).toMatchObject({ data: "192.0.2.10", ttl: 300 });
    expect(readRcode(nx)).toBe(Rcode.NXDOMAIN);
    await nsd.stop();
    clock.advance(1100);
    const again = await ask(relay, "WWW.relay.test", 3);
    expect(readId(again)).toBe(3);
    expect(decodeMessage(again).questions?.[0]?.name).toBe("WWW.relay.test");
    const record = decodeMessage(again).answers?.[0];
    expect(record?.data).toBe("192.0.2.10");
    expect(record?.ttl).toBe(299);
    // The negative answer too (SOA minimum 300 in the zone).
    expect(readRcode(await ask(relay, "nope.relay.test", 4))).toBe(Rcode.NXDOMAIN);
    // Not cached: the upstream is gone, so SERVFAIL.
    expect(readRcode(await ask(relay, "www.relay.test", 5, 28))).toBe(Rcode.SERVFAIL);
    const metrics = (await httpGet(relay.opsPort as number, "/metrics")).body;
    expect(metrics).toMatch(/doh_relay_cache_hits_total 2\n/);
    // www A, nope A, and the SERVFAIL for www AAAA (kept for servfail_ttl, 5 s).
    expect(metrics).toMatch(/doh_relay_cache_entries 3\n/);
  });
});

describe("relay coalescing", () => {
  it("sends one upstream query for 100 identical queries in flight", async () => {
    const relay = await cachingRelay(delay.port);
    try {
      const before = delay.queries;
      const answers = await Promise.all(
        Array.from({ length: 100 }, (_, i) => ask(relay, "300.same.test", 1000 + i)),
      );
      expect(answers.map((a) => readId(a))).toEqual(answers.map((_, i) => 1000 + i));
      expect(answers.every((a) => readRcode(a) === Rcode.NOERROR)).toBe(true);
      expect(delay.queries - before).toBe(1);
      const metrics = (await httpGet(relay.opsPort as number, "/metrics")).body;
      expect(metrics).toMatch(/doh_relay_cache_coalesced_total 99\n/);
    } finally {
      await relay.shutdown(200);
    }
  });
});
