// The resolver is where the OPT is rewritten for the whole route: once per
// query before the race (every attempt sends the same bytes), and on the
// winning answer before any cache sees it; malformed OPTs either way.

import { describe, expect, it } from "vitest";
import { parseWorkerConfig } from "../../shared/config/schema.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EdeCode, Rcode, readEdns, readRcode } from "../../shared/dns/wire.ts";
import type { Upstream } from "../../shared/engine/upstream.ts";
import { createResolver } from "../../shared/resolver/create-resolver.ts";

/** `msg` (OPT last, as buildQuery writes it) with options appended to its OPT. */
function withOptions(msg: Uint8Array, options: [code: number, data: number[]][]): Uint8Array {
  const rdata = options.flatMap(([code, data]) => [
    code >> 8,
    code & 0xff,
    0,
    data.length,
    ...data,
  ]);
  const out = Uint8Array.from([...msg, ...rdata]);
  const rdlength = (out[out.length - rdata.length - 2]! << 8) + out[out.length - rdata.length - 1]!;
  out[out.length - rdata.length - 2] = (rdlength + rdata.length) >> 8;
  out[out.length - rdata.length - 1] = (rdlength + rdata.length) & 0xff;
  return out;
}

/** A response to `query`: its bytes with QR set (an empty NOERROR answer), plus `options`. */
function answerWith(query: Uint8Array, options: [number, number[]][]): Uint8Array {
  const bare = buildQuery("www.example.test", 1, {
    id: (query[0]! << 8) | query[1]!,
    ednsUdpSize: 1232,
  });
  const out = withOptions(bare, options);
  out[2] = out[2]! | 0x80;
  return out;
}

function resolverWith(answer: (query: Uint8Array) => Uint8Array) {
  const seen: Uint8Array[] = [];
  const upstreams = ["a", "b"].map(
    (name): Upstream => ({
      name,
      async query(message) {
        seen.push(message);
        // "a" fails, so the route tries "b" with the same rewritten query.
        if (name === "a") throw new Error("down");
        return answer(message);
      },
      async close() {},
    }),
  );
  const { config } = parseWorkerConfig({
    upstreams: [
      { name: "a", url: "https://a.test/dns-query" },
      { name: "b", url: "https://b.test/dns-query" },
    ],
  });
  const resolver = createResolver({
    upstreams: config.upstreams,
    routes: config.routes,
    transports: new Map(upstreams.map((u) => [u.name, u])),
  });
  return { resolver, seen };
}

const codes = (msg: Uint8Array) => readEdns(msg)?.options.map((o) => o.code) ?? [];
const query = withOptions(buildQuery("www.example.test", 1, { id: 7, ednsUdpSize: 1232 }), [
  [10, [1, 2, 3, 4, 5, 6, 7, 8]],
  [8, [0, 1, 24, 0, 192, 0, 2]],
  [11, []],
  [12, [0, 0]],
]);

describe("the resolver rewrites the OPT per hop", () => {
  it("sends every attempt the same query, ECS only, and answers without hop-by-hop options", async () => {
    const { resolver, seen } = resolverWith((q) =>
      answerWith(q, [
        [3, [1]],
        [10, new Array(24).fill(9)],
        [15, [0, 0]],
        [12, new Array(100).fill(0)],
      ]),
    );
    const outcome = await resolver.resolve(query);
    expect(outcome.kind).toBe("answer");
    expect(codes(outcome.answer)).toEqual([15]);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(seen[0]); // rewritten once, not per attempt
    expect(codes(seen[0]!)).toEqual([8]);
  });

  it("answers FORMERR to a malformed OPT without asking an upstream", async () => {
    const { resolver, seen } = resolverWith((q) => answerWith(q, []));
    const bad = query.slice();
    bad[bad.length - 3] = 200; // the padding option's length runs past the RDATA
    const outcome = await resolver.resolve(bad);
    expect(outcome.kind).toBe("formerr");
    expect(readRcode(outcome.answer)).toBe(Rcode.FORMERR);
    expect(seen).toHaveLength(0);
  });

  it("turns an answer whose OPT cannot be rewritten into SERVFAIL with EDE Invalid Data", async () => {
    const { resolver } = resolverWith((q) => {
      const answer = answerWith(q, [[10, [1, 2, 3, 4, 5, 6, 7, 8]]]);
      answer[answer.length - 9] = 50; // the cookie's length runs past the RDATA
      return answer;
    });
    const outcome = await resolver.resolve(query);
    expect(outcome.kind).toBe("servfail");
    expect(readRcode(outcome.answer)).toBe(Rcode.SERVFAIL);
    const ede = readEdns(outcome.answer)?.options.find((o) => o.code === 15);
    expect(ede && (ede.data[0]! << 8) | ede.data[1]!).toBe(EdeCode.INVALID_DATA);
  });
});
