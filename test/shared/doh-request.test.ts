import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildQuery } from "../../shared/dns/query.ts";
import { readQuestion } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { readDohRequest, readJsonQuery } from "../../shared/doh/doh-request.ts";

const base = "https://doh.test/dns-query";
const query = buildQuery("example.com.", 1, { id: 7 });
const post = (body: BodyInit, type = "application/dns-message") =>
  new Request(base, { method: "POST", body, headers: { "content-type": type } });

describe("RFC 8484 request reading", () => {
  it("reads a GET query from the base64url dns parameter", async () => {
    const r = await readDohRequest(new Request(`${base}?dns=${encodeBase64Url(query)}`));
    expect(r).toEqual({ ok: true, value: { format: "wire", query } });
  });

  it("reads a POST body with the dns-message type, parameters allowed", async () => {
    const r = await readDohRequest(post(query, "application/dns-message; charset=binary"));
    expect(r).toEqual({ ok: true, value: { format: "wire", query } });
  });

  it("answers 400 for bad base64url, a missing parameter, a short message, QR set", async () => {
    const cases: [string, RegExp][] = [
      [`${base}?dns=%2B%2B%2B`, /base64url/],
      [base, /missing dns/],
      [`${base}?dns=AAAA`, /shorter than a header/],
    ];
    for (const [url, message] of cases) {
      const r = await readDohRequest(new Request(url));
      expect(r).toMatchObject({ ok: false, status: 400 });
      if (!r.ok) expect(r.message).toMatch(message);
    }
    const response = query.slice();
    response[2]! |= 0x80;
    const r = await readDohRequest(post(response));
    expect(r).toMatchObject({ ok: false, status: 400, message: "not a DNS query: QR bit set" });
  });

  it("answers 415 for a POST with another content type", async () => {
    expect(await readDohRequest(post(query, "text/plain"))).toMatchObject({ status: 415 });
    expect(await readDohRequest(post(query, ""))).toMatchObject({ status: 415 });
  });

  it("answers 408 for a POST body that does not arrive within bodyTimeoutMs", async () => {
    const stalled = new ReadableStream({
      start(controller) {
        controller.enqueue(query.subarray(0, 6)); // and the rest never comes
      },
    });
    const request = new Request(base, {
      method: "POST",
      body: stalled,
      headers: { "content-type": "application/dns-message" },
      // @ts-expect-error Node's fetch needs duplex for a streamed body
      duplex: "half",
    });
    expect(await readDohRequest(request, 50)).toMatchObject({ ok: false, status: 408 });
    expect(await readDohRequest(post(query), 50)).toMatchObject({ ok: true });
  });

  it("answers 413 for a body over 65,535 bytes, declared or streamed", async () => {
    expect(await readDohRequest(post(new Uint8Array(65536)))).toMatchObject({ status: 413 });
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(20000));
        controller.close();
      },
    });
    const r = await readDohRequest(
      new Request(base, {
        method: "POST",
        body: stream,
        headers: { "content-type": "application/dns-message" },
        // @ts-expect-error Node's fetch needs duplex for a streamed body
        duplex: "half",
      }),
    );
    expect(r).toMatchObject({ status: 413 });
  });

  it("answers 405 for other methods", async () => {
    expect(await readDohRequest(new Request(base, { method: "PUT" }))).toMatchObject({
      status: 405,
    });
  });

  it("reads the JSON form with name and type and flags", async () => {
    const r = readJsonQuery(new URL(`${base}?name=Example.org&type=AAAA&do=1&cd=true`));
    expect(r.ok).toBe(true);
    if (!r.ok || r.value.format !== "json") return;
    expect(r.value).toMatchObject({ name: "Example.org.", type: 28 });
    expect(readQuestion(r.value.query)).toMatchObject({ name: "example.org.", type: 28 });
  });

  it("routes GET with Accept: application/dns-json to the JSON form", async () => {
    const r = await readDohRequest(
      new Request(`${base}?name=example.net&type=MX`, {
        headers: { accept: "application/dns-json" },
      }),
    );
    expect(r).toMatchObject({ ok: true, value: { format: "json", type: 15 } });
  });

  it("rejects an unknown type name and an invalid name in the JSON form", () => {
    expect(readJsonQuery(new URL(`${base}?name=a.b&type=NOPE`))).toMatchObject({ status: 400 });
    expect(readJsonQuery(new URL(`${base}?name=a..b`))).toMatchObject({ status: 400 });
    expect(readJsonQuery(new URL(`${base}?type=A`))).toMatchObject({ status: 400 });
  });
});

describe("readDohRequest under arbitrary input", () => {
  const text = fc.string({ maxLength: 300 });
  const bytes = fc.uint8Array({ maxLength: 700 });
  const statuses = [400, 405, 413, 415];
  const settles = (result: Awaited<ReturnType<typeof readDohRequest>>) => {
    if (result.ok) expect(result.value.query.length).toBeGreaterThanOrEqual(12);
    else expect(statuses).toContain(result.status);
  };

  it("GET with any query string: a query or a 4xx, never a throw", async () => {
    await fc.assert(
      fc.asyncProperty(
        text,
        text,
        text,
        fc.constantFrom("dns", "name", "type", "do", "cd", "x"),
        async (a, b, c, key) => {
          const url = new URL("https://doh.test/dns-query");
          url.searchParams.set(key, a);
          url.searchParams.set("type", b);
          url.searchParams.set("name", c);
          settles(await readDohRequest(new Request(url, { headers: { accept: b } })));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("POST with any body and content type: a query or a 4xx, never a throw", async () => {
    await fc.assert(
      fc.asyncProperty(
        bytes,
        fc.constantFrom(
          "application/dns-message",
          "application/DNS-message; x=1",
          "text/plain",
          "",
        ),
        async (body, type) => {
          settles(
            await readDohRequest(
              new Request("https://doh.test/dns-query", {
                method: "POST",
                body,
                headers: { "content-type": type },
              }),
            ),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it("any method: a query or a 4xx", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("PUT", "DELETE", "PATCH", "OPTIONS", "GET", "HEAD"),
        async (method) => {
          settles(
            await readDohRequest(new Request("https://doh.test/dns-query?dns=AAAB", { method })),
          );
        },
      ),
      { numRuns: 30 },
    );
  });
});
