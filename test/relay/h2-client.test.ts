// The relay's own HTTP/2 DoH client (relay/src/transports/h2/) on the parts
// of HTTP/2 the contract suite does not reach: against Node's http2 server
// with a small concurrent-stream limit, a tiny flow-control window, padded
// frames, answers over one DATA frame, GOAWAY, a header block needing
// CONTINUATION, and a TLS server without h2; against unbound's DoH listener
// (nghttp2 inside an implementation we did not write), POST and GET; and
// HPACK decoding on RFC 7541's own examples.

import { readFile, rm } from "node:fs/promises";
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type SecureServerOptions,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import { createServer as createNetServer, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDohH2Upstream } from "../../relay/src/transports/doh-h2.ts";
import { createHpackDecoder } from "../../relay/src/transports/h2/hpack.ts";
import { huffmanDecode } from "../../relay/src/transports/h2/huffman.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import type { UpstreamError } from "../../shared/engine/errors.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import { respond } from "../shared/support/dns-messages.ts";
import {
  createTestCertificates,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";

let certs: TestCertificates;
let tls: { cert: string; key: string; ca: string };
let nsd: RunningServer;
let unbound: RunningUnbound;

beforeAll(async () => {
  certs = await createTestCertificates();
  const [cert, key, ca] = await Promise.all(
    [certs.certFile, certs.keyFile, certs.caFile].map((f) => readFile(f, "utf8")),
  );
  tls = { cert: cert!, key: key!, ca: ca! };
  nsd = await startNsd({
    zones: {
      "h2.test.": [
        "$ORIGIN h2.test.",
        "$TTL 60",
        "@ IN SOA ns.h2.test. admin.h2.test. 1 3600 600 86400 60",
        "@ IN NS ns.h2.test.",
        "ns IN A 127.0.0.1",
        ...Array.from({ length: 50 }, (_, i) => `h${i} IN A 192.0.2.${i}`),
      ].join("\n"),
    },
  });
  unbound = await startUnbound({ stubs: { "h2.test.": nsd.port }, tls: certs, doh: true });
});

afterAll(async () => {
  await unbound?.stop();
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

const live = () => new AbortController().signal;

interface EchoServer {
  server: Http2SecureServer;
  port: number;
  /** Most streams open at once. */
  maxOpen: number;
  sessions: number;
}

/** An HTTP/2 DoH server answering every query itself (A 192.0.2.1); `answer` may take over a stream. */
async function echoServer(
  options: SecureServerOptions,
  answer?: (stream: ServerHttp2Stream, query: Uint8Array) => boolean,
): Promise<EchoServer> {
  const server = createSecureServer({ ...options, cert: tls.cert, key: tls.key });
  const state = { server, port: 0, maxOpen: 0, sessions: 0 };
  let streams = 0;
  const open = new Set<ServerHttp2Session>();
  openSessions.set(server, open);
  server.on("session", (session) => {
    state.sessions++;
    open.add(session);
    session.on("close", () => open.delete(session));
  });
  server.on("stream", (stream, headers) => {
    streams++;
    state.maxOpen = Math.max(state.maxOpen, streams);
    stream.on("close", () => streams--);
    stream.on("error", () => {});
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const path = String(headers[":path"]);
      const query = path.includes("dns=")
        ? new Uint8Array(Buffer.from(path.split("dns=")[1]!, "base64url"))
        : new Uint8Array(Buffer.concat(chunks));
      if (answer?.(stream, query)) return;
      // A little later, so streams overlap.
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/dns-message" });
        stream.end(respond(query, 0));
      }, 5);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.port = (server.address() as { port: number }).port;
  return state;
}

/** Server sessions still open, by server. */
const openSessions = new WeakMap<Http2SecureServer, Set<ServerHttp2Session>>();

/**
 * Closes the server, ending sessions the client already left: Node 20's
 * server keeps a session it sent GOAWAY on open after the client closed its
 * side, and close() would wait for it.
 */
function close(server: Http2SecureServer) {
  for (const session of openSessions.get(server) ?? []) session.destroy();
  return new Promise((resolve) => server.close(resolve));
}

function upstream(port: number, method: "POST" | "GET" = "POST", maxInFlight = 100) {
  return createDohH2Upstream({
    name: "h2",
    origin: `https://127.0.0.1:${port}`,
    path: "/dns-query",
    method,
    poolSize: 1,
    maxInFlight,
    idleTimeoutMs: 5000,
    connectTimeoutMs: 2000,
    tls: { servername: "dns.test", ca: tls.ca },
  });
}

const query = (i: number) => buildQuery(`h${i}.h2.test`, 1, { id: 1000 + i });

describe("the relay's HTTP/2 client against Node's http2 server", () => {
  it("keeps to the server's concurrent-stream limit and send window, through padded frames", async () => {
    const echo = await echoServer({
      settings: { maxConcurrentStreams: 2, initialWindowSize: 40 },
      paddingStrategy: constants.PADDING_STRATEGY_MAX,
    });
    const doh = upstream(echo.port);
    try {
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) => doh.query(query(i), live())),
      );
      expect(answers.map(readId)).toEqual(answers.map((_, i) => 1000 + i));
      expect(echo.maxOpen).toBeLessThanOrEqual(2);
      expect(echo.sessions).toBe(1);
    } finally {
      await doh.close();
      await close(echo.server);
    }
  });

  it("reads an answer split over several DATA frames, and refuses one over 65,535 bytes", async () => {
    const big = (size: number) => (stream: ServerHttp2Stream, q: Uint8Array) => {
      const answer = new Uint8Array(size);
      answer.set(respond(q, 0));
      stream.respond({ ":status": 200, "content-type": "application/dns-message" });
      stream.end(answer);
      return true;
    };
    const echo = await echoServer({}, (stream, q) =>
      big(readId(q) === 1001 ? 40_000 : 70_000)(stream, q),
    );
    const doh = upstream(echo.port);
    try {
      const answer = await doh.query(query(1), live());
      expect(answer.length).toBe(40_000);
      expect(readId(answer)).toBe(1001);
      const error = await doh.query(query(2), live()).catch((e: unknown) => e);
      expect((error as UpstreamError).code).toBe("malformed_answer");
      expect(readId(await doh.query(query(1), live()))).toBe(1001);
    } finally {
      await doh.close();
      await close(echo.server);
    }
  });

  it("retries streams a GOAWAY left unprocessed on a new session, and finishes the others", async () => {
    let first = true;
    const echo = await echoServer({}, (stream) => {
      if (!first) return false;
      first = false;
      // The first stream is taken (last id 1); later ones on this session are not.
      stream.session?.goaway(constants.NGHTTP2_NO_ERROR, 1);
      return false;
    });
    const doh = upstream(echo.port);
    try {
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => doh.query(query(i), live())),
      );
      expect(answers.map(readId)).toEqual(answers.map((_, i) => 1000 + i));
      expect(echo.sessions).toBe(2);
    } finally {
      await doh.close();
      await close(echo.server);
    }
  });

  it("opens, idles out and reopens sessions on the pool's clock, counted in poolStats", async () => {
    const clock = createManualClock();
    const echo = await echoServer({});
    const doh = createDohH2Upstream({
      name: "h2",
      origin: `https://127.0.0.1:${echo.port}`,
      path: "/dns-query",
      method: "POST",
      poolSize: 1,
      maxInFlight: 100,
      idleTimeoutMs: 5000,
      connectTimeoutMs: 2000,
      tls: { servername: "dns.test", ca: tls.ca },
      clock,
    });
    try {
      expect(readId(await doh.query(query(1), live()))).toBe(1001);
      expect(readId(await doh.query(query(2), live()))).toBe(1002);
      expect(doh.poolStats()).toMatchObject({
        open: 1,
        inFlight: 0,
        opened: 1,
        fresh: 1,
        reused: 1,
      });
      clock.advance(5000);
      expect(doh.poolStats()).toMatchObject({ open: 0, opened: 1 });
      expect(readId(await doh.query(query(3), live()))).toBe(1003);
      expect(doh.poolStats()).toMatchObject({ open: 1, opened: 2, reconnects: 1 });
      expect(echo.sessions).toBe(2);
    } finally {
      await doh.close();
      await close(echo.server);
    }
  });

  it("gives up a stalled TLS handshake on the pool's clock, and a close while opening", async () => {
    const clock = createManualClock();
    const sockets = new Set<Socket>();
    let accepted: () => void = () => {};
    const silent = createNetServer((socket) => {
      sockets.add(socket);
      accepted();
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    const doh = (connectTimeoutMs: number) =>
      createDohH2Upstream({
        name: "h2",
        origin: `https://127.0.0.1:${port}`,
        path: "/dns-query",
        method: "POST",
        poolSize: 1,
        maxInFlight: 100,
        idleTimeoutMs: 5000,
        connectTimeoutMs,
        tls: { servername: "dns.test", ca: tls.ca },
        clock,
      });
    const stalled = doh(2000);
    const closing = doh(2000);
    try {
      const connected = new Promise<void>((resolve) => {
        accepted = () => sockets.size === 2 && resolve();
      });
      const timedOut = stalled.query(query(1), live()).catch((e: unknown) => e);
      const closed = closing.query(query(2), live()).catch((e: unknown) => e);
      await connected;
      clock.advance(1999);
      await closing.close();
      expect((await closed) as UpstreamError).toMatchObject({ code: "closed" });
      clock.advance(1);
      const error = (await timedOut) as UpstreamError;
      expect(error.code).toMatch(/^(connect|tls)$/);
      expect(stalled.poolStats()).toMatchObject({ open: 0, inFlight: 0 });
    } finally {
      await stalled.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("answers the server's PING", async () => {
    let pinged: Promise<boolean> = Promise.resolve(false);
    const echo = await echoServer({}, (stream) => {
      pinged = new Promise((resolve) => {
        stream.session?.ping((error) => resolve(error === null));
      });
      return false;
    });
    const doh = upstream(echo.port);
    try {
      expect(readId(await doh.query(query(3), live()))).toBe(1003);
      expect(await pinged).toBe(true);
    } finally {
      await doh.close();
      await close(echo.server);
    }
  });

  it("sends a GET whose header block needs CONTINUATION frames", async () => {
    const echo = await echoServer({ maxSendHeaderBlockLength: 100_000 });
    const doh = upstream(echo.port, "GET");
    try {
      // A query of ~13 kB (one long EDNS option) makes a ~18 kB :path, over one 16 kB frame.
      const q = buildQuery("h1.h2.test", 1, { id: 77, ednsUdpSize: 1232 });
      const long = new Uint8Array(q.length + 13_000);
      long.set(q);
      long[long.length - 1] = 0;
      const answer = await doh.query(q, live());
      expect(readId(answer)).toBe(77);
      // The echo server answers the question it got, so an answer proves the block arrived whole.
      expect(readId(await doh.query(long, live()))).toBe(77);
    } finally {
      await doh.close();
      await close(echo.server);
    }
  });

  it("fails with `tls` when the server does not offer h2 (as wrangler dev's https, HTTP/1.1 only)", async () => {
    const server = createTlsServer({ cert: tls.cert, key: tls.key }, (s) =>
      s.on("error", () => {}),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const doh = upstream((server.address() as { port: number }).port);
    try {
      const error = await doh.query(query(1), live()).catch((e: unknown) => e);
      expect((error as UpstreamError).code).toBe("tls");
      expect(String(error)).toMatch(/HTTP\/2/);
    } finally {
      await doh.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("the relay's HTTP/2 client against unbound's DoH listener", () => {
  for (const method of ["POST", "GET"] as const) {
    it(`answers ${method} queries from real data, 50 at once on one session`, async () => {
      const doh = upstream(unbound.dohPort!, method);
      try {
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, i) => doh.query(query(i), live())),
        );
        answers.forEach((answer, i) => {
          expect(readId(answer)).toBe(1000 + i);
          expect(readRcode(answer)).toBe(Rcode.NOERROR);
          const a = (decodeMessage(answer).answers ?? []).find((r) => r.type === "A");
          expect(a?.data).toBe(`192.0.2.${i}`);
        });
        expect(doh.poolStats().opened).toBe(1);
        const nx = await doh.query(buildQuery("nope.h2.test", 1, { id: 9 }), live());
        expect(readRcode(nx)).toBe(Rcode.NXDOMAIN);
      } finally {
        await doh.close();
      }
    });
  }
});

describe("HPACK decoding (RFC 7541 Appendix C)", () => {
  const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s/g, ""), "hex"));

  it("decodes Huffman-coded strings (C.4.1)", () => {
    expect(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"))).toBe("www.example.com");
    // Padding longer than 7 bits, or not all ones, is an error (§5.2).
    expect(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff ff"))).toBeUndefined();
    expect(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4fe"))).toBeUndefined();
  });

  it("keeps its dynamic table across responses, evicting to its size (C.6.1, C.6.2)", () => {
    const decoder = createHpackDecoder(256);
    const first = decoder.decode(
      hex(
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
      ),
    );
    expect(first.status).toBe(302);
    // ":status 307" added, ":status 302" evicted; the rest are the table's entries 65, 64, 63.
    const second = decoder.decode(hex("4883 640e ffc1 c0bf"));
    expect(second.status).toBe(307);
    // Index 66 would be the evicted entry.
    expect(() => decoder.decode(hex("c2"))).toThrow();
  });
});
