// The Upstream contract (test/shared/support/upstream-contract.ts, the same
// table the relay's transports run in Node) for the worker's own transports,
// inside workerd: DoH over fetch (POST and GET, built as the worker builds
// them) and DoT over cloudflare:sockets (edge-worker/src/dot-socket.ts), all
// in front of the suite's delay server (global-setup.ts).

import { describe, expect, inject, it } from "vitest";
import { buildTransports } from "../../edge-worker/src/transports.ts";
import { parseWorkerConfig } from "../../shared/config/schema.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import { decodeBase64Url } from "../../shared/doh/base64url.ts";
import type { Upstream } from "../../shared/engine/upstream.ts";
import { createFetchDohUpstream } from "../../shared/transport/doh-fetch.ts";
import { runUpstreamContract } from "../shared/support/upstream-contract.ts";

const doh = `http://127.0.0.1:${inject("dohPort")}`;

/** The worker's transport for one upstream config, built as the worker builds it. */
function workerTransport(upstream: Record<string, unknown>): Upstream {
  const { config } = parseWorkerConfig({ upstreams: [{ name: "u", ...upstream }] });
  return buildTransports(config, {}).get("u")!;
}

runUpstreamContract({
  name: "worker DoH POST (fetch)",
  make: () => workerTransport({ url: `${doh}/slow/dns-query` }),
});
runUpstreamContract({
  name: "worker DoH GET (fetch)",
  make: () => workerTransport({ url: `${doh}/slow/dns-query`, method: "GET" }),
});
runUpstreamContract({
  name: "worker DoT (cloudflare:sockets)",
  make: () =>
    workerTransport({
      url: `tls://127.0.0.1:${inject("delayTlsPort")}`,
      tls_servername: "dns.test",
    }),
});

describe("Upstream contract: worker DoH GET on the wire", () => {
  // The table's wire check needs the server's record, which lives in Node; here
  // the fetch the transport calls sees the wire instead.
  it("sends ID 0 (so HTTP caches can share answers) and returns the caller's", async () => {
    const sent: number[] = [];
    const upstream = createFetchDohUpstream({
      name: "get",
      url: `${doh}/slow/dns-query`,
      method: "GET",
      fetch: (input, init) => {
        const dns = new URL(String(input)).searchParams.get("dns") ?? "";
        sent.push(readId(decodeBase64Url(dns) ?? new Uint8Array(12).fill(0xff)));
        return fetch(input, init);
      },
    });
    const answer = await upstream.query(
      buildQuery("0.get.contract.test", 1, { id: 4242 }),
      new AbortController().signal,
    );
    expect(sent).toEqual([0]);
    expect(readId(answer)).toBe(4242);
  });
});
