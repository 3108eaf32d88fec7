// The worker's `via` upstreams through a real relay process (see
// global-setup.ts): the worker POSTs to the relay's origin endpoint, the
// relay asks unbound (in front of nsd "A", which answers 192.0.2.1) with
// its own UDP, pooled TCP or DoQ transport (DoQ through the suite's DoQ
// server in front of unbound).

import { describe, expect, inject, it } from "vitest";
import { handle } from "../../edge-worker/src/index.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";

const relayUrl = `http://127.0.0.1:${inject("relayOriginPort")}/`;

/** A worker config whose only upstream is `name`, reached via the relay "lan". */
const viaRelay = (name: string) => ({
  relays: [{ name: "lan", url: relayUrl, token_secret: "RELAY_TOKEN" }],
  upstreams: [{ name, url: "udp://192.0.2.53", via: "lan" }],
  routes: [{ zones: ["."], upstreams: [name], timeout: "3s" }],
});

async function ask(config: unknown, name: string, token: string, id = 2468) {
  const query = buildQuery(name, 1, { id, ednsUdpSize: 1232 });
  const response = await handle(
    new Request(`https://edge.test/dns-query?dns=${encodeBase64Url(query)}`),
    { DOH_CONFIG: config, RELAY_TOKEN: token },
  );
  expect(response.status).toBe(200);
  return new Uint8Array(await response.arrayBuffer());
}

const addresses = (answer: Uint8Array) =>
  (decodeMessage(answer).answers ?? []).filter((r) => r.type === "A").map((r) => r.data);

describe("edge worker via a relay's origin endpoint", () => {
  it("gets real data through the relay's UDP, pooled TCP and DoQ transports", async () => {
    for (const upstream of ["lan-udp", "lan-tcp", "lan-doq"]) {
      const answer = await ask(viaRelay(upstream), "www.example.test.", inject("relayToken"));
      expect(readRcode(answer)).toBe(Rcode.NOERROR);
      expect(readId(answer)).toBe(2468);
      expect(addresses(answer)).toEqual(["192.0.2.1"]);
    }
  });

  it("answers NXDOMAIN from real data through the relay", async () => {
    const answer = await ask(viaRelay("lan-udp"), "nope.example.test.", inject("relayToken"));
    expect(readRcode(answer)).toBe(Rcode.NXDOMAIN);
  });

  it("answers SERVFAIL when the relay refuses the secret (401)", async () => {
    const answer = await ask(viaRelay("lan-udp"), "www.example.test.", `${inject("relayToken")}x`);
    expect(readRcode(answer)).toBe(Rcode.SERVFAIL);
    expect(addresses(answer)).toEqual([]);
  });

  it("answers SERVFAIL for an upstream the relay does not know (404)", async () => {
    const answer = await ask(viaRelay("lan-unknown"), "www.example.test.", inject("relayToken"));
    expect(readRcode(answer)).toBe(Rcode.SERVFAIL);
  });

  it("answers SERVFAIL when the relay's upstream is down (502)", async () => {
    const answer = await ask(viaRelay("lan-down"), "www.example.test.", inject("relayToken"));
    expect(readRcode(answer)).toBe(Rcode.SERVFAIL);
  });

  it("answers a repeat from the isolate's cache: the relay sees the name once", async () => {
    const metrics = async () => {
      const text = await (
        await fetch(`http://127.0.0.1:${inject("relayMetricsPort")}/metrics`)
      ).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith('doh_relay_queries_total{protocol="origin",rcode="NXDOMAIN"}'));
      return Number(line?.split(" ").pop() ?? 0);
    };
    const before = await metrics();
    const first = await ask(
      viaRelay("lan-udp"),
      "cache-proof.example.test.",
      inject("relayToken"),
      1,
    );
    const second = await ask(
      viaRelay("lan-udp"),
      "Cache-Proof.example.test.",
      inject("relayToken"),
      2,
    );
    expect(readRcode(first)).toBe(Rcode.NXDOMAIN);
    expect(readRcode(second)).toBe(Rcode.NXDOMAIN);
    expect(readId(second)).toBe(2);
    expect(decodeMessage(second).questions?.[0]?.name).toBe("Cache-Proof.example.test");
    expect((await metrics()) - before).toBe(1);
  });
});
