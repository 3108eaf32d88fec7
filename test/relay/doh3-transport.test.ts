// The relay's DoH3 upstream (h3://, RFC 8484 over RFC 9114) against a server
// we did not write: quic-go's http3 package (test/support/h3-doh-server),
// forwarding to a real nsd or to the delay server. Answers by POST and GET,
// one QUIC connection for many queries, GOAWAY (queries the server accepted
// finish on the old connection, new ones go to a new connection, those it
// did not accept are retried), connections the server closes or that go
// silent, certificate failures, and the busy limit.

import { createSocket } from "node:dgram";
import { readFile, rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDoh3Upstream, type Doh3UpstreamOptions } from "../../relay/src/transports/doh3.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import {
  createTestCertificates,
  type RunningServer,
  startNsd,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { type H3DohServer, startH3DohServer } from "../support/h3-doh-server.ts";
import { dig, portOf, startTestRelay, ZONE } from "./relay-harness.ts";

let nsd: RunningServer;
let delay: DelayDnsServer;
let certs: TestCertificates;
let otherCa: TestCertificates;
let ca: string;
/** quic-go in front of nsd, and in front of the delay server. */
let overNsd: H3DohServer;
let overDelay: H3DohServer;

beforeAll(async () => {
  [nsd, delay, certs, otherCa] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    startDelayDnsServer(),
    createTestCertificates(),
    createTestCertificates(),
  ]);
  ca = await readFile(certs.caFile, "utf8");
  const tls = { certFile: certs.certFile, keyFile: certs.keyFile };
  [overNsd, overDelay] = await Promise.all([
    startH3DohServer({ ...tls, backendPort: nsd.port }),
    startH3DohServer({ ...tls, backendPort: delay.port }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([overNsd?.stop(), overDelay?.stop()]);
  await Promise.all([nsd?.stop(), delay?.stop()]);
  for (const c of [certs, otherCa]) if (c) await rm(c.dir, { recursive: true, force: true });
});

function upstream(server: H3DohServer, overrides: Partial<Doh3UpstreamOptions> = {}) {
  return createDoh3Upstream({
    name: "h3",
    host: "127.0.0.1",
    port: server.port,
    path: "/dns-query",
    method: "POST",
    servername: "dns.test",
    ca,
    connectTimeoutMs: 1000,
    handshakeTimeoutMs: 1000,
    idleTimeoutMs: 10_000,
    maxRetries: 1,
    maxInFlight: 100,
    ...overrides,
  });
}

const live = () => AbortSignal.timeout(5000);

/** A UDP relay in front of a server; only the current target's replies get back. */
async function startUdpProxy(target: number) {
  const front = createSocket("udp4");
  const back = createSocket("udp4");
  let client: { address: string; port: number } | undefined;
  const proxy = {
    port: 0,
    target,
    close() {
      front.close();
      back.close();
    },
  };
  front.on("message", (packet, from) => {
    client = from;
    back.send(packet, proxy.target, "127.0.0.1");
  });
  back.on("message", (packet, from) => {
    if (client && from.port === proxy.target) front.send(packet, client.port, client.address);
  });
  await new Promise<void>((resolve) => front.bind(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => back.bind(0, "127.0.0.1", resolve));
  proxy.port = front.address().port;
  return proxy;
}

/** Polls `check` every 10 ms until it holds (or fails the test after 3 s). */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("DoH3 upstream against quic-go's http3 server", () => {
  for (const method of ["POST", "GET"] as const) {
    it(`answers by ${method} under the caller's ID`, async () => {
      const h3 = upstream(overNsd, { method });
      try {
        const answer = await h3.query(buildQuery("www.relay.test", 1, { id: 0x4242 }), live());
        expect(readId(answer)).toBe(0x4242);
        const decoded = decodeMessage(answer);
        expect(decoded.rcode).toBe("NOERROR");
        expect(decoded.answers?.map((a) => a.data)).toEqual(["192.0.2.10"]);
        const aaaa = decodeMessage(
          await h3.query(buildQuery("www.relay.test", 28, { id: 7 }), live()),
        );
        expect(aaaa.answers?.map((a) => a.data)).toEqual(["2001:db8::10"]);
        const nx = decodeMessage(await h3.query(buildQuery("nope.relay.test", 1), live()));
        expect(nx.rcode).toBe("NXDOMAIN");
      } finally {
        await h3.close();
      }
    });
  }

  it("adds dns= to a GET path that already has a query string", async () => {
    const h3 = upstream(overNsd, { method: "GET", path: "/dns-query?client=relay" });
    try {
      const answer = await h3.query(buildQuery("www.relay.test", 1, { id: 3 }), live());
      expect(decodeMessage(answer).answers?.map((a) => a.data)).toEqual(["192.0.2.10"]);
    } finally {
      await h3.close();
    }
  });

  it("sends ID 0 on the wire for GET and POST alike", async () => {
    for (const method of ["POST", "GET"] as const) {
      const h3 = upstream(overDelay, { method });
      const before = delay.ids.length;
      try {
        await h3.query(buildQuery("0.id.h3.test", 1, { id: 0x1234 }), live());
      } finally {
        await h3.close();
      }
      expect(delay.ids.slice(before)).toEqual([0]);
    }
  });

  it("carries many queries, at once and one after another, on one QUIC connection", async () => {
    // 150 at once: past quic-go's 100 streams, so some wait for it to grant more.
    const h3 = upstream(overNsd, { maxInFlight: 200 });
    const connectionsBefore = await overNsd.connections();
    try {
      const names = Array.from({ length: 150 }, (_, i) =>
        i % 2 ? "www.relay.test" : "ns.relay.test",
      );
      const answers = await Promise.all(
        names.map((name, i) => h3.query(buildQuery(name, 1, { id: i }), live())),
      );
      expect(answers.map(readId)).toEqual(names.map((_, i) => i));
      for (let i = 0; i < 20; i++) await h3.query(buildQuery("www.relay.test", 1), live());
      expect((await overNsd.connections()) - connectionsBefore).toBe(1);
      expect(h3.poolStats()).toMatchObject({ open: 1, opened: 1, fresh: 1, reused: 169 });
    } finally {
      await h3.close();
    }
  });

  it("after GOAWAY, finishes the query the server accepted and sends new ones on a new connection", async () => {
    const h3 = upstream(overDelay);
    try {
      await h3.query(buildQuery("0.first.h3.test", 1), live());
      const connections = await overDelay.connections();
      const requests = await overDelay.requests();
      const slow = h3.query(buildQuery("400.slow.h3.test", 1, { id: 99 }), live());
      await until(async () => (await overDelay.requests()) === requests + 1, "the slow request");
      await overDelay.goAway("after-last");
      // The connection goes out of use, not away: once the GOAWAY is in, a
      // new query opens a second one (queries before that still use the first).
      let after = 0;
      await until(async () => {
        after++;
        await h3.query(buildQuery("0.after.h3.test", 1), live());
        return h3.poolStats().opened === 2;
      }, "a new connection");
      expect(await overDelay.connections()).toBe(connections + 1);
      expect(h3.poolStats().open).toBe(2);
      expect(readId(await slow)).toBe(99);
      // Its last query done, the old connection is closed.
      await until(() => h3.poolStats().open === 1, "the old connection to close");
      // The slow query was sent once: the server had accepted it.
      expect(await overDelay.requests()).toBe(requests + 1 + after);
    } finally {
      await h3.close();
    }
  });

  it("retries on a new connection a query past the GOAWAY's stream ID", async () => {
    const h3 = upstream(overDelay);
    try {
      await h3.query(buildQuery("0.first.h3.test", 1), live());
      const requests = await overDelay.requests();
      const slow = h3.query(buildQuery("300.retried.h3.test", 1, { id: 5 }), live());
      await until(async () => (await overDelay.requests()) === requests + 1, "the slow request");
      await overDelay.goAway("zero");
      expect(readId(await slow)).toBe(5);
      // Sent twice: once on the connection that went away, once on the new one.
      expect(await overDelay.requests()).toBe(requests + 2);
      expect(h3.poolStats()).toMatchObject({ opened: 2, reconnects: 1 });
    } finally {
      await h3.close();
    }
  });

  it("opens a new connection after the server closes one, resuming TLS and retrying the query caught on it", async () => {
    const h3 = upstream(overDelay);
    try {
      await h3.query(buildQuery("0.first.h3.test", 1), live());
      const requests = await overDelay.requests();
      const caught = h3.query(buildQuery("300.caught.h3.test", 1, { id: 6 }), live());
      await until(async () => (await overDelay.requests()) === requests + 1, "the slow request");
      await overDelay.closeConnections();
      expect(readId(await caught)).toBe(6);
      expect(readId(await h3.query(buildQuery("0.next.h3.test", 1, { id: 8 }), live()))).toBe(8);
      // The new connection resumed the first one's TLS session.
      expect(h3.poolStats()).toMatchObject({ open: 1, opened: 2, reconnects: 1, resumed: 1 });
    } finally {
      await h3.close();
    }
  });

  it("gives up on a connection gone silent and opens a fresh one, retrying the queries caught on it", async () => {
    const proxy = await startUdpProxy(overNsd.port);
    const h3 = upstream(overNsd, {
      port: proxy.port,
      connectTimeoutMs: 100,
      handshakeTimeoutMs: 100,
    });
    try {
      expect(readId(await h3.query(buildQuery("www.relay.test", 1, { id: 1 }), live()))).toBe(1);
      // The address now leads to a server that never saw the connection and
      // ignores it; the first one's goodbye never gets through.
      proxy.target = overDelay.port;
      // A query with time to spare, caught on the silent connection beside the one given up on.
      const caught = h3.query(buildQuery("0.caught.h3.test", 1, { id: 3 }), live());
      const silent = await h3
        .query(buildQuery("0.silent.h3.test", 1), AbortSignal.timeout(300))
        .catch((e: unknown) => e);
      expect((silent as UpstreamError).code).toBe("aborted");
      // Dropping the connection retried it on a fresh one.
      expect(readId(await caught)).toBe(3);
      const answer = await h3.query(buildQuery("0.fresh.h3.test", 1, { id: 2 }), live());
      expect(readId(answer)).toBe(2);
      expect(h3.poolStats()).toMatchObject({ opened: 2, reconnects: 1 });
    } finally {
      await h3.close();
      proxy.close();
    }
  });

  it("fails fast with `tls` on a certificate from another CA, or for another name", async () => {
    const otherCaPem = await readFile(otherCa.caFile, "utf8");
    for (const overrides of [
      { ca: otherCaPem },
      { servername: "other.test" },
      { servername: "192.0.2.1" },
    ]) {
      const h3 = upstream(overNsd, overrides);
      const started = Date.now();
      try {
        const error = await h3.query(buildQuery("www.relay.test", 1), live()).catch((e) => e);
        expect(error).toBeInstanceOf(UpstreamError);
        expect((error as UpstreamError).code).toBe("tls");
        expect(Date.now() - started).toBeLessThan(1000);
      } finally {
        await h3.close();
      }
    }
  });

  it("accepts an IP-literal servername that the certificate names", async () => {
    const h3 = upstream(overNsd, { servername: "127.0.0.1" });
    try {
      const answer = await h3.query(buildQuery("www.relay.test", 1), live());
      expect(decodeMessage(answer).answers?.map((a) => a.data)).toEqual(["192.0.2.10"]);
    } finally {
      await h3.close();
    }
  });

  it("refuses more than max_in_flight queries at once as `busy`", async () => {
    const h3 = upstream(overDelay, { maxInFlight: 2 });
    try {
      const slow = [1, 2].map((i) => h3.query(buildQuery(`200.busy${i}.h3.test`, 1), live()));
      const error = await h3.query(buildQuery("0.busy.h3.test", 1), live()).catch((e) => e);
      expect((error as UpstreamError).code).toBe("busy");
      await Promise.all(slow);
    } finally {
      await h3.close();
    }
  });

  it("turns a non-2xx status into `http_status`", async () => {
    const h3 = upstream(overNsd, { path: "/nowhere" });
    try {
      const error = await h3.query(buildQuery("www.relay.test", 1), live()).catch((e) => e);
      expect((error as UpstreamError).code).toBe("http_status");
      expect((error as UpstreamError).status).toBe(404);
    } finally {
      await h3.close();
    }
  });
});

describe("a relay with an h3:// upstream", () => {
  for (const method of ["POST", "GET"] as const) {
    it(`answers dig through DoH3 by ${method}, reaching the upstream by a name only the bootstrap server holds`, async () => {
      const relay = await startTestRelay({
        listen: { udp: { addr: "127.0.0.1:5353" } },
        bootstrap: [`127.0.0.1:${nsd.port}`],
        upstreams: [
          {
            name: "doh3",
            url: `h3://ns.relay.test:${overNsd.port}/dns-query`,
            method,
            tls_servername: "dns.test",
            ca: certs.caFile,
          },
        ],
      });
      try {
        const connections = await overNsd.connections();
        const requests = await overNsd.requests();
        const port = portOf(relay, "udp");
        expect((await dig(port, ["+short", "www.relay.test"])).trim()).toBe("192.0.2.10");
        expect((await dig(port, ["+short", "www.relay.test", "AAAA"])).trim()).toBe("2001:db8::10");
        expect((await overNsd.connections()) - connections).toBe(1);
        expect((await overNsd.requests()) - requests).toBe(2);
      } finally {
        await relay.shutdown(1000);
      }
    });
  }
});
