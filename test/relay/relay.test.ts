import { rm } from "node:fs/promises";
// The relay's LAN front end to end: real nsd + unbound behind it, real dig
// and kdig in front, plus an in-test delay server and HTTP/2 DoH upstream.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClientLimits } from "../../relay/src/client-limits.ts";
import type { Relay } from "../../relay/src/relay.ts";
import { createDohH2Upstream, type DohH2Upstream } from "../../relay/src/transports/doh-h2.ts";
import { createUdpUpstream } from "../../relay/src/transports/udp.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readHeader, readId, readQuestion, readRcode } from "../../shared/dns/wire.ts";
import { malformed } from "../fixtures/malformed/corpus.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import {
  createTestCertificates,
  freePort,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { type H2DohServer, startH2DohServer } from "../support/h2-doh-server.ts";
import { until } from "../support/until.ts";
import {
  dig,
  httpGet,
  portOf,
  run,
  startTestRelay,
  tcpPipeline,
  udpFrom,
  ZONE,
} from "./relay-harness.ts";

let nsd: RunningServer;
let unbound: RunningUnbound;
let delay: DelayDnsServer;
let certs: TestCertificates;
let h2: H2DohServer;
let relay: Relay;
let dohRelay: Relay;
let limitedRelay: Relay;

beforeAll(async () => {
  nsd = await startNsd({ zones: { "relay.test.": ZONE } });
  [unbound, delay, certs] = await Promise.all([
    startUnbound({ stubs: { "relay.test.": nsd.port } }),
    startDelayDnsServer(),
    createTestCertificates(),
  ]);
  h2 = await startH2DohServer({
    backendPort: unbound.port,
    certFile: certs.certFile,
    keyFile: certs.keyFile,
  });
  // UDP and TCP share a port so dig's TC=1 retry over TCP reaches the relay.
  const shared = await freePort();
  relay = await startTestRelay(
    {
      listen: {
        udp: `127.0.0.1:${shared}`,
        tcp: `127.0.0.1:${shared}`,
        doh: { addr: "127.0.0.1:8443", cert: certs.certFile, key: certs.keyFile },
        metrics: "127.0.0.1:9153",
      },
      allow: ["127.0.0.1/32"],
      upstreams: [
        { name: "unbound", url: `udp://127.0.0.1:${unbound.port}` },
        { name: "delay", url: `udp://127.0.0.1:${delay.port}` },
      ],
      routes: [
        { zones: ["."], upstreams: ["unbound"], timeout: "2s" },
        { zones: ["delay.test."], upstreams: ["delay"], timeout: "2s" },
      ],
    },
    ["udp", "tcp"],
  );
  dohRelay = await startTestRelay({
    listen: { udp: "127.0.0.1:5353", tcp: "127.0.0.1:5353", metrics: "127.0.0.1:9153" },
    upstreams: [
      {
        name: "edge",
        url: `https://127.0.0.1:${h2.port}/dns-query`,
        ca: certs.caFile,
        pool: { size: 1 },
      },
    ],
  });
  limitedRelay = await startTestRelay({
    listen: { udp: "127.0.0.1:5353" },
    rate_limit: { qps: 5, burst: 5 },
    upstreams: [{ name: "delay", url: `udp://127.0.0.1:${delay.port}` }],
  });
}, 30_000);

afterAll(async () => {
  await Promise.all([relay, dohRelay, limitedRelay].map((r) => r?.shutdown(1000)));
  await Promise.all([h2?.stop(), delay?.stop(), unbound?.stop()]);
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

describe("plain DNS listeners", () => {
  it("answers over UDP and TCP (dig)", async () => {
    const udp = await dig(portOf(relay, "udp"), ["+short", "www.relay.test", "A"]);
    expect(udp.trim()).toBe("192.0.2.10");
    const tcp = await dig(portOf(relay, "tcp"), ["+tcp", "+short", "www.relay.test", "AAAA"]);
    expect(tcp.trim()).toBe("2001:db8::10");
  });

  it("truncates a large UDP answer with TC=1 and dig's TCP retry gets it whole", async () => {
    const port = portOf(relay, "udp");
    const cut = await dig(port, ["+noedns", "+ignore", "big.relay.test", "TXT"]);
    expect(cut).toMatch(/flags:[^;]* tc[ ;]/);
    const full = await dig(port, ["+noedns", "+short", "big.relay.test", "TXT"]);
    expect(full.trim().split("\n")).toHaveLength(4);
    const query = buildQuery("big.relay.test", 16, { id: 77 });
    const answer = await udpFrom("127.0.0.1", port, query);
    expect(answer?.length).toBeLessThanOrEqual(512);
    expect(readHeader(answer as Uint8Array).tc).toBe(true);
  });

  it("answers 100 pipelined TCP queries on one connection, out of order", async () => {
    const delays = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? 300 - i * 2 : 5 + (i % 7)));
    const queries = delays.map((ms, i) =>
      buildQuery(`${ms}.q${i}.delay.test`, 1, { id: 1000 + i }),
    );
    const started = performance.now();
    const answers = await tcpPipeline(portOf(relay, "tcp"), queries, 100, 5000);
    const took = performance.now() - started;
    expect(answers).toHaveLength(100);
    const ids = answers.map((a) => readId(a));
    expect(new Set(ids).size).toBe(100);
    for (const answer of answers) {
      const i = readId(answer) - 1000;
      expect(readQuestion(answer).name).toBe(`${delays[i]}.q${i}.delay.test.`);
      expect(readRcode(answer)).toBe(Rcode.NOERROR);
    }
    expect(ids).not.toEqual([...ids].sort((a, b) => a - b));
    // Concurrent, not one after another (the sum of delays is ~15 s).
    expect(took).toBeLessThan(2000);
  });
});

describe("upstream transports", () => {
  it("udp:// retries over TCP when the upstream answer has TC=1", async () => {
    const udp = createUdpUpstream({
      name: "u",
      host: "127.0.0.1",
      port: unbound.port,
      connectTimeoutMs: 1000,
    });
    const query = buildQuery("big.relay.test", 16, { id: 4242 }); // no EDNS: 512-byte UDP limit
    const answer = await udp.query(query, AbortSignal.timeout(3000));
    expect(readId(answer)).toBe(4242);
    expect(readHeader(answer).tc).toBe(false);
    expect(readHeader(answer).ancount).toBe(4);
    expect(answer.length).toBeGreaterThan(512);
    await udp.close();
  });

  it("https:// backs off after a failed connect instead of reconnecting per query", async () => {
    const dead = await freePort();
    const doh = createDohH2Upstream({
      name: "gone",
      origin: `https://127.0.0.1:${dead}`,
      path: "/dns-query",
      method: "POST",
      poolSize: 2,
      maxInFlight: 100,
      connectTimeoutMs: 1000,
      idleTimeoutMs: 1000,
    });
    const query = buildQuery("www.relay.test", 1);
    await expect(doh.query(query, AbortSignal.timeout(2000))).rejects.toMatchObject({
      code: "connect",
    });
    await expect(doh.query(query, AbortSignal.timeout(2000))).rejects.toThrow(/reconnect backoff/);
    expect(doh.poolStats().opened).toBe(1);
    await doh.close();
  });
});

describe("access control and limits", () => {
  it("refuses a client outside the allow list and counts it in /metrics", async () => {
    const answer = await udpFrom(
      "127.0.0.2",
      portOf(relay, "udp"),
      buildQuery("www.relay.test", 1, { id: 9 }),
    );
    expect(answer).toBeDefined();
    expect(readId(answer as Uint8Array)).toBe(9);
    expect(readRcode(answer as Uint8Array)).toBe(Rcode.REFUSED);
    const metrics = await httpGet(relay.opsPort as number, "/metrics");
    expect(metrics.body).toMatch(/doh_relay_refused_total\{reason="acl"\} [1-9]/);
  });

  it("refuses a flood beyond the client's rate limit", async () => {
    const port = portOf(limitedRelay, "udp");
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        udpFrom("127.0.0.1", port, buildQuery(`1.f${i}.test`, 1, { id: i })),
      ),
    );
    const rcodes = answers.map((a) => (a ? readRcode(a) : -1));
    expect(rcodes.filter((r) => r === Rcode.REFUSED).length).toBeGreaterThanOrEqual(20);
    expect(rcodes.filter((r) => r === Rcode.NOERROR).length).toBeGreaterThanOrEqual(1);
    expect(rcodes.filter((r) => r === Rcode.NOERROR).length).toBeLessThanOrEqual(6);
    expect(limitedRelay.metrics.refusedCount("rate_limit")).toBeGreaterThanOrEqual(20);
  });

  it("keeps the per-client table bounded, evicting idle clients", () => {
    let now = 0;
    const limits = createClientLimits({
      qps: 1,
      burst: 1,
      maxInFlight: 1,
      maxClients: 50,
      now: () => now,
    });
    for (let i = 0; i < 5000; i++) {
      now += 1;
      expect(limits.admit(`10.0.${i >> 8}.${i & 255}`)).toBe("ok");
      limits.release(`10.0.${i >> 8}.${i & 255}`);
      expect(limits.size).toBeLessThanOrEqual(50);
    }
    // Busy clients are never evicted: a full table of in-flight clients refuses newcomers.
    const busy = createClientLimits({ qps: 0, burst: 1, maxInFlight: 10, maxClients: 3 });
    for (const c of ["a", "b", "c"]) expect(busy.admit(c)).toBe("ok");
    expect(busy.admit("d")).toBe("table_full");
    busy.release("a");
    expect(busy.admit("d")).toBe("ok");
    // With no limit at all there is nothing to track, so nobody is refused.
    const open = createClientLimits({ qps: 0, burst: 1, maxInFlight: 0, maxClients: 3 });
    for (const c of ["a", "b", "c", "d", "e"]) expect(open.admit(c)).toBe("ok");
    expect(open.size).toBe(0);
    // The in-flight cap per client.
    const capped = createClientLimits({ qps: 0, burst: 1, maxInFlight: 2 });
    expect([capped.admit("x"), capped.admit("x"), capped.admit("x")]).toEqual([
      "ok",
      "ok",
      "in_flight",
    ]);
    capped.release("x");
    expect(capped.admit("x")).toBe("ok");
  });
});

describe("malformed input", () => {
  const expectation = (bytes: Uint8Array) => {
    if (bytes.length < 12) return "none";
    if ((bytes[2]! & 0x80) !== 0) return "none"; // a response: never answered
    try {
      readQuestion(bytes);
      return "answer";
    } catch {
      return "formerr";
    }
  };

  it("never crashes over UDP: FORMERR when the question is unreadable, and keeps serving", async () => {
    const port = portOf(relay, "udp");
    const cases = malformed.filter((c) => c.bytes.length <= 65507);
    const answers = await Promise.all(
      cases.map((c) =>
        udpFrom("127.0.0.1", port, c.bytes, expectation(c.bytes) === "none" ? 400 : 3000),
      ),
    );
    cases.forEach((c, i) => {
      const want = expectation(c.bytes);
      const answer = answers[i];
      if (want === "none") expect(answer, c.name).toBeUndefined();
      else {
        expect(answer, c.name).toBeDefined();
        expect(readId(answer as Uint8Array), c.name).toBe(readId(c.bytes));
        if (want === "formerr") expect(readRcode(answer as Uint8Array), c.name).toBe(Rcode.FORMERR);
      }
    });
    expect((await dig(port, ["+short", "www.relay.test"])).trim()).toBe("192.0.2.10");
  });

  it("never crashes over TCP and keeps serving", async () => {
    const port = portOf(relay, "tcp");
    const cases = malformed.filter((c) => c.bytes.length > 0 && c.bytes.length <= 65535);
    const answers = await Promise.all(
      cases.map((c) =>
        tcpPipeline(port, [c.bytes], 1, expectation(c.bytes) === "none" ? 300 : 3000),
      ),
    );
    cases.forEach((c, i) => {
      const want = expectation(c.bytes);
      const got = answers[i] ?? [];
      if (want === "none") expect(got, c.name).toHaveLength(0);
      else {
        expect(got, c.name).toHaveLength(1);
        if (want === "formerr") expect(readRcode(got[0] as Uint8Array), c.name).toBe(Rcode.FORMERR);
      }
    });
    const ok = await dig(port, ["+tcp", "+short", "www.relay.test"]);
    expect(ok.trim()).toBe("192.0.2.10");
  });
});

describe("operations endpoints", () => {
  it("serves /healthz, /readyz, /statusz and /metrics", async () => {
    const port = relay.opsPort as number;
    expect((await httpGet(port, "/healthz")).status).toBe(200);
    expect((await httpGet(port, "/readyz")).status).toBe(200);
    const status = JSON.parse((await httpGet(port, "/statusz")).body);
    expect(status.listeners.map((l: { name: string }) => l.name).sort()).toEqual([
      "doh",
      "tcp",
      "udp",
    ]);
    expect(status.routes[0].upstreams[0]).toMatchObject({ name: "unbound", up: true });
    const metrics = (await httpGet(port, "/metrics")).body;
    expect(metrics).toMatch(/doh_relay_queries_total\{protocol="udp",rcode="NOERROR"\} [1-9]/);
    expect(metrics).toMatch(/request_count_total\{upstream="unbound"\} [1-9]/);
    expect(metrics).toMatch(/response_win_count_total\{upstream="delay"\} [1-9]/);
    expect(metrics).toMatch(/doh_relay_query_duration_seconds_count\{protocol="tcp"\} [1-9]/);
    expect(metrics).toContain("doh_relay_in_flight 0");
    expect((await httpGet(port, "/nope")).status).toBe(404);
  });
});

describe("DoH", () => {
  it("answers on the DoH listener over HTTP/2 (kdig +https)", async () => {
    const { stdout } = await run("kdig", [
      "@127.0.0.1",
      "-p",
      String(portOf(relay, "doh")),
      "+https",
      `+tls-ca=${certs.caFile}`,
      "+tls-hostname=localhost",
      "+short",
      "www.relay.test",
      "A",
    ]);
    expect(stdout.trim()).toBe("192.0.2.10");
  });

  it("forwards to an https:// upstream over one reused HTTP/2 session", async () => {
    const before = h2.connections;
    const port = portOf(dohRelay, "udp");
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        udpFrom("127.0.0.1", port, buildQuery("www.relay.test", 1, { id: i })),
      ),
    );
    for (const answer of answers) expect(readRcode(answer as Uint8Array)).toBe(Rcode.NOERROR);
    const tcp = await dig(portOf(dohRelay, "tcp"), ["+tcp", "+short", "www.relay.test"]);
    expect(tcp.trim()).toBe("192.0.2.10");
    const edge = dohRelay.transports.get("edge") as DohH2Upstream;
    expect(edge.poolStats().opened).toBe(1);
    expect(h2.connections - before).toBe(1);
    const metrics = await fetch(`http://127.0.0.1:${dohRelay.opsPort}/metrics`).then((r) =>
      r.text(),
    );
    expect(metrics).toContain('doh_relay_upstream_connections{upstream="edge"} 1');
    expect(h2.requests).toBeGreaterThanOrEqual(41);
  });

  it("replaces an HTTP/2 session the server closed (GOAWAY) and keeps answering", async () => {
    const edge = dohRelay.transports.get("edge") as DohH2Upstream;
    const port = portOf(dohRelay, "udp");
    const ask = (id: number) => udpFrom("127.0.0.1", port, buildQuery("www.relay.test", 1, { id }));
    expect(readRcode((await ask(1)) as Uint8Array)).toBe(Rcode.NOERROR);
    const opened = edge.poolStats().opened;
    h2.closeSessions();
    await until(() => edge.poolStats().open === 0, "the relay sees GOAWAY");
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(10 + i)));
    for (const answer of answers) expect(readRcode(answer as Uint8Array)).toBe(Rcode.NOERROR);
    expect(edge.poolStats().opened).toBe(opened + 1);
  });

  it("retries a query whose HTTP/2 session dies under it on a fresh session", async () => {
    const edge = dohRelay.transports.get("edge") as DohH2Upstream;
    const port = portOf(dohRelay, "udp");
    const ask = (id: number) => udpFrom("127.0.0.1", port, buildQuery("www.relay.test", 1, { id }));
    expect(readRcode((await ask(1)) as Uint8Array)).toBe(Rcode.NOERROR);
    const opened = edge.poolStats().opened;
    h2.killNextSession();
    const answer = await ask(2);
    expect(readId(answer as Uint8Array)).toBe(2);
    expect(readRcode(answer as Uint8Array)).toBe(Rcode.NOERROR);
    expect(edge.poolStats().opened).toBe(opened + 1);
  });
});
