// The Fetch-API DoH upstream pads its queries on https (RFC 8467, 128-byte
// blocks) and leaves plain http:// (loopback, tunnels) alone. The fetch seam
// records what would go on the wire and answers with the query echoed as a response.

import { describe, expect, it } from "vitest";
import { buildQuery } from "../../shared/dns/query.ts";
import { readEdns, readId } from "../../shared/dns/wire.ts";
import { decodeBase64Url } from "../../shared/doh/base64url.ts";
import { createFetchDohUpstream } from "../../shared/transport/doh-fetch.ts";

function recordingFetch(sent: Uint8Array[]): typeof fetch {
  return async (input, init) => {
    const url = new URL(String(input));
    const body =
      init?.method === "GET"
        ? decodeBase64Url(url.searchParams.get("dns") ?? "")!
        : new Uint8Array(init?.body as Uint8Array);
    sent.push(body);
    const answer = body.slice();
    answer[2] = answer[2]! | 0x80;
    return new Response(answer, { headers: { "content-type": "application/dns-message" } });
  };
}

describe("createFetchDohUpstream padding", () => {
  const query = buildQuery("www.example.test", 1, { id: 99, ednsUdpSize: 1232 });

  for (const method of ["POST", "GET"] as const) {
    it(`pads ${method} queries to 128-byte blocks over https, keeping the caller's ID`, async () => {
      const sent: Uint8Array[] = [];
      const upstream = createFetchDohUpstream({
        name: "doh",
        url: "https://dns.test/dns-query",
        method,
        fetch: recordingFetch(sent),
      });
      const answer = await upstream.query(query, new AbortController().signal);
      expect(sent).toHaveLength(1);
      expect(sent[0]!.length).toBe(128);
      expect(readEdns(sent[0]!)?.options.map((o) => o.code)).toEqual([12]);
      expect(readId(answer)).toBe(99);
    });
  }

  it("sends http:// queries as they are", async () => {
    const sent: Uint8Array[] = [];
    const upstream = createFetchDohUpstream({
      name: "doh",
      url: "http://127.0.0.1:8080/dns-query",
      fetch: recordingFetch(sent),
    });
    await upstream.query(query, new AbortController().signal);
    expect(sent[0]).toEqual(query);
  });
});
