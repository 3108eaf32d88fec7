// The relay's fault matrix: for each upstream fault over each transport it
// applies to, a relay with two routes:
//   mixed.test. → [faulty, healthy] (sequential: faulty first)
//   only.test.  → [faulty]
// and the assertions: every client query gets an answer within the route's
// timeout (+ slack) — NOERROR through the healthy upstream, or SERVFAIL with
// an Extended DNS Error when only the faulty one exists; the counters name
// what happened; a failing upstream is marked down and readmitted once it
// recovers and fail_timeout has passed.

import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EDE_OPTION_CODE, Rcode, readEdns, readId, readRcode } from "../../shared/dns/wire.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import { createTestCertificates, type TestCertificates } from "../support/dns-servers.ts";
import { type FaultMode, type FaultServer, startFaultServer } from "../support/fault-server.ts";
import { httpGet, portOf, startTestRelay, udpFrom } from "./relay-harness.ts";

const MIXED_TIMEOUT_MS = 1500;
const ONLY_TIMEOUT_MS = 1000;
const FAIL_TIMEOUT_MS = 1000;
const SLACK_MS = 400;

type Transport = "udp" | "tcp" | "tls";

interface FaultCase {
  fault: string;
  transport: Transport;
  mode: FaultMode;
  /** The error class the faulty upstream's failures are counted under; undefined = it still answers. */
  errorClass?: string;
  /** A TLS setting that makes every handshake fail (the server itself is fine). */
  tls?: "wrong_name" | "untrusted";
  /** Stop the server (connection refused) instead of a mode. */
  refuse?: boolean;
  /** The faulty upstream answers, but every answer is SERVFAIL. */
  storm?: boolean;
}

const CASES: FaultCase[] = [
  {
    fault: "connection refused",
    transport: "udp",
    mode: "ok",
    refuse: true,
    errorClass: "request_send_failed",
  },
  {
    fault: "connection refused",
    transport: "tcp",
    mode: "ok",
    refuse: true,
    errorClass: "connect_failed",
  },
  {
    fault: "connection refused",
    transport: "tls",
    mode: "ok",
    refuse: true,
    errorClass: "connect_failed",
  },
  { fault: "blackholed", transport: "udp", mode: "blackhole", errorClass: "timeout" },
  { fault: "accepts, never answers", transport: "tcp", mode: "blackhole", errorClass: "timeout" },
  { fault: "accepts, never answers", transport: "tls", mode: "blackhole", errorClass: "timeout" },
  { fault: "TLS handshake stalls", transport: "tls", mode: "tls_stall", errorClass: "tls_failed" },
  { fault: "slower than the timeout", transport: "udp", mode: "slow", errorClass: "timeout" },
  { fault: "slower than the timeout", transport: "tls", mode: "slow", errorClass: "timeout" },
  {
    fault: "malformed answer",
    transport: "udp",
    mode: "malformed",
    errorClass: "response_decode_failed",
  },
  {
    fault: "malformed answer",
    transport: "tls",
    mode: "malformed",
    errorClass: "response_decode_failed",
  },
  {
    fault: "partial answer, then close",
    transport: "tcp",
    mode: "partial_close",
    errorClass: "response_read_failed",
  },
  {
    fault: "partial answer, then close",
    transport: "tls",
    mode: "partial_close",
    errorClass: "response_read_failed",
  },
  {
    fault: "certificate for another name",
    transport: "tls",
    mode: "ok",
    tls: "wrong_name",
    errorClass: "tls_failed",
  },
  {
    fault: "certificate from an untrusted CA",
    transport: "tls",
    mode: "ok",
    tls: "untrusted",
    errorClass: "tls_failed",
  },
  // A SERVFAIL storm is an answer, not a transport failure: held while the
  // next upstream is asked, and passed on when there is no other.
  { fault: "SERVFAIL storm", transport: "udp", mode: "servfail", storm: true },
  { fault: "SERVFAIL storm", transport: "tls", mode: "servfail", storm: true },
  // Faults the relay absorbs: the faulty upstream still answers every query.
  { fault: "wrong ID first, then the right one", transport: "udp", mode: "wrong_id" },
  { fault: "wrong ID first, then the right one", transport: "tcp", mode: "wrong_id" },
  { fault: "truncated answer (retried over TCP)", transport: "udp", mode: "truncated" },
  { fault: "server closes after each answer", transport: "tls", mode: "close_after_answer" },
];

let certs: TestCertificates;
let healthy: DelayDnsServer;

beforeAll(async () => {
  [certs, healthy] = await Promise.all([createTestCertificates(), startDelayDnsServer()]);
});

afterAll(async () => {
  await healthy?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

function faultyUpstream(c: FaultCase, server: FaultServer) {
  const base = {
    name: "faulty",
    timeout: "400ms",
    pool: { connect_timeout: "300ms", handshake_timeout: "300ms", max_retries: 1 },
  };
  if (c.transport === "udp") return { ...base, url: `udp://127.0.0.1:${server.port}` };
  if (c.transport === "tcp") return { ...base, url: `tcp://127.0.0.1:${server.port}` };
  return {
    ...base,
    url: `tls://127.0.0.1:${server.tlsPort}`,
    tls_servername: c.tls === "wrong_name" ? "other.test" : "dns.test",
    ...(c.tls === "untrusted" ? {} : { ca: certs.caFile }),
  };
}

/** One UDP query; its answer and how long it took. */
async function ask(relay: Relay, name: string, id: number) {
  const started = performance.now();
  const answer = await udpFrom(
    "127.0.0.1",
    portOf(relay, "udp"),
    buildQuery(name, 1, { id, ednsUdpSize: 1232 }),
    4000,
  );
  return { answer, ms: performance.now() - started };
}

function metric(text: string, line: RegExp): number {
  const match = text.match(line);
  return match ? Number(match[1]) : 0;
}

async function faultyUp(relay: Relay, zone: string): Promise<boolean> {
  const status = JSON.parse((await httpGet(relay.opsPort as number, "/statusz")).body) as {
    routes: { zones?: string[]; upstreams: { name: string; up: boolean }[] }[];
  };
  const route = status.routes.find((r) => JSON.stringify(r).includes(zone)) ?? status.routes[0];
  return route?.upstreams.find((u) => u.name === "faulty")?.up ?? true;
}

describe.concurrent("relay fault matrix", () => {
  it.each(CASES)("$fault over $transport", async (c) => {
    const server = await startFaultServer(certs);
    server.mode = c.mode;
    server.slowMs = 1200;
    if (c.refuse) await server.stop();
    const relay = await startTestRelay({
      listen: { udp: "127.0.0.1:5353", metrics: "127.0.0.1:9153" },
      upstreams: [
        faultyUpstream(c, server),
        { name: "healthy", url: `udp://127.0.0.1:${healthy.port}` },
      ],
      routes: [
        {
          zones: ["mixed.test."],
          upstreams: ["faulty", "healthy"],
          policy: "sequential",
          timeout: `${MIXED_TIMEOUT_MS}ms`,
          attempt_count: 2,
          fail_timeout: `${FAIL_TIMEOUT_MS}ms`,
        },
        {
          zones: ["only.test."],
          upstreams: ["faulty"],
          timeout: `${ONLY_TIMEOUT_MS}ms`,
          attempt_count: 2,
          fail_timeout: `${FAIL_TIMEOUT_MS}ms`,
        },
      ],
      rate_limit: { qps: 0, max_in_flight: 0 },
    });
    try {
      // Every query through the mixed route is answered, in time, with the data.
      for (let i = 0; i < 6; i++) {
        const { answer, ms } = await ask(relay, `q${i}.mixed.test`, 100 + i);
        expect(answer, `query ${i} unanswered`).toBeDefined();
        expect(readId(answer!)).toBe(100 + i);
        expect(readRcode(answer!)).toBe(Rcode.NOERROR);
        expect(ms).toBeLessThan(MIXED_TIMEOUT_MS + SLACK_MS);
      }
      const metrics = (await httpGet(relay.opsPort as number, "/metrics")).body;
      const faultyWins = metric(metrics, /response_win_count_total\{upstream="faulty"\} (\d+)/);
      const healthyWins = metric(metrics, /response_win_count_total\{upstream="healthy"\} (\d+)/);

      if (c.storm) {
        expect(healthyWins).toBe(6);
        expect(
          metric(metrics, /response_rcode_count_total\{upstream="faulty",rcode="SERVFAIL"\} (\d+)/),
        ).toBe(6);
        expect(metrics).not.toMatch(/request_error_count_total\{upstream="faulty"/);
        // Health tracks transport failures only, as CoreDNS forward and dnsdist do.
        expect(await faultyUp(relay, "mixed.test.")).toBe(true);
        const only = await ask(relay, "q.only.test", 8);
        expect(readRcode(only.answer!)).toBe(Rcode.SERVFAIL);
        expect(only.ms).toBeLessThan(ONLY_TIMEOUT_MS + SLACK_MS);
        return;
      }
      if (c.errorClass === undefined) {
        // Absorbed: the faulty upstream answered everything itself.
        expect(faultyWins).toBe(6);
        expect(metrics).not.toMatch(/request_error_count_total\{upstream="faulty"/);
        return;
      }
      expect(healthyWins).toBe(6);
      const errors = metric(
        metrics,
        new RegExp(
          `request_error_count_total\\{upstream="faulty",error="${c.errorClass}"\\} (\\d+)`,
        ),
      );
      expect(
        errors,
        metrics
          .split("\n")
          .filter((l) => l.includes("faulty"))
          .join("\n"),
      ).toBeGreaterThan(0);
      expect(await faultyUp(relay, "mixed.test.")).toBe(false);

      // Only the faulty upstream: SERVFAIL with an Extended DNS Error, in time.
      const { answer, ms } = await ask(relay, "q.only.test", 7);
      expect(answer).toBeDefined();
      expect(readRcode(answer!)).toBe(Rcode.SERVFAIL);
      expect(readEdns(answer!)?.options.some((o) => o.code === EDE_OPTION_CODE)).toBe(true);
      expect(ms).toBeLessThan(ONLY_TIMEOUT_MS + SLACK_MS);

      // Readmitted once it recovers and fail_timeout has passed.
      if (c.refuse || c.tls) return; // nothing to recover without a new server or config
      server.mode = "ok";
      await new Promise((resolve) => setTimeout(resolve, FAIL_TIMEOUT_MS + 200));
      for (let i = 0; i < 3; i++) await ask(relay, `r${i}.mixed.test`, 200 + i);
      const after = (await httpGet(relay.opsPort as number, "/metrics")).body;
      expect(metric(after, /response_win_count_total\{upstream="faulty"\} (\d+)/)).toBeGreaterThan(
        faultyWins,
      );
      expect(await faultyUp(relay, "mixed.test.")).toBe(true);
    } finally {
      await relay.shutdown(200);
      if (!c.refuse) await server.stop();
    }
  });
});
