// The pipelined TCP/DoT pool against real unbound (plain and DoT with a test
// CA) over real nsd data, plus in-test servers for the faults unbound will
// not produce (a stalled handshake, a delayed answer).

import { execFile } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createStreamPool,
  type StreamPoolOptions,
} from "../../relay/src/transports/stream-pool.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readHeader, readId, readQuestion } from "../../shared/dns/wire.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import {
  type DelayDnsServer,
  delayAnswer,
  startDelayDnsServer,
} from "../support/delay-dns-server.ts";
import {
  createTestCertificates,
  freePort,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { until } from "../support/until.ts";

const run = promisify(execFile);

const ZONE = `$ORIGIN pool.test.
$TTL 300
@    IN SOA ns.pool.test. admin.pool.test. 1 3600 600 86400 300
@    IN NS  ns.pool.test.
ns   IN A   127.0.0.1
${Array.from({ length: 50 }, (_, i) => `h${i} IN A 192.0.2.${i + 1}`).join("\n")}
`;

let nsd: RunningServer;
let certs: TestCertificates;
let unbound: RunningUnbound;
let delay: DelayDnsServer;
let ca: string;

beforeAll(async () => {
  [nsd, certs, delay] = await Promise.all([
    startNsd({ zones: { "pool.test.": ZONE } }),
    createTestCertificates(),
    startDelayDnsServer(),
  ]);
  unbound = await startUnbound({ stubs: { "pool.test.": nsd.port }, tls: certs });
  ca = await readFile(certs.caFile, "utf8");
});

afterAll(async () => {
  await Promise.all([unbound?.stop(), delay?.stop()]);
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

function dotPool(overrides: Partial<StreamPoolOptions> = {}) {
  return tcpPool({
    name: "dot",
    port: unbound.tlsPort as number,
    tls: { servername: "dns.test", ca },
    ...overrides,
  });
}

/** A plain TCP pool to `port` (unbound's, or the delay server's). */
function tcpPool(overrides: Partial<StreamPoolOptions> & { name: string; port: number }) {
  return createStreamPool({
    host: "127.0.0.1",
    size: 2,
    maxInFlight: 100,
    idleTimeoutMs: 5000,
    connectTimeoutMs: 1000,
    handshakeTimeoutMs: 1000,
    maxRetries: 2,
    ...overrides,
  });
}

/** The A address in an answer. */
function address(answer: Uint8Array): string | undefined {
  const record = decodeMessage(answer).answers?.find((r) => r.type === "A");
  return record?.data as string | undefined;
}

/** Established TCP connections whose local port is `port` (the server's side). */
async function serverConnections(port: number): Promise<number> {
  const { stdout } = await run("ss", ["-Htn", "state", "established", `( sport = :${port} )`]);
  return stdout.split("\n").filter((line) => line.trim() !== "").length;
}

describe("DoT pool against unbound", () => {
  it("answers with the server's data and the caller's ID", async () => {
    const pool = dotPool();
    try {
      const answer = await pool.query(
        buildQuery("h7.pool.test", 1, { id: 4242 }),
        AbortSignal.timeout(3000),
      );
      expect(readId(answer)).toBe(4242);
      expect(readQuestion(answer).name).toBe("h7.pool.test.");
      expect(address(answer)).toBe("192.0.2.8");
    } finally {
      await pool.close();
    }
  });

  it("carries 1,000 queries over exactly the pool's 2 TLS connections", async () => {
    const pool = dotPool();
    try {
      let answered = 0;
      // 10 waves of 100 concurrent queries: enough to fill both connections.
      for (let wave = 0; wave < 10; wave++) {
        const answers = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            pool.query(buildQuery(`h${i % 50}.pool.test`, 1), AbortSignal.timeout(5000)),
          ),
        );
        answers.forEach((a, i) => {
          expect(address(a)).toBe(`192.0.2.${(i % 50) + 1}`);
        });
        answered += answers.length;
      }
      expect(answered).toBe(1000);
      const stats = pool.poolStats();
      expect(stats.opened).toBe(2);
      expect(stats.reconnects).toBe(0);
      expect(stats.reused).toBe(998);
      expect(stats.open).toBe(2);
      expect(await serverConnections(unbound.tlsPort as number)).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it("gives concurrent clients with colliding IDs each their own answer", async () => {
    const pool = dotPool({ size: 1 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          pool.query(buildQuery(`h${i}.pool.test`, 1, { id: 7 }), AbortSignal.timeout(5000)),
        ),
      );
      answers.forEach((answer, i) => {
        expect(readId(answer)).toBe(7);
        expect(readQuestion(answer).name).toBe(`h${i}.pool.test.`);
        expect(address(answer)).toBe(`192.0.2.${i + 1}`);
      });
      expect(pool.poolStats().opened).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it("fails a wrong server name or an untrusted CA with a TLS error, not a hang", async () => {
    const wrongName = dotPool({ tls: { servername: "other.test", ca } });
    const untrusted = dotPool({ tls: { servername: "dns.test" } });
    try {
      const started = Date.now();
      for (const pool of [wrongName, untrusted]) {
        const error = await pool
          .query(buildQuery("h1.pool.test", 1), AbortSignal.timeout(3000))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(UpstreamError);
        expect((error as UpstreamError).code).toBe("tls");
      }
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await Promise.all([wrongName.close(), untrusted.close()]);
    }
  });

  it("resumes the TLS session when a connection is replaced", async () => {
    const clock = createManualClock();
    const pool = dotPool({ size: 1, idleTimeoutMs: 100, clock });
    try {
      await pool.query(buildQuery("h1.pool.test", 1), AbortSignal.timeout(3000));
      clock.advance(99);
      expect(pool.poolStats().open).toBe(1);
      clock.advance(1);
      expect(pool.poolStats().open).toBe(0);
      const answer = await pool.query(buildQuery("h2.pool.test", 1), AbortSignal.timeout(3000));
      expect(address(answer)).toBe("192.0.2.3");
      const stats = pool.poolStats();
      expect(stats.opened).toBe(2);
      expect(stats.reconnects).toBe(1);
      expect(stats.resumed).toBe(1);
    } finally {
      await pool.close();
    }
  });
});

describe("DoT pool under server faults", () => {
  it("survives the server closing idle connections: the next query opens a fresh one", async () => {
    const idleServer = await startUnbound({
      stubs: { "pool.test.": nsd.port },
      tls: certs,
      extra: ["tcp-idle-timeout: 200"],
    });
    // Our own idle timer is longer than the server's, so the server closes first.
    const pool = dotPool({ port: idleServer.tlsPort as number, size: 1, idleTimeoutMs: 10_000 });
    try {
      await pool.query(buildQuery("h1.pool.test", 1), AbortSignal.timeout(3000));
      await until(() => pool.poolStats().open === 0, "unbound closes the idle connection");
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          pool.query(buildQuery(`h${i}.pool.test`, 1), AbortSignal.timeout(3000)),
        ),
      );
      answers.forEach((a, i) => {
        expect(address(a)).toBe(`192.0.2.${i + 1}`);
      });
      expect(pool.poolStats().reconnects).toBe(1);
    } finally {
      await pool.close();
      await idleServer.stop();
    }
  });

  it("loses no query in flight when the server restarts mid-load", async () => {
    // Names under t.test. go to the delay server: "400.x.t.test" takes 400 ms,
    // so those queries are still open on the connection when unbound stops.
    const options = {
      stubs: { "pool.test.": nsd.port, "t.test.": delay.port },
      tls: certs,
      extra: ["qname-minimisation: no"],
    };
    let server = await startUnbound(options);
    const ports = { port: server.port, tlsPort: server.tlsPort };
    const pool = dotPool({ port: ports.tlsPort as number, size: 2, maxRetries: 3 });
    try {
      await pool.query(buildQuery("h0.pool.test", 1), AbortSignal.timeout(3000));
      const results: Promise<string | undefined>[] = [];
      const settled = new Set<number>();
      let running = true;
      // A steady stream of queries (20 every 10 ms) across the restart.
      const load = (async () => {
        for (let i = 0; running && i < 4000; i++) {
          const n = i;
          results.push(
            pool
              .query(buildQuery(`h${n % 50}.pool.test`, 1), AbortSignal.timeout(8000))
              .then(address, (e: UpstreamError) => `error:${e.code}`)
              .finally(() => settled.add(n)),
          );
          if (n % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
      const slow = Array.from({ length: 10 }, (_, k) =>
        pool
          .query(buildQuery(`400.s${k}.t.test`, 1), AbortSignal.timeout(8000))
          .then(address, (e: UpstreamError) => `error:${e.code}`),
      );
      await until(() => results.length >= 200, "200 queries sent");
      const sentBeforeStop = results.length;
      const openAtStop = Array.from({ length: sentBeforeStop }, (_, i) => i).filter(
        (i) => !settled.has(i),
      );
      await server.stop();
      server = await startUnbound({ ...options, ports });
      const sentAtRestart = results.length;
      await until(() => results.length >= sentAtRestart + 200, "200 more queries sent");
      running = false;
      await load;
      const outcomes = await Promise.all(results);
      expect(await Promise.all(slow)).toEqual(Array(10).fill("127.0.0.144"));
      // Queries open when the server went away were retried on a fresh
      // connection and answered; queries that found no connection during the
      // restart failed fast with `connect` (the route tries elsewhere); none
      // hung, none failed otherwise, every answer is the right one.
      expect(openAtStop.length).toBeGreaterThan(0);
      for (const i of openAtStop) expect(outcomes[i]).toBe(`192.0.2.${(i % 50) + 1}`);
      outcomes.forEach((outcome, i) => {
        if (outcome?.startsWith("error:")) expect(outcome).toBe("error:connect");
        else expect(outcome).toBe(`192.0.2.${(i % 50) + 1}`);
      });
      expect(outcomes.filter((o) => !o?.startsWith("error:")).length).toBeGreaterThan(
        sentBeforeStop,
      );
      expect(pool.poolStats().reconnects).toBeGreaterThanOrEqual(1);
      const after = await pool.query(buildQuery("h3.pool.test", 1), AbortSignal.timeout(3000));
      expect(address(after)).toBe("192.0.2.4");
    } finally {
      await pool.close();
      await server.stop();
    }
  });

  it("fails a stalled TLS handshake within handshake_timeout", async () => {
    const sockets = new Set<import("node:net").Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
    });
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, "127.0.0.1", resolve));
    const clock = createManualClock();
    const pool = dotPool({ port, handshakeTimeoutMs: 300, clock });
    try {
      const failed = pool
        .query(buildQuery("h1.pool.test", 1), AbortSignal.timeout(5000))
        .catch((e: unknown) => e);
      await until(() => sockets.size === 1, "the server accepts the connection");
      // Connected: the connect timer made way for the handshake timer.
      await until(() => clock.nextDue() === 300, "the handshake timer runs");
      clock.advance(299);
      expect(await Promise.race([failed, "pending"])).toBe("pending");
      clock.advance(1);
      const error = (await failed) as UpstreamError;
      expect(error.code).toBe("tls");
      expect(error.message).toMatch(/handshake timeout/);
    } finally {
      await pool.close();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("fails fast with connect while reconnect backoff holds, after a refused connect", async () => {
    const port = await freePort();
    const pool = dotPool({ port });
    try {
      await expect(
        pool.query(buildQuery("h1.pool.test", 1), AbortSignal.timeout(2000)),
      ).rejects.toMatchObject({ code: "connect" });
      await expect(
        pool.query(buildQuery("h1.pool.test", 1), AbortSignal.timeout(2000)),
      ).rejects.toThrow(/reconnect backoff/);
      expect(pool.poolStats().opened).toBe(1);
    } finally {
      await pool.close();
    }
  });
});

describe("TCP pool against a server that breaks framing", () => {
  it("retries the queries of a connection that sent a frame too short for DNS on a fresh one", async () => {
    let connections = 0;
    const server = createServer((socket) => {
      const first = ++connections === 1;
      socket.on("error", () => {});
      const reader = createFrameReader();
      socket.on("data", (chunk: Buffer) => {
        for (const query of reader.push(new Uint8Array(chunk))) {
          // The first connection answers with 4 bytes: no ID to match, so it fails whole.
          const reply = first ? new Uint8Array(4) : delayAnswer(query)?.answer;
          if (reply) socket.write(frameMessage(reply));
        }
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    const pool = tcpPool({ name: "framing", port, size: 1, maxRetries: 1 });
    try {
      const answers = await Promise.all(
        [3, 4].map((n) => pool.query(buildQuery(`${n}.t.test`, 1), AbortSignal.timeout(3000))),
      );
      expect(answers.map(address)).toEqual(["127.0.0.3", "127.0.0.4"]);
      expect(pool.poolStats()).toMatchObject({ opened: 2, reconnects: 1, inFlight: 0 });
    } finally {
      await pool.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("DoT pool with a client certificate", () => {
  it("presents cert/key to a server that requires one, and fails without them", async () => {
    const f = (name: string) => join(certs.dir, name);
    await run("openssl", [
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      f("client.key"),
      "-out",
      f("client.csr"),
      "-subj",
      "/CN=relay client",
    ]);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      f("client.csr"),
      "-CA",
      certs.caFile,
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-out",
      f("client.pem"),
      "-days",
      "1",
    ]);
    const [serverCert, serverKey, clientCert, clientKey] = await Promise.all(
      ["server.pem", "server.key", "client.pem", "client.key"].map((n) => readFile(f(n), "utf8")),
    );
    let verifiedPeer = "";
    const server = createTlsServer(
      { cert: serverCert, key: serverKey, ca, requestCert: true, rejectUnauthorized: true },
      (socket) => {
        verifiedPeer = String(socket.getPeerCertificate().subject?.CN ?? "");
        socket.on("error", () => socket.destroy());
        const reader = createFrameReader();
        socket.on("data", (chunk: Buffer) => {
          for (const query of reader.push(new Uint8Array(chunk))) {
            const reply = delayAnswer(query);
            if (reply) socket.write(frameMessage(reply.answer));
          }
        });
      },
    );
    server.on("tlsClientError", () => {});
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    const withCert = dotPool({
      port,
      tls: { servername: "dns.test", ca, cert: clientCert, key: clientKey },
    });
    const withoutCert = dotPool({ port });
    try {
      const answer = await withCert.query(buildQuery("9.mtls.test", 1), AbortSignal.timeout(3000));
      expect(address(answer)).toBe("127.0.0.9");
      expect(verifiedPeer).toBe("relay client");
      const error = await withoutCert
        .query(buildQuery("9.mtls.test", 1), AbortSignal.timeout(3000))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UpstreamError);
      expect(["tls", "read"]).toContain((error as UpstreamError).code);
    } finally {
      await Promise.all([withCert.close(), withoutCert.close()]);
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("TCP pool", () => {
  it("answers with the caller's ID over one pipelined connection", async () => {
    const pool = tcpPool({ name: "tcp", port: unbound.port });
    try {
      for (let i = 0; i < 5; i++) {
        const answer = await pool.query(
          buildQuery(`h${i}.pool.test`, 1, { id: 31337 }),
          AbortSignal.timeout(3000),
        );
        expect(readId(answer)).toBe(31337);
        expect(readHeader(answer).ancount).toBe(1);
      }
      expect(pool.poolStats()).toMatchObject({ opened: 1, fresh: 1, reused: 4 });
    } finally {
      await pool.close();
    }
  });

  it("rejects an aborted query with a typed error and keeps the connection for others", async () => {
    const pool = tcpPool({ name: "slow", port: delay.port, size: 1, maxInFlight: 10 });
    try {
      const before = delay.queries;
      const quitter = new AbortController();
      const slow = pool.query(buildQuery("900.t.test", 1), quitter.signal);
      const fast = pool.query(buildQuery("5.t.test", 1), AbortSignal.timeout(2000));
      // Given up on once the server has it: the connection carries it still.
      await until(() => delay.queries === before + 2, "both queries reach the server");
      quitter.abort();
      await expect(slow).rejects.toMatchObject({ code: "aborted", upstream: "slow" });
      expect(address(await fast)).toBe("127.0.0.5");
      expect(pool.poolStats().opened).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it("waits for a free slot when every connection is at max_in_flight", async () => {
    const pool = tcpPool({ name: "narrow", port: delay.port, size: 1, maxInFlight: 2 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          pool.query(buildQuery(`${50 + i}.t.test`, 1), AbortSignal.timeout(3000)),
        ),
      );
      answers.forEach((a, i) => {
        expect(address(a)).toBe(`127.0.0.${50 + i}`);
      });
      expect(pool.poolStats().opened).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it("drops a query that gives up while waiting for a slot, and serves the next in line", async () => {
    const pool = tcpPool({ name: "single", port: delay.port, size: 1, maxInFlight: 1 });
    try {
      const first = pool.query(buildQuery("200.t.test", 1, { id: 1 }), AbortSignal.timeout(3000));
      const quitter = pool.query(buildQuery("7.t.test", 1, { id: 2 }), AbortSignal.timeout(50));
      const third = pool.query(buildQuery("9.t.test", 1, { id: 3 }), AbortSignal.timeout(3000));
      await expect(quitter).rejects.toMatchObject({ code: "aborted", upstream: "single" });
      expect(address(await first)).toBe("127.0.0.200");
      const answer = await third;
      expect([address(answer), readId(answer)]).toEqual(["127.0.0.9", 3]);
      // The quitter never reached the wire: two queries on the one connection.
      expect(pool.poolStats()).toMatchObject({ opened: 1, fresh: 1, reused: 1, inFlight: 0 });
    } finally {
      await pool.close();
    }
  });
});
