// The relay's DoQ upstream (RFC 9250) against the test DoQ server forwarding
// to a real nsd: answers, ID 0 on the wire and the caller's restored, one
// connection for many queries, a fresh connection after the server closes
// one, certificate failures as quick TLS errors, abort, and the busy limit;
// and kdig as an independent DoQ client of the test server.

import { createSocket } from "node:dgram";
import { readFile, rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createDoqUpstream,
  DOQ_ERROR,
  type DoqUpstreamOptions,
} from "../../relay/src/transports/doq.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId, withId } from "../../shared/dns/wire.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import {
  createTestCertificates,
  type RunningServer,
  startNsd,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { type DoqServer, startDoqServer } from "../support/doq-server.ts";
import { until } from "../support/until.ts";
import { dig, portOf, run, startTestRelay, ZONE } from "./relay-harness.ts";

let nsd: RunningServer;
let certs: TestCertificates;
let otherCa: TestCertificates;
let server: DoqServer;
let ca: string;
/** The server certificate and key, PEM, for the tests' own DoQ servers. */
let tls: { cert: string; key: string };

beforeAll(async () => {
  [nsd, certs, otherCa] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
    createTestCertificates(),
  ]);
  const [cert, key] = await Promise.all([
    readFile(certs.certFile, "utf8"),
    readFile(certs.keyFile, "utf8"),
  ]);
  tls = { cert, key };
  ca = await readFile(certs.caFile, "utf8");
  server = await startDoqServer({ ...tls, backendPort: nsd.port });
});

afterAll(async () => {
  await server?.stop();
  await nsd?.stop();
  for (const c of [certs, otherCa]) if (c) await rm(c.dir, { recursive: true, force: true });
});

function upstream(overrides: Partial<DoqUpstreamOptions> = {}) {
  return createDoqUpstream({
    name: "doq",
    host: "127.0.0.1",
    port: server.port,
    servername: "dns.test",
    ca,
    connectTimeoutMs: 1000,
    handshakeTimeoutMs: 1000,
    idleTimeoutMs: 10_000,
    maxRetries: 1,
    maxInFlight: 64,
    ...overrides,
  });
}

/** A UDP relay in front of a server; only the current target's replies get back. */
async function startUdpProxy(target: number) {
  const front = createSocket("udp4");
  const back = createSocket("udp4");
  const proxy = {
    port: 0,
    target,
    close() {
      front.close();
      back.close();
    },
  };
  let client: { address: string; port: number } | undefined;
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

const firstAnswer = (answer: Uint8Array) => decodeMessage(answer).answers?.[0]?.data;

async function failure(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UpstreamError);
  return error as UpstreamError;
}

describe("DoQ upstream", () => {
  it("answers from nsd with ID 0 on the wire and the caller's ID restored", async () => {
    const doq = upstream();
    try {
      const seen = server.ids.length;
      const a = await doq.query(
        buildQuery("www.relay.test", 1, { id: 4321 }),
        AbortSignal.timeout(3000),
      );
      const aaaa = await doq.query(
        buildQuery("www.relay.test", 28, { id: 65535 }),
        AbortSignal.timeout(3000),
      );
      expect([readId(a), readId(aaaa)]).toEqual([4321, 65535]);
      expect(firstAnswer(a)).toBe("192.0.2.10");
      expect(firstAnswer(aaaa)).toBe("2001:db8::10");
      expect(server.ids.slice(seen)).toEqual([0, 0]);
    } finally {
      await doq.close();
    }
  });

  it("carries 200 queries, one at a time and 150 at once, over exactly one connection", async () => {
    // 150 at once is past the server's 100 streams: the rest wait for stream credit.
    const doq = upstream({ maxInFlight: 200 });
    try {
      const before = server.connectionsAccepted;
      for (let i = 0; i < 50; i++) {
        const answer = await doq.query(
          buildQuery("www.relay.test", 1, { id: i }),
          AbortSignal.timeout(3000),
        );
        expect(readId(answer)).toBe(i);
      }
      const answers = await Promise.all(
        Array.from({ length: 150 }, (_, i) =>
          doq.query(buildQuery("www.relay.test", 1, { id: 1000 + i }), AbortSignal.timeout(10_000)),
        ),
      );
      expect(answers.map(readId)).toEqual(Array.from({ length: 150 }, (_, i) => 1000 + i));
      expect(answers.every((answer) => firstAnswer(answer) === "192.0.2.10")).toBe(true);
      expect(server.connectionsAccepted - before).toBe(1);
      expect(doq.poolStats()).toEqual({
        open: 1,
        inFlight: 0,
        opened: 1,
        resumed: 0,
        reconnects: 0,
        reused: 199,
        fresh: 1,
      });
    } finally {
      await doq.close();
    }
  });

  it("opens a fresh connection after the server closes the one it had", async () => {
    const doq = upstream();
    try {
      const ask = () => doq.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(3000));
      expect(firstAnswer(await ask())).toBe("192.0.2.10");
      const before = server.connectionsAccepted;
      await server.closeConnections();
      // The close reaches the client, as between real queries.
      await until(() => doq.poolStats().open === 0, "the client sees the close");
      expect(firstAnswer(await ask())).toBe("192.0.2.10");
      expect(server.connectionsAccepted - before).toBe(1);
      // The second connection resumed the first one's TLS session.
      expect(doq.poolStats()).toMatchObject({ opened: 2, reconnects: 1, resumed: 1, open: 1 });
    } finally {
      await doq.close();
    }
  });

  it("replaces a connection that went idle past idleTimeoutMs", async () => {
    const clock = createManualClock();
    const doq = upstream({ idleTimeoutMs: 10_000, clock });
    try {
      const ask = () => doq.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(3000));
      await ask();
      clock.advance(9_999);
      expect(doq.poolStats().open).toBe(1);
      clock.advance(1);
      expect(doq.poolStats().open).toBe(0);
      expect(firstAnswer(await ask())).toBe("192.0.2.10");
      expect(doq.poolStats()).toMatchObject({ opened: 2, reconnects: 1, open: 1 });
    } finally {
      await doq.close();
    }
  });

  it("gives up on a connection the server forgot (restarted behind the same address)", async () => {
    const first = await startDoqServer({ ...tls, backendPort: nsd.port });
    const second = await startDoqServer({ ...tls, backendPort: nsd.port });
    const proxy = await startUdpProxy(first.port);
    const clock = createManualClock();
    const doq = upstream({
      port: proxy.port,
      connectTimeoutMs: 100,
      handshakeTimeoutMs: 100,
      clock,
    });
    try {
      const ask = (signal: AbortSignal) => doq.query(buildQuery("www.relay.test", 1), signal);
      expect(firstAnswer(await ask(AbortSignal.timeout(3000)))).toBe("192.0.2.10");
      // The address now leads to a server that never saw the connection and ignores it;
      // the first one's goodbye never gets through.
      proxy.target = second.port;
      await first.stop();
      clock.advance(1);
      const controller = new AbortController();
      const unanswered = ask(controller.signal);
      await new Promise((resolve) => setTimeout(resolve, 0)); // the query goes out
      // Given up on after the connect + handshake allowance with nothing heard since.
      clock.advance(200);
      controller.abort();
      expect((await failure(unanswered)).code).toBe("aborted");
      expect(firstAnswer(await ask(AbortSignal.timeout(3000)))).toBe("192.0.2.10");
      expect(doq.poolStats()).toMatchObject({ opened: 2, reconnects: 1 });
      expect(second.connectionsAccepted).toBe(1);
    } finally {
      await doq.close();
      proxy.close();
      await second.stop();
    }
  });

  it("retries a query caught by the connection closing under it on a fresh one", async () => {
    const doq = upstream({ maxRetries: 2 });
    try {
      await doq.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(3000));
      // No pause: the queries race the close.
      const closing = server.closeConnections();
      const answers = await Promise.all(
        Array.from({ length: 5 }, () =>
          doq.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(5000)),
        ),
      );
      await closing;
      expect(answers.every((answer) => firstAnswer(answer) === "192.0.2.10")).toBe(true);
      expect(doq.poolStats().opened).toBeGreaterThanOrEqual(2);
    } finally {
      await doq.close();
    }
  });

  it("fails an untrusted CA or a wrong name with a TLS error, quickly", async () => {
    const otherCaPem = await readFile(otherCa.caFile, "utf8");
    for (const overrides of [{ ca: otherCaPem }, { servername: "other.test" }, { ca: undefined }]) {
      const doq = upstream(overrides);
      const started = performance.now();
      const error = await failure(
        doq.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(5000)),
      );
      expect(error.code).toBe("tls");
      expect(performance.now() - started).toBeLessThan(1000);
      expect(doq.poolStats()).toMatchObject({ open: 0, opened: 1 });
      await doq.close();
    }
  });

  it("checks an IP-address servername against the certificate's IP SANs", async () => {
    const ok = upstream({ servername: "127.0.0.1" });
    const wrong = upstream({ servername: "127.0.0.2" });
    try {
      const answer = await ok.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(3000));
      expect(firstAnswer(answer)).toBe("192.0.2.10");
      const error = await failure(
        wrong.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(3000)),
      );
      expect(error.code).toBe("tls");
    } finally {
      await ok.close();
      await wrong.close();
    }
  });

  it("fails with connect, not a hang, when nothing answers", async () => {
    const clock = createManualClock();
    const doq = upstream({ port: nsd.port, connectTimeoutMs: 150, handshakeTimeoutMs: 150, clock });
    const outcome = failure(doq.query(buildQuery("www.relay.test", 1), AbortSignal.timeout(5000)));
    await until(() => clock.nextDue() === 300, "the handshake timer runs");
    clock.advance(299);
    expect(doq.poolStats()).toMatchObject({ open: 1, opened: 1 });
    clock.advance(1);
    const error = await outcome;
    expect(error.code).toBe("connect");
    expect(error.message).toMatch(/no QUIC handshake within 300 ms/);
    await doq.close();
  });

  it("rejects promptly with aborted when the caller gives up, and keeps the connection", async () => {
    // Queries asking for recursion (RD, in byte 2) are held until the test ends.
    const { promise: released, resolve: release } = Promise.withResolvers<void>();
    const slow = await startDoqServer({
      ...tls,
      answer: async (query) => {
        if (query[2] === 1) await released;
        return query;
      },
    });
    const doq = upstream({ port: slow.port });
    try {
      await doq.query(
        buildQuery("www.relay.test", 1, { recursionDesired: false }),
        AbortSignal.timeout(3000),
      );
      const controller = new AbortController();
      const pending = doq.query(buildQuery("www.relay.test", 1), controller.signal);
      setTimeout(() => controller.abort(), 50);
      const started = performance.now();
      const error = await failure(pending);
      expect(error.code).toBe("aborted");
      expect(performance.now() - started).toBeLessThan(500);
      const already = await failure(doq.query(buildQuery("www.relay.test", 1), controller.signal));
      expect(already.code).toBe("aborted");
      await doq.query(
        buildQuery("www.relay.test", 1, { recursionDesired: false }),
        AbortSignal.timeout(3000),
      );
      expect(doq.poolStats()).toMatchObject({ opened: 1, inFlight: 0 });
    } finally {
      release();
      await doq.close();
      await slow.stop();
    }
  });

  it("drops the connection of a server that answers under a non-zero ID or too short", async () => {
    const misbehaving = await startDoqServer({
      ...tls,
      keepAnswerId: true,
      // Class 1 (IN) gets an answer under ID 7, class 3 (CH) a 4-byte answer.
      answer: (query) => (query[query.length - 1] === 3 ? new Uint8Array(4) : withId(query, 7)),
    });
    const doq = upstream({ port: misbehaving.port });
    try {
      const ask = (qclass: number) =>
        doq.query(buildQuery("www.relay.test", 1, { qclass }), AbortSignal.timeout(3000));
      expect((await failure(ask(1))).code).toBe("id_mismatch");
      expect((await failure(ask(3))).code).toBe("malformed_answer");
      expect(doq.poolStats()).toMatchObject({ opened: 2, reconnects: 1 });
      expect(misbehaving.connectionsAccepted).toBe(2);
      await until(() => misbehaving.clientCloses.length === 2, "both closes reach the server");
      expect(misbehaving.clientCloses).toEqual([DOQ_ERROR.protocolError, DOQ_ERROR.protocolError]);
    } finally {
      await doq.close();
      await misbehaving.stop();
    }
  });

  it("refuses work past maxInFlight as busy and everything after close as closed", async () => {
    const doq = upstream({ maxInFlight: 2 });
    const signal = AbortSignal.timeout(3000);
    const ask = () => doq.query(buildQuery("www.relay.test", 1), signal);
    const first = [ask(), ask()];
    expect((await failure(ask())).code).toBe("busy");
    await Promise.all(first);
    await doq.close();
    expect(doq.poolStats().open).toBe(0);
    expect((await failure(ask())).code).toBe("closed");
  });
});

describe("the test DoQ server", () => {
  // kdig's +tls-* options switch it to DoT (TCP) when they come after +quic, so +quic goes last.
  const kdig = (hostname: string) =>
    run("kdig", [
      `+tls-ca=${certs.caFile}`,
      `+tls-hostname=${hostname}`,
      "+quic",
      "@127.0.0.1",
      "-p",
      String(server.port),
      "+timeout=2",
      "+retry=0",
      "+short",
      "www.relay.test",
      "A",
    ]);

  it("answers kdig over QUIC, with the certificate checked by kdig", async () => {
    const before = server.connectionsAccepted;
    const seen = server.ids.length;
    const { stdout } = await kdig("dns.test");
    expect(stdout.trim()).toBe("192.0.2.10");
    expect(server.connectionsAccepted - before).toBe(1);
    expect(server.ids.slice(seen)).toEqual([0]);
  });

  it("is refused by kdig under a name its certificate does not carry", async () => {
    const seen = server.ids.length;
    const result = await kdig("other.test").then(
      ({ stdout }) => stdout,
      (error: { stdout?: string }) => error.stdout ?? "",
    );
    expect(result).not.toContain("192.0.2.10");
    // The handshake failed, so no query reached the server.
    expect(server.ids.length).toBe(seen);
  });
});

describe("a relay with a quic:// upstream", () => {
  it("answers dig through DoQ, reaching the upstream by a name only the bootstrap server holds", async () => {
    const relay = await startTestRelay({
      listen: { udp: { addr: "127.0.0.1:5353" } },
      bootstrap: [`127.0.0.1:${nsd.port}`],
      upstreams: [
        {
          name: "doq",
          url: `quic://ns.relay.test:${server.port}`,
          tls_servername: "dns.test",
          ca: certs.caFile,
        },
      ],
    });
    try {
      const before = server.connectionsAccepted;
      const seen = server.ids.length;
      const port = portOf(relay, "udp");
      expect((await dig(port, ["+short", "www.relay.test"])).trim()).toBe("192.0.2.10");
      expect((await dig(port, ["+short", "www.relay.test", "AAAA"])).trim()).toBe("2001:db8::10");
      expect(server.connectionsAccepted - before).toBe(1);
      expect(server.ids.slice(seen)).toEqual([0, 0]);
    } finally {
      await relay.shutdown(1000);
    }
  });
});
