// The Upstream contract for the worker's own transports, inside workerd and
// against real servers (global-setup.ts; names in corp.test, since other
// tests read unbound's cache TTLs for example.test): DoH over fetch (POST and GET,
// shared/transport/doh-fetch.ts as the worker builds it) and DoT over
// cloudflare:sockets (edge-worker/src/dot-socket.ts). One table of cases so
// it can move onto the shared runUpstreamContract table later.

import { describe, expect, inject, it } from "vitest";
import { createSocketDotUpstream } from "../../edge-worker/src/dot-socket.ts";
import { buildTransports } from "../../edge-worker/src/transports.ts";
import { parseWorkerConfig } from "../../shared/config/schema.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import { decodeBase64Url } from "../../shared/doh/base64url.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import type { Upstream } from "../../shared/engine/upstream.ts";
import { createFetchDohUpstream } from "../../shared/transport/doh-fetch.ts";

const doh = `http://127.0.0.1:${inject("dohPort")}`;

/** The worker's transport for one upstream config, built as the worker builds it. */
function workerTransport(upstream: Record<string, unknown>): Upstream {
  const { config } = parseWorkerConfig({ upstreams: [{ name: "u", ...upstream }] });
  return buildTransports(config, {}).get("u")!;
}

interface Case {
  name: string;
  /** An upstream that answers www.corp.test from real data, with `address`. */
  answering: () => Upstream;
  address: string;
  /** An upstream to abort a query on, and when to abort (ms after sending; 0: at once). */
  silent: () => Upstream;
  abortAfterMs: number;
}

const CASES: Case[] = [
  {
    name: "DoH POST (fetch)",
    answering: () => workerTransport({ url: `${doh}/b/dns-query` }),
    address: "192.0.2.2",
    silent: () => workerTransport({ url: `${doh}/fault/hang` }),
    abortAfterMs: 20,
  },
  {
    name: "DoH GET (fetch)",
    answering: () => workerTransport({ url: `${doh}/b/dns-query`, method: "GET" }),
    address: "192.0.2.2",
    silent: () => workerTransport({ url: `${doh}/fault/hang`, method: "GET" }),
    abortAfterMs: 20,
  },
  {
    name: "DoT (cloudflare:sockets)",
    answering: () =>
      workerTransport({
        url: `tls://127.0.0.1:${inject("unboundTlsPort")}`,
        tls_servername: "dns.test",
      }),
    address: "192.0.2.1",
    // No DoT server here leaves a query unanswered: abort at once, while
    // the TLS connection is still opening.
    silent: () =>
      createSocketDotUpstream({
        name: "dot",
        host: "127.0.0.1",
        port: inject("unboundTlsPort"),
        servername: "dns.test",
      }),
    abortAfterMs: 0,
  },
];

const addresses = (answer: Uint8Array) =>
  (decodeMessage(answer).answers ?? []).filter((r) => r.type === "A").map((r) => r.data);

describe.each(CASES)("Upstream contract: $name", ({ answering, address, silent, abortAfterMs }) => {
  it("answers with the caller's ID", async () => {
    const upstream = answering();
    for (const id of [0x1234, 0xfffe, 7]) {
      const answer = await upstream.query(
        buildQuery("www.corp.test", 1, { id }),
        new AbortController().signal,
      );
      expect(readId(answer)).toBe(id);
      expect(addresses(answer)).toEqual([address]);
    }
  });

  it("gives the caller its own memory: mutating an answer changes no later one", async () => {
    const upstream = answering();
    const query = buildQuery("www.corp.test", 1, { id: 99 });
    const first = await upstream.query(query, new AbortController().signal);
    expect(first.buffer).not.toBe(query.buffer);
    const copy = first.slice();
    first.fill(0xff);
    expect(readId(query)).toBe(99); // the query is untouched too
    const second = await upstream.query(query, new AbortController().signal);
    expect(second).toEqual(copy);
  });

  it("rejects with aborted for a signal aborted before or during the query", async () => {
    const upstream = silent();
    const query = buildQuery("www.corp.test", 1, { id: 5 });
    await expect(upstream.query(query, AbortSignal.abort())).rejects.toThrow();
    const controller = new AbortController();
    const started = Date.now();
    const pending = upstream.query(query, controller.signal);
    const abort = () => controller.abort(new Error("caller gone"));
    if (abortAfterMs === 0) abort();
    else setTimeout(abort, abortAfterMs);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).code).toBe("aborted");
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe("Upstream contract: DoH GET", () => {
  it("sends ID 0 (so HTTP caches can share answers) and returns the caller's", async () => {
    const sent: number[] = [];
    const upstream = createFetchDohUpstream({
      name: "get",
      url: `${doh}/b/dns-query`,
      method: "GET",
      fetch: (input, init) => {
        const dns = new URL(String(input)).searchParams.get("dns") ?? "";
        sent.push(readId(decodeBase64Url(dns) ?? new Uint8Array(12).fill(0xff)));
        return fetch(input, init);
      },
    });
    const answer = await upstream.query(
      buildQuery("www.corp.test", 1, { id: 4242 }),
      new AbortController().signal,
    );
    expect(sent).toEqual([0]);
    expect(readId(answer)).toBe(4242);
  });
});
