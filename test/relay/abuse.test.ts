// Abuse of a live relay: ACL bypass attempts with IPv4-mapped sources, UDP
// amplification, malformed and random traffic on every listener while a good
// client keeps querying, connection floods, and hostile query names in logs.
// Upstream: real nsd with the relay test zone. Every load is bounded.

import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../relay/src/log.ts";
import { type Relay, startRelay } from "../../relay/src/relay.ts";
import { frameMessage } from "../../shared/dns/framing.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readHeader, readId, readRcode } from "../../shared/dns/wire.ts";
import {
  createTestCertificates,
  type RunningServer,
  startNsd,
  type TestCertificates,
} from "../support/dns-servers.ts";
import {
  ephemeralConfig,
  portOf,
  startTestRelay,
  tcpPipeline,
  udpFrom,
  ZONE,
} from "./relay-harness.ts";

let nsd: RunningServer;
let certs: TestCertificates;
let relay: Relay;

beforeAll(async () => {
  [nsd, certs] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
  ]);
  relay = await startTestRelay({
    listen: {
      udp: "127.0.0.1:5353",
      tcp: {
        addr: "127.0.0.1:5353",
        max_connections: 40,
        read_timeout: "500ms",
        idle_timeout: "1s",
      },
      dot: {
        addr: "127.0.0.1:853",
        cert: certs.certFile,
        key: certs.keyFile,
        read_timeout: "500ms",
        idle_timeout: "1s",
      },
      doh: {
        addr: "127.0.0.1:443",
        cert: certs.certFile,
        key: certs.keyFile,
        read_timeout: "500ms",
      },
      metrics: "127.0.0.1:9153",
    },
    upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
    // Garbage that nsd ignores gets its SERVFAIL well inside the tests' waits.
    routes: [{ zones: ["."], upstreams: ["nsd"], timeout: "1s" }],
    rate_limit: { qps: 0, max_in_flight: 0 },
  });
});

afterAll(async () => {
  await relay?.shutdown(500);
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

const good = (id: number) => buildQuery("www.relay.test", 1, { id });

/** A client asking every 20 ms while `work` runs; resolves with [sent, answered correctly]. */
async function whileGoodClientAsks(work: () => Promise<unknown>): Promise<[number, number]> {
  let running = true;
  let sent = 0;
  let answered = 0;
  const client = (async () => {
    while (running) {
      const id = sent++ & 0xffff;
      const answer = await udpFrom("127.0.0.1", portOf(relay, "udp"), good(id), 2000);
      if (answer && readId(answer) === id && readRcode(answer) === Rcode.NOERROR) answered++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    await work();
  } finally {
    running = false;
    await client;
  }
  return [sent, answered];
}

describe("access control cannot be bypassed", () => {
  it("matches IPv4-mapped sources on a dual-stack listener as IPv4", async () => {
    const dual = await startTestRelay({
      listen: { udp: "[::]:5353", tcp: "[::]:5353" },
      allow: ["127.0.0.1/32"],
      upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
    });
    try {
      const port = portOf(dual, "udp");
      const allowed = await udpFrom("127.0.0.1", port, good(1));
      const other = await udpFrom("127.0.0.2", port, good(2));
      expect(readRcode(allowed as Uint8Array)).toBe(Rcode.NOERROR);
      // 127.0.0.2 arrives as ::ffff:127.0.0.2 and is still outside 127.0.0.1/32.
      expect(readRcode(other as Uint8Array)).toBe(Rcode.REFUSED);
      expect(readHeader(other as Uint8Array).ancount).toBe(0);
    } finally {
      await dual.shutdown(200);
    }
  });

  it("is closed by default to public sources (no allow key)", () => {
    const config = ephemeralConfig({ upstreams: [{ name: "nsd", url: "udp://127.0.0.1" }] });
    const texts = config.allow.map((c) => `${c.family}/${c.prefix}`);
    expect(texts).not.toContain("4/0");
    expect(texts).not.toContain("6/0");
  });
});

describe("UDP answers are bounded (no amplification)", () => {
  it.each([
    { edns: undefined, limit: 512 },
    { edns: 600, limit: 600 },
    { edns: 1232, limit: 1232 },
  ])(
    "a big answer to a query with EDNS size $edns stays within $limit bytes",
    async ({ edns, limit }) => {
      const query = buildQuery(
        "big.relay.test",
        16,
        edns === undefined ? { id: 3 } : { id: 3, ednsUdpSize: edns },
      );
      const answer = (await udpFrom("127.0.0.1", portOf(relay, "udp"), query)) as Uint8Array;
      expect(answer.length).toBeLessThanOrEqual(limit);
      // The whole TXT RRset is ~830 bytes: it fits only in 1232.
      expect(readHeader(answer).tc).toBe(limit < 830);
    },
  );
});

describe("malformed traffic on every listener", () => {
  it("random and mutated UDP datagrams: the relay stays up and keeps answering", async () => {
    const [sent, answered] = await whileGoodClientAsks(async () => {
      const samples = fc.sample(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 600 }),
          fc.uint8Array({ minLength: 12, maxLength: 40 }).map((b) => {
            b[2] = b[2]! & 0x7f; // QR=0: looks like a query
            return b;
          }),
        ),
        1500,
      );
      for (let i = 0; i < samples.length; i += 50) {
        await Promise.all(
          samples
            .slice(i, i + 50)
            .map((bytes) => udpFrom("127.0.0.1", portOf(relay, "udp"), bytes, 150)),
        );
      }
    });
    expect(answered).toBe(sent);
    expect(sent).toBeGreaterThan(5);
  });

  it("hostile TCP and DoT streams: garbage, oversized and zero lengths, slow senders", async () => {
    const port = portOf(relay, "tcp");
    const dotPort = portOf(relay, "dot");
    const open = (tls: boolean): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const socket = tls
          ? tlsConnect({ port: dotPort, host: "127.0.0.1", rejectUnauthorized: false }, () =>
              resolve(socket),
            )
          : connect(port, "127.0.0.1", () => resolve(socket));
        socket.on("error", () => {});
        socket.once("error", reject);
        // Read and discard answers: a paused socket holding unread data never sees the close.
        socket.resume();
      });
    // A slow handshake on a busy machine can let the relay close an early
    // socket before the others are open: a closed socket counts as closed.
    const closedWithin = (socket: Socket, ms: number) =>
      new Promise<boolean>((resolve) => {
        if (socket.destroyed) return resolve(true);
        const timer = setTimeout(() => resolve(false), ms);
        socket.once("close", () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    const [sent, answered] = await whileGoodClientAsks(async () => {
      for (const tls of [false, true]) {
        const cases: ((s: Socket) => void)[] = [
          (s) => s.write(randomBytes(3000)), // garbage
          (s) => s.write(Buffer.from([0xff, 0xff, 1, 2, 3])), // claims 65,535 bytes, sends 3
          (s) => s.write(Buffer.from([0, 0, 0, 0])), // zero-length frames
          (s) => s.write(Buffer.from([0])), // half a length prefix, then nothing (slowloris)
          (s) => s.write(frameMessage(randomBytes(40))), // one whole garbage message, then idle
        ];
        const sockets = await Promise.all(cases.map(() => open(tls)));
        sockets.forEach((socket, i) => {
          cases[i]?.(socket);
        });
        // Each is closed by the relay: at once for bad framing, after read_timeout for a
        // stall, after idle_timeout when the garbage happened to end on a frame boundary.
        const closed = await Promise.all(sockets.map((s) => closedWithin(s, 6000)));
        expect(closed, `tls=${tls}`).toEqual(cases.map(() => true));
      }
    });
    expect(answered).toBe(sent);
    const ok = await tcpPipeline(port, [frameMessage(good(9)).subarray(2)], 1, 2000);
    expect(readRcode(ok[0] as Uint8Array)).toBe(Rcode.NOERROR);
  });

  it("hostile DoH requests get HTTP errors, and DoH keeps answering", async () => {
    const base = `https://127.0.0.1:${portOf(relay, "doh")}`;
    const { Agent, request } = await import("node:https");
    const agent = new Agent({ rejectUnauthorized: false, keepAlive: false });
    const call = (
      path: string,
      init: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
    ) =>
      new Promise<number>((resolve) => {
        const req = request(
          `${base}${path}`,
          { method: init.method ?? "GET", headers: init.headers, agent },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", () => resolve(-1));
        req.end(init.body);
      });
    const statuses = await Promise.all([
      call("/dns-query?dns=!!!notbase64"),
      call(`/dns-query?dns=${"A".repeat(100_000)}`),
      call("/dns-query", {
        method: "POST",
        headers: { "content-type": "application/dns-message" },
        body: randomBytes(40),
      }),
      call("/dns-query", {
        method: "POST",
        headers: { "content-type": "application/dns-message" },
        body: randomBytes(70_000),
      }),
      call("/dns-query", {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: good(1) as Buffer,
      }),
      call("/dns-query", { headers: { "x-flood": "y".repeat(200_000) } }),
    ]);
    // 400 bad input, 413/414/431 too large, 415 wrong type; -1 = connection refused by the header limit.
    for (const status of statuses) expect([400, 413, 414, 415, 431, -1]).toContain(status);
    expect(statuses.filter((s) => s === 400).length).toBeGreaterThanOrEqual(2);
    const dns = Buffer.from(good(77)).toString("base64url");
    expect(await call(`/dns-query?dns=${dns}`)).toBe(200);
    agent.destroy();
  });
});

describe("floods", () => {
  it("caps TCP connections at max_connections, closes the rest, and memory stays bounded", async () => {
    const port = portOf(relay, "tcp");
    const rss0 = process.memoryUsage().rss;
    const sockets: Socket[] = [];
    const closedEarly = new Set<Socket>();
    for (let i = 0; i < 200; i++) {
      const socket = connect(port, "127.0.0.1");
      socket.on("error", () => {});
      socket.on("close", () => closedEarly.add(socket));
      sockets.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    // At most 40 are kept; the rest were closed at once.
    expect(sockets.length - closedEarly.size).toBeLessThanOrEqual(40);
    expect(closedEarly.size).toBeGreaterThanOrEqual(160);
    const [sent, answered] = await whileGoodClientAsks(
      () => new Promise((r) => setTimeout(r, 200)),
    );
    expect(answered).toBe(sent);
    // The kept ones are idle and close after idle_timeout.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(closedEarly.size).toBe(200);
    for (const s of sockets) s.destroy();
    const ok = await tcpPipeline(port, [good(5)], 1, 2000);
    expect(readRcode(ok[0] as Uint8Array)).toBe(Rcode.NOERROR);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * 1024 * 1024);
  });
});

describe("hostile names in logs", () => {
  it("escapes control characters, quotes and backslashes, one line per event", async () => {
    const lines: string[] = [];
    const logged = await startRelay(
      ephemeralConfig({
        listen: { udp: "127.0.0.1:5353" },
        upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
      }),
      createLogger("debug", (line) => lines.push(line)),
    );
    try {
      // The label bytes: newline, ESC, a quote, a backslash, a NUL.
      const label = String.fromCharCode(10, 27, 34, 92, 0);
      const hostile = buildQuery(
        `${label.replace(/\\/g, "\\\\").replace(/\./g, "\\.")}x.relay.test`,
        1,
        {
          id: 42,
        },
      );
      await udpFrom("127.0.0.1", portOf(logged, "udp"), hostile);
      const long = buildQuery(
        `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.relay.test`,
        1,
        { id: 43 },
      );
      await udpFrom("127.0.0.1", portOf(logged, "udp"), long);
      const text = lines.join("");
      // One JSON object per line; no raw control character anywhere.
      for (const line of text.trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
      expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
      const entry = text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { msg: string; name?: string })
        .find((l) => l.msg === "query" && l.name?.endsWith("x.relay.test."));
      expect(entry?.name).toBe('\\010\\027"\\\\\\000x.relay.test.');
    } finally {
      await logged.shutdown(200);
    }
  });
});
