// The worker's request lifecycle inside workerd: every query is its own
// request through the worker's own entry point, so work one request starts belongs to that request,
// as in production. Work shared between requests (block list loads, in-flight
// coalescing, the race's deadlines) must never leave another request hanging:
// a non-DNS first request, an aborted first query, a first client that
// disconnects from a coalesced query, and sustained overlapping load.

import { exports } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import { CONFIG_HEADER } from "./self-worker.ts";

const doh = `http://127.0.0.1:${inject("dohPort")}`;
// nsd "B" straight, not unbound: other tests read unbound's cache TTLs.
const B = `${doh}/b/dns-query`;
/** Answers "<ms>.<name>" A after <ms> ms (test/support/delay-dns-server.ts). */
const SLOW = `${doh}/slow/dns-query`;
const HANG = `${doh}/fault/hang`;

/** A fresh name, so no cache or earlier query answers it. */
const fresh = (prefix: string) => `${prefix}.${crypto.randomUUID()}.lifecycle.test.`;

interface Asked {
  status: number;
  rcode: number | undefined;
  id: number | undefined;
  ms: number;
  body: string;
}

async function post(config: unknown, name: string, signal?: AbortSignal, id = 7): Promise<Asked> {
  const started = Date.now();
  const response = await exports.default.fetch("https://edge.test/dns-query", {
    method: "POST",
    headers: {
      "content-type": "application/dns-message",
      [CONFIG_HEADER]: JSON.stringify(config),
    },
    body: buildQuery(name, 1, { id, ednsUdpSize: 1232 }),
    signal: signal ?? AbortSignal.timeout(15_000),
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  const dns = response.status === 200 && bytes.length >= 12;
  return {
    status: response.status,
    rcode: dns ? readRcode(bytes) : undefined,
    id: dns ? readId(bytes) : undefined,
    ms: Date.now() - started,
    body: dns ? "" : new TextDecoder().decode(bytes).slice(0, 200),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("worker request lifecycle", () => {
  it("answers a query after a non-DNS first request started the block list load", async () => {
    const config = {
      upstreams: [{ name: "b", url: B }],
      blocklists: [{ url: `${doh}/lists/lifecycle-${crypto.randomUUID()}.txt` }],
    };
    const health = await exports.default.fetch("https://edge.test/healthz", {
      headers: { [CONFIG_HEADER]: JSON.stringify(config) },
    });
    expect(await health.text()).toBe("ok\n");
    const answer = await post(config, "www.corp.test.", AbortSignal.timeout(8000));
    expect(answer).toMatchObject({ status: 200, rcode: Rcode.NOERROR, id: 7 });
    expect(answer.ms).toBeLessThan(3000);
    // The load the health check started finished: listed names are blocked.
    const blocked = await post(config, "x.blocked.example.test.", AbortSignal.timeout(8000));
    expect(blocked).toMatchObject({ status: 200, rcode: Rcode.NXDOMAIN });
  });

  it("still times out later queries after the first query of an isolate was aborted", async () => {
    // A route whose only upstream never answers: only the route's deadline
    // ends a query. The aborted first query must not take that deadline along.
    const config = {
      upstreams: [{ name: "hang", url: HANG }],
      routes: [{ zones: ["."], upstreams: ["hang"], timeout: "1s" }],
      cache: { size: 0 },
    };
    const first = new AbortController();
    const aborted = post(config, fresh("first"), first.signal).catch((error: unknown) => error);
    await sleep(300);
    first.abort();
    expect(await aborted).toBeInstanceOf(Error);
    const next = await post(config, fresh("next"), AbortSignal.timeout(8000));
    expect(next).toMatchObject({ status: 200, rcode: Rcode.SERVFAIL, id: 7 });
    expect(next.ms).toBeLessThan(2500);
  });

  it("answers every identical query when the client that started it disconnects", async () => {
    const config = {
      upstreams: [{ name: "slow", url: SLOW }],
      routes: [{ zones: ["."], upstreams: ["slow"], timeout: "3s" }],
    };
    // Warm the isolate for this config, so the first query below starts the resolution.
    expect((await post(config, fresh("0"))).status).toBe(200);
    const name = fresh("600");
    const first = new AbortController();
    const starter = post(config, name, first.signal, 1).catch((error: unknown) => error);
    await sleep(100);
    const joiners = [2, 3, 4, 5].map((id) => post(config, name, AbortSignal.timeout(8000), id));
    await sleep(100);
    first.abort();
    expect(await starter).toBeInstanceOf(Error);
    const answers = await Promise.all(joiners);
    for (const [i, answer] of answers.entries()) {
      expect(answer).toMatchObject({ status: 200, rcode: Rcode.NOERROR, id: i + 2 });
      expect(answer.ms).toBeLessThan(4000);
    }
  });

  it("answers every query of a sustained mixed load (10 s): distinct names and bursts of 9 identical", async () => {
    const config = { upstreams: [{ name: "b", url: B }] };
    expect((await post(config, fresh("warm"))).status).toBe(200);
    const end = Date.now() + 10_000;
    const results: Asked[] = [];
    let n = 0;
    const distinct = async (loop: number) => {
      while (Date.now() < end) results.push(await post(config, `d${loop}-${n++}.example.test.`));
    };
    const bursts = async (loop: number) => {
      while (Date.now() < end) {
        const name = `b${loop}-${n++}.example.test.`;
        results.push(...(await Promise.all(Array.from({ length: 9 }, () => post(config, name)))));
      }
    };
    await Promise.all([distinct(1), distinct(2), bursts(1), bursts(2)]);
    const failed = results.filter((r) => r.status !== 200 || r.rcode === undefined);
    const servfail = results.filter((r) => r.rcode === Rcode.SERVFAIL);
    console.log(
      `mixed load: ${results.length} requests in 10 s, ${failed.length} not DNS answers, ${servfail.length} SERVFAIL`,
    );
    expect(results.length).toBeGreaterThan(200);
    expect(failed.slice(0, 3)).toEqual([]);
    expect(servfail.length).toBe(0);
  }, 40_000);
});
