import { describe, expect, it } from "vitest";
import { type DnsRecord, decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readEdns, readId, readQuestion, readRcode } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { createDohApp } from "../../shared/doh/doh-app.ts";

// A tiny authoritative "resolver" over fixed data, answering with real DNS
// messages so the app's encoding, headers and JSON rendering are exercised.
const zone: Record<string, DnsRecord[]> = {
  "www.example.test./1": [{ name: "www.example.test", type: "A", ttl: 300, data: "192.0.2.1" }],
  "www.example.test./28": [
    { name: "www.example.test", type: "AAAA", ttl: 120, data: "2001:db8::1" },
  ],
  "alias.example.test./1": [
    { name: "alias.example.test", type: "CNAME", ttl: 60, data: "mid.example.test" },
    { name: "mid.example.test", type: "CNAME", ttl: 90, data: "www.example.test" },
    { name: "www.example.test", type: "A", ttl: 300, data: "192.0.2.1" },
  ],
  "text.example.test./16": [
    { name: "text.example.test", type: "TXT", ttl: 30, data: [new TextEncoder().encode('a "b"')] },
  ],
  "opaque.example.test./65280": [
    { name: "opaque.example.test", type: "UNKNOWN_65280", ttl: 30, data: Uint8Array.from([1, 2]) },
  ],
};
const soa: DnsRecord = {
  name: "example.test",
  type: "SOA",
  ttl: 600,
  data: {
    mname: "ns1.example.test",
    rname: "admin.example.test",
    serial: 1,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    minimum: 45,
  },
};

function answer(query: Uint8Array): Uint8Array {
  const q = readQuestion(query);
  const records = zone[`${q.name}/${q.type}`];
  const known = Object.keys(zone).some((k) => k.startsWith(`${q.name}/`));
  return encodeMessage({
    type: "response",
    id: readId(query),
    flags: 0x0100 | 0x0080 | (records || known ? 0 : Rcode.NXDOMAIN),
    questions: [
      { name: q.name.replace(/\.$/, ""), type: decodeMessage(query).questions![0]!.type },
    ],
    answers: records ?? [],
    authorities: records ? [] : [soa],
  });
}

function makeApp(resolve = async (q: Uint8Array) => answer(q)) {
  const errors: unknown[] = [];
  const app = createDohApp({ resolve, onError: (e) => errors.push(e) });
  return { app, errors };
}

const base = "http://doh.test";
const query = buildQuery("www.example.test.", 1, { id: 0xbeef });

describe("DoH app (RFC 8484)", () => {
  it("answers GET and POST identically with dns-message and the client's ID", async () => {
    const { app } = makeApp();
    const get = await app.request(`${base}/dns-query?dns=${encodeBase64Url(query)}`);
    const post = await app.request(`${base}/dns-query`, {
      method: "POST",
      body: query,
      headers: { "content-type": "application/dns-message" },
    });
    for (const r of [get, post]) {
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/dns-message");
    }
    const a = new Uint8Array(await get.arrayBuffer());
    const b = new Uint8Array(await post.arrayBuffer());
    expect(a).toEqual(b);
    expect(readId(a)).toBe(0xbeef);
  });

  it("accepts padded base64url too", async () => {
    const { app } = makeApp();
    const padded =
      encodeBase64Url(query) + "=".repeat((4 - (encodeBase64Url(query).length % 4)) % 4);
    const r = await app.request(`${base}/dns-query?dns=${padded}`);
    expect(r.status).toBe(200);
  });

  it("sets Cache-Control max-age to the smallest TTL, SOA minimum when negative", async () => {
    const { app } = makeApp();
    const positive = await app.request(
      `${base}/dns-query?dns=${encodeBase64Url(buildQuery("alias.example.test.", 1))}`,
    );
    expect(positive.headers.get("cache-control")).toBe("max-age=60");
    const negative = await app.request(
      `${base}/dns-query?dns=${encodeBase64Url(buildQuery("nope.example.test.", 1))}`,
    );
    expect(negative.headers.get("cache-control")).toBe("max-age=45");
  });

  it("answers every HTTP error path with its status and a plain-text reason", async () => {
    const { app } = makeApp();
    const cases: [string, RequestInit, number][] = [
      ["/dns-query?dns=!!", {}, 400],
      [
        "/dns-query",
        { method: "POST", body: query, headers: { "content-type": "text/plain" } },
        415,
      ],
      [
        "/dns-query",
        {
          method: "POST",
          body: new Uint8Array(70000),
          headers: { "content-type": "application/dns-message" },
        },
        413,
      ],
      ["/dns-query", { method: "PUT", body: query }, 405],
      ["/dns-query", { method: "DELETE" }, 405],
      ["/elsewhere", {}, 404],
    ];
    for (const [path, init, status] of cases) {
      const r = await app.request(`${base}${path}`, init);
      expect(r.status, path).toBe(status);
      expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
      expect((await r.text()).length).toBeGreaterThan(3);
    }
  });

  it("turns a failing resolver into SERVFAIL with the client's ID, not an HTTP error", async () => {
    const { app, errors } = makeApp(async () => {
      throw new Error("boom");
    });
    const withEdns = buildQuery("www.example.test.", 1, { id: 77, ednsUdpSize: 1232 });
    const r = await app.request(`${base}/dns-query?dns=${encodeBase64Url(withEdns)}`);
    expect(r.status).toBe(200);
    expect(r.headers.get("cache-control")).toBe("max-age=0");
    const body = new Uint8Array(await r.arrayBuffer());
    expect(readId(body)).toBe(77);
    expect(readRcode(body)).toBe(Rcode.SERVFAIL);
    expect(readEdns(body)?.options.some((o) => o.code === 15)).toBe(true);
    expect(errors).toHaveLength(1);
  });

  it("sends CORS headers and answers preflight", async () => {
    const { app } = makeApp();
    const pre = await app.request(`${base}/dns-query`, {
      method: "OPTIONS",
      headers: {
        origin: "https://page.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("*");
    expect(pre.headers.get("access-control-allow-methods")).toContain("POST");
    expect(pre.headers.get("access-control-allow-headers")).toBe("content-type,accept");
    expect(pre.headers.get("access-control-max-age")).toBe("86400");
    const origin = { origin: "https://page.example" };
    const responses = [
      await app.request(`${base}/dns-query?dns=${encodeBase64Url(query)}`, { headers: origin }),
      await app.request(`${base}/resolve?name=example.test`, { headers: origin }),
      await app.request(`${base}/dns-query`, { method: "PUT", headers: origin }),
      await app.request(`${base}/elsewhere`, { headers: origin }),
    ];
    expect(responses.map((r) => r.status)).toEqual([200, 200, 405, 404]);
    for (const response of responses) {
      expect(response.headers.get("access-control-allow-origin")).toBe("*");
      expect(response.headers.get("access-control-expose-headers")).toBe(
        "content-type,cache-control",
      );
    }
  });

  it("serves /healthz", async () => {
    const { app } = makeApp();
    const r = await app.request(`${base}/healthz`);
    expect(r.status).toBe(200);
  });
});

describe("DoH app JSON API", () => {
  const json = async (path: string, init?: RequestInit) => {
    const { app } = makeApp();
    const r = await app.request(`${base}${path}`, init);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/dns-json");
    return r.json();
  };

  it("answers A and AAAA with name, type, TTL and data", async () => {
    expect(await json("/resolve?name=www.example.test&type=A")).toMatchObject({
      Status: 0,
      RD: true,
      RA: true,
      TC: false,
      Question: [{ name: "www.example.test.", type: 1 }],
      Answer: [{ name: "www.example.test.", type: 1, TTL: 300, data: "192.0.2.1" }],
    });
    expect(await json("/resolve?name=www.example.test&type=AAAA")).toMatchObject({
      Answer: [{ type: 28, TTL: 120, data: "2001:db8::1" }],
    });
  });

  it("renders a CNAME chain in order with absolute names", async () => {
    const body = (await json("/resolve?name=alias.example.test")) as { Answer: unknown[] };
    expect(body.Answer).toEqual([
      { name: "alias.example.test.", type: 5, TTL: 60, data: "mid.example.test." },
      { name: "mid.example.test.", type: 5, TTL: 90, data: "www.example.test." },
      { name: "www.example.test.", type: 1, TTL: 300, data: "192.0.2.1" },
    ]);
  });

  it("renders NXDOMAIN with Status 3 and the SOA in Authority", async () => {
    expect(await json("/resolve?name=nope.example.test")).toMatchObject({
      Status: 3,
      Authority: [
        {
          type: 6,
          TTL: 600,
          data: "ns1.example.test. admin.example.test. 1 3600 600 86400 45",
        },
      ],
    });
  });

  it("quotes TXT strings and uses the generic form for unknown types", async () => {
    expect(await json("/resolve?name=text.example.test&type=TXT")).toMatchObject({
      Answer: [{ data: '"a \\"b\\""' }],
    });
    expect(await json("/resolve?name=opaque.example.test&type=65280")).toMatchObject({
      Answer: [{ type: 65280, data: "\\# 2 0102" }],
    });
  });

  it("serves JSON on /dns-query when the client accepts application/dns-json", async () => {
    expect(
      await json("/dns-query?name=www.example.test&type=AAAA", {
        headers: { accept: "application/dns-json" },
      }),
    ).toMatchObject({ Answer: [{ data: "2001:db8::1" }] });
  });
});

describe("DoH app options", () => {
  it("serves DoH at the configured path only", async () => {
    const app = createDohApp({ path: "/secret-q", resolve: async (q) => answer(q) });
    const dns = encodeBase64Url(query);
    expect((await app.request(`${base}/secret-q?dns=${dns}`)).status).toBe(200);
    const elsewhere = await app.request(`${base}/dns-query?dns=${dns}`);
    expect(elsewhere.status).toBe(404);
    expect(await elsewhere.text()).toContain("/secret-q");
  });

  it("hands resolve the address its runtime's getConnInfo reports, not a header", async () => {
    const seen: (string | undefined)[] = [];
    const app = createDohApp({
      getConnInfo: (c) => ({ remote: { address: c.env.peer, addressType: "IPv4" } }),
      resolve: async (q, context) => {
        seen.push(context.clientAddress);
        return answer(q);
      },
    });
    const url = `${base}/dns-query?dns=${encodeBase64Url(query)}`;
    const spoofed = { headers: { "x-forwarded-for": "10.9.9.9", "x-real-ip": "10.9.9.9" } };
    await app.request(url, spoofed, { peer: "192.0.2.7" });
    await createDohApp({
      resolve: async (q, context) => {
        seen.push(context.clientAddress);
        return answer(q);
      },
    }).request(url);
    expect(seen).toEqual(["192.0.2.7", undefined]);
  });
});
