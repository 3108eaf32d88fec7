// The worker inside workerd against real servers on loopback (see
// global-setup.ts): nsd "A" data answers 192.0.2.1, nsd "B" data 192.0.2.2.

import { describe, expect, inject, it } from "vitest";
import { createSocketDotUpstream } from "../../edge-worker/src/dot-socket.ts";
import { handle } from "../../edge-worker/src/index.ts";
import { workerState } from "../../edge-worker/src/worker-state.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EdeCode, Rcode, readEdns, readId, readRcode } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";

const doh = `http://127.0.0.1:${inject("dohPort")}`;
const A = `${doh}/a/dns-query`;
const B = `${doh}/b/dns-query`;
const fault = (name: string) => `${doh}/fault/${name}`;

type Config = Record<string, unknown>;
const upstream = (name: string, url: string, extra: Config = {}) => ({ name, url, ...extra });
/** One route over `upstreams`; no cache, so every query shows the transport's behaviour. */
const oneRoute = (upstreams: Config[], route: Config = {}): Config => ({
  upstreams,
  routes: [{ zones: ["."], upstreams: upstreams.map((u) => u.name), ...route }],
  cache: { size: 0 },
});

async function ask(
  config: Config | string,
  name: string,
  type = 1,
  env: Record<string, unknown> = {},
): Promise<{ answer: Uint8Array; response: Response; ms: number }> {
  const query = buildQuery(name, type, { id: 4321, ednsUdpSize: 1232 });
  const started = Date.now();
  const response = await handle(
    new Request(`https://edge.test/dns-query?dns=${encodeBase64Url(query)}`),
    { DOH_CONFIG: config, ...env },
  );
  const answer = new Uint8Array(await response.arrayBuffer());
  return { answer, response, ms: Date.now() - started };
}

const addresses = (answer: Uint8Array) =>
  (decodeMessage(answer).answers ?? []).filter((r) => r.type === "A").map((r) => r.data);

describe("edge worker against real upstreams", () => {
  it("answers from real zone data over DoH POST and GET upstreams, with the client's ID", async () => {
    for (const method of ["POST", "GET"]) {
      const { answer, response } = await ask(
        oneRoute([upstream("a", A, { method })]),
        "www.example.test.",
      );
      expect(response.status).toBe(200);
      expect(readId(answer)).toBe(4321);
      expect(addresses(answer)).toEqual(["192.0.2.1"]);
      expect(response.headers.get("cache-control")).toBe("max-age=300");
    }
  });

  it("serves the JSON API from real data, CNAME chain included", async () => {
    const response = await handle(
      new Request("https://edge.test/resolve?name=alias.example.test"),
      {
        DOH_CONFIG: oneRoute([upstream("a", A)]),
      },
    );
    const body = (await response.json()) as { Status: number; Answer: { data: string }[] };
    expect(body.Status).toBe(0);
    expect(body.Answer.map((r) => r.data)).toEqual([
      "mid.example.test.",
      "www.example.test.",
      "192.0.2.1",
    ]);
  });

  it("answers NXDOMAIN from real data with the SOA minimum as max-age", async () => {
    const { answer, response } = await ask(oneRoute([upstream("a", A)]), "nope.example.test.");
    expect(readRcode(answer)).toBe(Rcode.NXDOMAIN);
    expect(response.headers.get("cache-control")).toBe("max-age=45");
  });

  it("reaches DoT over cloudflare:sockets with the expected server name", async () => {
    const tls = `tls://127.0.0.1:${inject("unboundTlsPort")}`;
    const ok = await ask(
      oneRoute([upstream("dot", tls, { tls_servername: "dns.test" })]),
      "www.example.test.",
    );
    expect(addresses(ok.answer)).toEqual(["192.0.2.1"]);
  });

  it("fails DoT with a certificate for another name as SERVFAIL, not a hang", async () => {
    const tls = `tls://127.0.0.1:${inject("unboundTlsPort")}`;
    const bad = await ask(
      oneRoute([upstream("dot", tls, { tls_servername: "other.example" })], { timeout: "2s" }),
      "www.example.test.",
    );
    expect(readRcode(bad.answer)).toBe(Rcode.SERVFAIL);
    expect(bad.ms).toBeLessThan(2500);
  });

  it("sends via-relay upstreams to the relay's origin endpoint with the bearer token", async () => {
    const config = {
      relays: [{ name: "lan", url: `${doh}/` }],
      upstreams: [upstream("origin-b", "udp://10.9.9.9", { via: "lan" })],
      routes: [{ zones: ["."], upstreams: ["origin-b"] }],
    };
    const { answer } = await ask(config, "www.example.test.", 1, { RELAY_TOKEN: "s3cret" });
    expect(addresses(answer)).toEqual(["192.0.2.2"]);
  });
});

describe("edge worker routing and selection", () => {
  it("takes the longest zone and falls past it for excepted names", async () => {
    const config = {
      upstreams: [upstream("a", A), upstream("b", B)],
      routes: [
        { zones: ["."], upstreams: ["a"] },
        { zones: ["corp.test."], upstreams: ["b"], except: ["public.corp.test."] },
      ],
    };
    expect(addresses((await ask(config, "www.corp.test.")).answer)).toEqual(["192.0.2.2"]);
    expect(addresses((await ask(config, "public.corp.test.")).answer)).toEqual(["192.0.2.1"]);
    expect(addresses((await ask(config, "www.example.test.")).answer)).toEqual(["192.0.2.1"]);
  });

  it("answers REFUSED when no route covers the name", async () => {
    const config = {
      upstreams: [upstream("b", B)],
      routes: [{ zones: ["corp.test."], upstreams: ["b"] }],
    };
    expect(readRcode((await ask(config, "www.example.test.")).answer)).toBe(Rcode.REFUSED);
  });

  it("spreads weighted_random picks by weight (80/20 over 200 queries, ±5 sd)", async () => {
    const config = oneRoute([upstream("a", A, { weight: 80 }), upstream("b", B, { weight: 20 })], {
      policy: "weighted_random",
      server_count: 1,
    });
    let fromA = 0;
    for (let i = 0; i < 200; i++) {
      const got = addresses((await ask(config, "www.example.test.")).answer);
      if (got[0] === "192.0.2.1") fromA++;
      else expect(got).toEqual(["192.0.2.2"]);
    }
    expect(fromA).toBeGreaterThan(130);
    expect(fromA).toBeLessThan(190);
  });

  it("races: a hanging upstream does not delay the answer of a live one", async () => {
    const config = oneRoute([upstream("hang", fault("hang")), upstream("b", B)], {
      worker_count: 2,
      race: true,
      timeout: "3s",
    });
    const { answer, ms } = await ask(config, "www.example.test.");
    expect(addresses(answer)).toEqual(["192.0.2.2"]);
    expect(ms).toBeLessThan(1500);
  });

  it("prefers a slower NOERROR over a fast SERVFAIL by default", async () => {
    const config = oneRoute([upstream("bad", fault("servfail")), upstream("a", A)], {
      worker_count: 2,
    });
    expect(addresses((await ask(config, "www.example.test.")).answer)).toEqual(["192.0.2.1"]);
  });

  it("moves to the next upstream after a failure (sequential, one worker)", async () => {
    const config = oneRoute([upstream("bad", fault("status-500")), upstream("b", B)]);
    expect(addresses((await ask(config, "www.example.test.")).answer)).toEqual(["192.0.2.2"]);
  });
});

describe("edge worker failure paths", () => {
  const cases: [string, string][] = [
    ["HTTP 500", fault("status-500")],
    ["wrong content type", fault("wrong-type")],
    ["truncated body", fault("truncated")],
    ["timeout", fault("hang")],
    ["connection refused", `http://127.0.0.1:${inject("closedPort")}/dns-query`],
    ["answer with another message ID", fault("wrong-id")],
    ["DoT certificate from an untrusted CA", `tls://127.0.0.1:${inject("untrustedTlsPort")}`],
  ];
  for (const [label, url] of cases) {
    it(`answers SERVFAIL with an EDE within the timeout: ${label}`, async () => {
      const { answer, response, ms } = await ask(
        oneRoute([upstream("only", url)], { timeout: "800ms" }),
        "www.example.test.",
      );
      expect(response.status).toBe(200);
      expect(readId(answer)).toBe(4321);
      expect(readRcode(answer)).toBe(Rcode.SERVFAIL);
      const ede = readEdns(answer)?.options.find((o) => o.code === 15);
      expect(ede).toBeDefined();
      expect(Object.values(EdeCode)).toContain((ede!.data[0]! << 8) | ede!.data[1]!);
      expect(ms).toBeLessThan(800 + 400);
    });
  }
});

describe("edge worker configuration", () => {
  it("accepts DOH_CONFIG as a JSON string (wrangler dev --var)", async () => {
    const { answer } = await ask(JSON.stringify(oneRoute([upstream("a", A)])), "www.example.test.");
    expect(addresses(answer)).toEqual(["192.0.2.1"]);
  });

  it("answers 500 with the key path for an invalid config, on every path", async () => {
    const bad = { upstreams: [upstream("a", A, { weight: 500 })], routes: [] };
    for (const path of ["/dns-query?dns=AAAA", "/healthz", "/resolve?name=x"]) {
      const response = await handle(new Request(`https://edge.test${path}`), { DOH_CONFIG: bad });
      expect(response.status).toBe(500);
      expect(await response.text()).toMatch(/upstreams\[0\]\.weight/);
    }
  });

  it("rejects plain-DNS upstreams without a relay, saying to use one", async () => {
    const response = await handle(new Request("https://edge.test/healthz"), {
      DOH_CONFIG: oneRoute([upstream("u", "udp://127.0.0.1")]),
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/upstreams\[0\]\.url.*via/);
  });

  it("names the missing relay secret and how to set it", async () => {
    const response = await handle(new Request("https://edge.test/healthz"), {
      DOH_CONFIG: {
        relays: [{ name: "lan", url: "https://relay.example/" }],
        upstreams: [upstream("q", "quic://127.0.0.1", { via: "lan" })],
      },
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/wrangler secret put RELAY_TOKEN/);
  });

  it("rejects worker_count above the platform's 6 connections", async () => {
    const ups = Array.from({ length: 7 }, (_, i) => upstream(`u${i}`, A));
    const response = await handle(new Request("https://edge.test/healthz"), {
      DOH_CONFIG: oneRoute(ups, { worker_count: 7 }),
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toMatch(/routes\[0\]\.worker_count/);
  });
});

describe("edge worker rules", () => {
  const config = {
    upstreams: [upstream("a", A), upstream("b", B)],
    routes: [
      { zones: ["."], upstreams: ["a"] },
      { name: "via-b", zones: ["never.test."], upstreams: ["b"] },
    ],
    rules: [
      { match: { name: "blocked.example.test" }, action: "block" },
      { match: { suffix: "null.example.test" }, action: "block", block_with: "null_ip" },
      { match: { name: "local.example.test" }, action: "local_data", ips: ["fd00::5"], ttl: 30 },
      {
        match: { name: "old.example.test" },
        action: "rewrite",
        rewrite_domain: "alias.example.test",
      },
      { match: { name: "www.corp.test" }, action: "forward", route: "via-b" },
    ],
  };

  it("blocks, answers local data (IPv6) and rewrites onto a CNAME chain, over DoH", async () => {
    expect(readRcode((await ask(config, "blocked.example.test.")).answer)).toBe(Rcode.NXDOMAIN);
    expect(addresses((await ask(config, "x.null.example.test.")).answer)).toEqual(["0.0.0.0"]);
    const local = decodeMessage((await ask(config, "local.example.test.", 28)).answer);
    expect(local.answers).toMatchObject([{ type: "AAAA", data: "fd00::5", ttl: 30 }]);
    const rewritten = decodeMessage((await ask(config, "old.example.test.")).answer);
    expect(rewritten.questions?.[0]?.name).toBe("old.example.test");
    expect(rewritten.answers?.map((r) => [r.name, r.type, r.data])).toEqual([
      ["old.example.test", "CNAME", "mid.example.test"],
      ["mid.example.test", "CNAME", "www.example.test"],
      ["www.example.test", "A", "192.0.2.1"],
    ]);
  });

  it("forwards a rule's names to the named route", async () => {
    // By zone, www.corp.test goes to "a" (192.0.2.1); the rule sends it to "b".
    expect(addresses((await ask(config, "www.corp.test.")).answer)).toEqual(["192.0.2.2"]);
    expect(addresses((await ask(config, "public.corp.test.")).answer)).toEqual(["192.0.2.1"]);
  });
});

describe("the OPT record is hop-by-hop (issue 15.5)", () => {
  /** A GET for `name` whose OPT carries `options` (code, data length). */
  async function askWith(config: Config, options: [number, number][]) {
    const base = buildQuery("www.example.test.", 1, { id: 77, ednsUdpSize: 1232 });
    const rdata = options.flatMap(([code, length]) => [
      code >> 8,
      code & 0xff,
      0,
      length,
      ...new Array<number>(length).fill(code === 10 ? 9 : 0),
    ]);
    const query = Uint8Array.from([
      ...base.subarray(0, base.length - 2),
      0,
      rdata.length,
      ...rdata,
    ]);
    const response = await handle(
      new Request(`https://edge.test/dns-query?dns=${encodeBase64Url(query)}`),
      { DOH_CONFIG: config },
    );
    return new Uint8Array(await response.arrayBuffer());
  }
  const codes = (answer: Uint8Array) => readEdns(answer)?.options.map((o) => o.code) ?? [];

  it("pads the DoH answer to 468-byte blocks for a client that padded, and only then", async () => {
    const config = oneRoute([upstream("a", A)]);
    const padded = await askWith(config, [
      [10, 8],
      [12, 16],
    ]);
    expect(addresses(padded)).toEqual(["192.0.2.1"]);
    expect(padded.length % 468).toBe(0);
    expect(codes(padded)).toEqual([12]);
    const plain = await askWith(config, [[10, 8]]);
    expect(addresses(plain)).toEqual(["192.0.2.1"]);
    expect(codes(plain)).not.toContain(12);
    expect(plain.length).toBeLessThan(468);
  });

  it("pads DoT queries (unbound pads its answer only to a padded query); the client still gets no padding", async () => {
    const port = inject("unboundTlsPort");
    const transport = createSocketDotUpstream({
      name: "dot",
      host: "127.0.0.1",
      port,
      servername: "dns.test",
    });
    const query = buildQuery("www.example.test.", 1, { id: 5, ednsUdpSize: 1232 });
    const raw = await transport.query(query, new AbortController().signal);
    expect(codes(raw)).toContain(12);
    expect(raw.length % 468).toBe(0);

    const config = oneRoute([
      upstream("dot", `tls://127.0.0.1:${port}`, { tls_servername: "dns.test" }),
    ]);
    const plain = await askWith(config, []);
    expect(addresses(plain)).toEqual(["192.0.2.1"]);
    expect(codes(plain)).toEqual([]);
  });
});

describe("edge worker config warnings", () => {
  it("warns that a route's health_check does not run on the worker", () => {
    const state = workerState({
      DOH_CONFIG: oneRoute([upstream("a", A)], { health_check: { interval: "4s" } }),
    });
    expect(state.ok && state.warnings).toContainEqual(
      expect.stringMatching(/^routes\[0\]\.health_check: the worker runs no active health checks/),
    );
  });
});
