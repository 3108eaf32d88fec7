import { rm } from "node:fs/promises";
// Listener behaviour beyond the basics: DoT, IPv6 addresses, TCP connection
// limits (queries per connection, idle timeout), and /readyz when no
// upstream is up. Upstream: the in-test delay server.

import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import { createTestCertificates, freePort, type TestCertificates } from "../support/dns-servers.ts";
import { httpGet, portOf, run, startTestRelay, tcpPipeline } from "./relay-harness.ts";

let delay: DelayDnsServer;
let certs: TestCertificates;
const relays: Relay[] = [];

async function relayWith(input: Record<string, unknown>, keep: string[] = []): Promise<Relay> {
  const relay = await startTestRelay(input, keep);
  relays.push(relay);
  return relay;
}

beforeAll(async () => {
  [delay, certs] = await Promise.all([startDelayDnsServer(), createTestCertificates()]);
});

afterAll(async () => {
  await Promise.all(relays.map((r) => r.shutdown(500)));
  await delay?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

const upstreams = () => [{ name: "delay", url: `udp://127.0.0.1:${delay.port}` }];

describe("DoT listener", () => {
  it("answers DNS over TLS (kdig +tls)", async () => {
    const relay = await relayWith({
      listen: { dot: { addr: "127.0.0.1:853", cert: certs.certFile, key: certs.keyFile } },
      upstreams: upstreams(),
    });
    const { stdout } = await run("kdig", [
      "@127.0.0.1",
      "-p",
      String(portOf(relay, "dot")),
      "+tls",
      `+tls-ca=${certs.caFile}`,
      "+tls-hostname=localhost",
      "+short",
      "7.dot.test",
      "A",
    ]);
    expect(stdout.trim()).toBe("127.0.0.7");
  });
});

describe("IPv6 listeners", () => {
  it("serves UDP and TCP on ::1 (dig -6)", async () => {
    const port = await freePort();
    const relay = await relayWith(
      { listen: { udp: `[::1]:${port}`, tcp: `[::1]:${port}` }, upstreams: upstreams() },
      ["udp", "tcp"],
    );
    expect(relay.listeners.map((l) => l.address)).toEqual([`[::1]:${port}`, `[::1]:${port}`]);
    for (const transport of ["+notcp", "+tcp"]) {
      const { stdout } = await run("dig", [
        "-6",
        "@::1",
        "-p",
        String(port),
        transport,
        "+short",
        "9.v6.test",
      ]);
      expect(stdout.trim()).toBe("127.0.0.9");
    }
  });
});

describe("TCP connection limits", () => {
  it("closes a connection after max_queries_per_connection answers", async () => {
    const relay = await relayWith({
      listen: { tcp: { addr: "127.0.0.1:53", max_queries_per_connection: 3 } },
      upstreams: upstreams(),
    });
    const queries = Array.from({ length: 5 }, (_, i) =>
      buildQuery(`${20 - i}.m${i}.test`, 1, { id: i + 1 }),
    );
    const answers = await tcpPipeline(portOf(relay, "tcp"), queries, 5, 2000);
    expect(answers.map((a) => readId(a)).sort()).toEqual([1, 2, 3]);
  });

  it("closes a connection whose query does not arrive whole within read_timeout", async () => {
    const relay = await relayWith({
      listen: { tcp: { addr: "127.0.0.1:53", read_timeout: "200ms", idle_timeout: "5s" } },
      upstreams: upstreams(),
    });
    const started = performance.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const socket = connect(portOf(relay, "tcp"), "127.0.0.1", () =>
        socket.write(Buffer.from([0, 40, 1, 2, 3])),
      );
      socket.on("close", () => resolve(performance.now() - started));
      socket.on("error", () => {});
      setTimeout(() => socket.destroy(), 3000);
    });
    expect(closedAfter).toBeGreaterThanOrEqual(150);
    expect(closedAfter).toBeLessThan(1500);
  });

  it("closes an idle connection after idle_timeout", async () => {
    const relay = await relayWith({
      listen: { tcp: { addr: "127.0.0.1:53", idle_timeout: "200ms" } },
      upstreams: upstreams(),
    });
    const started = performance.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const socket = connect(portOf(relay, "tcp"), "127.0.0.1");
      socket.on("close", () => resolve(performance.now() - started));
      socket.on("error", () => {});
      setTimeout(() => socket.destroy(), 3000);
    });
    expect(closedAfter).toBeGreaterThanOrEqual(150);
    expect(closedAfter).toBeLessThan(1500);
  });
});

describe("/readyz", () => {
  it("is 503 while every upstream of a route is down, 200 on /healthz", async () => {
    const dead = await freePort();
    const relay = await relayWith({
      listen: { udp: "127.0.0.1:53", metrics: "127.0.0.1:9153" },
      upstreams: [{ name: "dead", url: `tcp://127.0.0.1:${dead}` }],
      routes: [
        {
          zones: ["."],
          upstreams: ["dead"],
          attempt_count: 1,
          fail_timeout: "10s",
          timeout: "500ms",
        },
      ],
    });
    const ops = relay.opsPort as number;
    expect((await httpGet(ops, "/readyz")).status).toBe(200);
    const answer = await relay.handler.handle(buildQuery("x.test", 1, { id: 3 }), {
      address: "127.0.0.1",
      protocol: "udp",
    });
    expect(readRcode(answer as Uint8Array)).toBe(Rcode.SERVFAIL);
    expect((await httpGet(ops, "/readyz")).status).toBe(503);
    expect((await httpGet(ops, "/healthz")).status).toBe(200);
    const status = JSON.parse((await httpGet(ops, "/statusz")).body);
    expect(status.routes[0].upstreams[0]).toMatchObject({
      name: "dead",
      up: false,
      lastErrorCode: "connect",
    });
  });
});
