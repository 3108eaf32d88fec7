// The answer cache and coalescing around a resolver, with a counting fake
// resolver and a manual clock. Runs in Node and in workerd.

import { describe, expect, it } from "vitest";
import type { CacheConfig } from "../../shared/config/schema.ts";
import { type DnsPacket, decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readHeader, readId } from "../../shared/dns/wire.ts";
import { createCachedResolver } from "../../shared/resolver/cached-resolver.ts";
import type { ResolveOutcome, Resolver } from "../../shared/resolver/create-resolver.ts";

const CONFIG: CacheConfig = {
  size: 100,
  min_ttl: 0,
  max_ttl: 86_400_000,
  negative_ttl: 3_600_000,
  servfail_ttl: 5000,
  serve_stale: false,
};

function answerTo(query: Uint8Array, parts: Partial<DnsPacket>): Uint8Array {
  const q = decodeMessage(query);
  return encodeMessage({
    id: q.id,
    type: "response",
    flags: 0x8180,
    questions: q.questions,
    ...parts,
  });
}

const a = (query: Uint8Array, ttl = 300) =>
  answerTo(query, {
    answers: [
      { name: decodeMessage(query).questions![0]!.name, type: "A", ttl, data: "192.0.2.1" },
    ],
  });

const nxdomain = (query: Uint8Array, soaTtl: number, minimum: number) =>
  answerTo(query, {
    flags: 0x8183,
    authorities: [
      {
        name: "test",
        type: "SOA",
        ttl: soaTtl,
        data: {
          mname: "ns.test",
          rname: "admin.test",
          serial: 1,
          refresh: 3600,
          retry: 600,
          expiration: 86400,
          minimum,
        },
      },
    ],
  });

/** A resolver that answers with `respond` and counts its calls. */
function fakeResolver(
  respond: (query: Uint8Array, signal?: AbortSignal) => Promise<ResolveOutcome> | ResolveOutcome,
) {
  const calls: Uint8Array[] = [];
  const aborted: boolean[] = [];
  const resolver: Resolver = {
    async resolve(query, signal) {
      calls.push(query);
      const outcome = await respond(query, signal);
      aborted.push(signal?.aborted ?? false);
      return outcome;
    },
    resolveRoute: (_name, query, signal) => resolver.resolve(query, signal),
    counters: () => ({}),
    status: () => [],
    start() {},
    async close() {},
  };
  return { resolver, calls, aborted };
}

const ok = (answer: Uint8Array): ResolveOutcome => ({
  kind: "answer",
  answer,
  route: "r",
  upstream: "u",
});

function ttlOf(answer: Uint8Array): number {
  const packet = decodeMessage(answer);
  return (packet.answers?.[0] ?? packet.authorities?.[0])?.ttl ?? -1;
}

type Respond = (
  query: Uint8Array,
  signal?: AbortSignal,
) => Promise<ResolveOutcome> | ResolveOutcome;

function setup(config: Partial<CacheConfig> = {}, respond: Respond = (q) => ok(a(q))) {
  let now = 1_000_000;
  const fake = fakeResolver(respond);
  const cached = createCachedResolver(fake.resolver, { ...CONFIG, ...config }, () => now);
  return {
    ...fake,
    cached,
    advance(ms: number) {
      now += ms;
    },
  };
}

describe("answer cache", () => {
  it("serves a repeat from the cache with the asker's ID and question case, without the resolver", async () => {
    const t = setup();
    await t.cached.resolve(buildQuery("www.example.test", 1, { id: 1 }));
    const again = await t.cached.resolve(buildQuery("WWW.Example.TEST", 1, { id: 2 }));
    expect(t.calls).toHaveLength(1);
    expect(readId(again.answer)).toBe(2);
    expect(decodeMessage(again.answer).questions?.[0]?.name).toBe("WWW.Example.TEST");
    expect(decodeMessage(again.answer).answers?.[0]?.data).toBe("192.0.2.1");
    expect(t.cached.cacheStats()).toMatchObject({ hits: 1, misses: 1, entries: 1 });
  });

  it("counts TTLs down and expires the entry on time", async () => {
    const t = setup();
    await t.cached.resolve(buildQuery("a.test", 1));
    t.advance(10_000);
    expect(ttlOf((await t.cached.resolve(buildQuery("a.test", 1))).answer)).toBe(290);
    t.advance(289_000);
    expect(ttlOf((await t.cached.resolve(buildQuery("a.test", 1))).answer)).toBe(1);
    expect(t.calls).toHaveLength(1);
    t.advance(1000);
    await t.cached.resolve(buildQuery("a.test", 1));
    expect(t.calls).toHaveLength(2);
  });

  it("keeps a negative answer for min(SOA TTL, MINIMUM), capped by negative_ttl", async () => {
    const t = setup({}, (q) => ok(nxdomain(q, 3600, 60)));
    await t.cached.resolve(buildQuery("nx.test", 1));
    t.advance(59_000);
    await t.cached.resolve(buildQuery("nx.test", 1));
    expect(t.calls).toHaveLength(1);
    t.advance(1000);
    await t.cached.resolve(buildQuery("nx.test", 1));
    expect(t.calls).toHaveLength(2);

    const capped = setup({ negative_ttl: 20_000 }, (q) => ok(nxdomain(q, 3600, 600)));
    await capped.cached.resolve(buildQuery("nx.test", 1));
    capped.advance(20_000);
    await capped.cached.resolve(buildQuery("nx.test", 1));
    expect(capped.calls).toHaveLength(2);
  });

  it("keeps SERVFAIL only for servfail_ttl, and not at all with 0", async () => {
    const servfail = (q: Uint8Array): ResolveOutcome => ({
      kind: "answer",
      answer: answerTo(q, { flags: 0x8182 }),
      route: "r",
      upstream: "u",
    });
    const t = setup({ servfail_ttl: 5000 }, servfail);
    await t.cached.resolve(buildQuery("sf.test", 1));
    t.advance(4999);
    await t.cached.resolve(buildQuery("sf.test", 1));
    expect(t.calls).toHaveLength(1);
    t.advance(1);
    await t.cached.resolve(buildQuery("sf.test", 1));
    expect(t.calls).toHaveLength(2);
    const never = setup({ servfail_ttl: 0 }, servfail);
    await never.cached.resolve(buildQuery("sf.test", 1));
    await never.cached.resolve(buildQuery("sf.test", 1));
    expect(never.calls).toHaveLength(2);
  });

  it("clamps lifetimes to [min_ttl, max_ttl] and never serves a TTL past the clamp", async () => {
    const short = setup({ min_ttl: 60_000 }, (q) => ok(a(q, 5)));
    await short.cached.resolve(buildQuery("s.test", 1));
    short.advance(59_000);
    await short.cached.resolve(buildQuery("s.test", 1));
    expect(short.calls).toHaveLength(1);
    const long = setup({ max_ttl: 100_000 }, (q) => ok(a(q, 3000)));
    await long.cached.resolve(buildQuery("l.test", 1));
    expect(ttlOf((await long.cached.resolve(buildQuery("l.test", 1))).answer)).toBe(100);
    long.advance(100_000);
    await long.cached.resolve(buildQuery("l.test", 1));
    expect(long.calls).toHaveLength(2);
  });

  it("keys on name case-insensitively, type, class, and the DO and CD bits", async () => {
    const t = setup();
    for (const query of [
      buildQuery("k.test", 1),
      buildQuery("K.TEST", 1),
      buildQuery("k.test", 28),
      buildQuery("k.test", 1, { dnssecOk: true }),
      buildQuery("k.test", 1, { checkingDisabled: true }),
      buildQuery("k.test", 1, { qclass: 3 }),
    ]) {
      await t.cached.resolve(query);
    }
    expect(t.calls).toHaveLength(5);
  });

  it("evicts the least recently used entry by count and by bytes", async () => {
    const t = setup({ size: 2 });
    for (const name of ["one.test", "two.test", "one.test", "three.test", "one.test", "two.test"]) {
      await t.cached.resolve(buildQuery(name, 1));
    }
    // one hit twice; two was evicted by three (one had been used more recently).
    expect(t.calls.map((q) => decodeMessage(q).questions?.[0]?.name)).toEqual([
      "one.test",
      "two.test",
      "three.test",
      "two.test",
    ]);
    expect(t.cached.cacheStats().evictions).toBe(2);
    const bytes = setup({ max_bytes: 100 });
    await bytes.cached.resolve(buildQuery("aaaaaaaaaa.test", 1));
    await bytes.cached.resolve(buildQuery("bbbbbbbbbb.test", 1));
    expect(bytes.cached.cacheStats().entries).toBe(1);
    expect(bytes.cached.cacheStats().bytes).toBeLessThanOrEqual(100);
  });

  it("does not cache truncated answers or REFUSED", async () => {
    const tc = setup({}, (q) => ok(answerTo(q, { flags: 0x8380 })));
    await tc.cached.resolve(buildQuery("tc.test", 1));
    await tc.cached.resolve(buildQuery("tc.test", 1));
    expect(tc.calls).toHaveLength(2);
    const refused = setup({}, (q) => ok(answerTo(q, { flags: 0x8185 })));
    await refused.cached.resolve(buildQuery("r.test", 1));
    await refused.cached.resolve(buildQuery("r.test", 1));
    expect(refused.calls).toHaveLength(2);
  });

  it("serves stale only when serve_stale is on and the upstreams fail", async () => {
    let fail = false;
    const respond = (q: Uint8Array): ResolveOutcome =>
      fail
        ? {
            kind: "servfail",
            answer: answerTo(q, { flags: 0x8182 }),
            route: "r",
            error: new Error("down") as never,
          }
        : ok(a(q, 60));
    for (const serve_stale of [false, true]) {
      fail = false;
      const t = setup({ serve_stale, servfail_ttl: 0 }, respond);
      await t.cached.resolve(buildQuery("st.test", 1));
      t.advance(120_000);
      fail = true;
      const outcome = await t.cached.resolve(buildQuery("st.test", 1, { id: 9 }));
      if (serve_stale) {
        expect(readHeader(outcome.answer).rcode).toBe(0);
        expect(ttlOf(outcome.answer)).toBe(30);
        expect(readId(outcome.answer)).toBe(9);
        expect(t.cached.cacheStats().stale).toBe(1);
      } else {
        expect(readHeader(outcome.answer).rcode).toBe(2);
      }
    }
  });

  it("size 0 is no cache at all", async () => {
    const t = setup({ size: 0 });
    await t.cached.resolve(buildQuery("z.test", 1));
    await t.cached.resolve(buildQuery("z.test", 1));
    expect(t.calls).toHaveLength(2);
  });
});

describe("coalescing", () => {
  it("sends one upstream query for 100 simultaneous identical ones, each answered with its own ID", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const t = setup({}, async (q) => {
      await gate;
      return ok(a(q));
    });
    const answers = Array.from({ length: 100 }, (_, i) =>
      t.cached.resolve(buildQuery("same.test", 1, { id: 1000 + i })),
    );
    release();
    const outcomes = await Promise.all(answers);
    expect(t.calls).toHaveLength(1);
    expect(outcomes.map((o) => readId(o.answer))).toEqual(outcomes.map((_, i) => 1000 + i));
    expect(t.cached.cacheStats().coalesced).toBe(99);
  });

  it("keeps the shared query while one asker remains, and cancels it when all have gone", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const seen: AbortSignal[] = [];
    const t = setup({}, async (q, signal) => {
      if (signal) seen.push(signal);
      if (signal?.aborted)
        return {
          kind: "servfail",
          answer: answerTo(q, { flags: 0x8182 }),
          route: "r",
          error: new Error("aborted") as never,
        };
      await gate;
      return ok(a(q));
    });
    const first = new AbortController();
    const p1 = t.cached.resolve(buildQuery("keep.test", 1, { id: 1 }), first.signal);
    const p2 = t.cached.resolve(buildQuery("keep.test", 1, { id: 2 }));
    first.abort(new Error("client gone"));
    expect(seen[0]?.aborted).toBe(false);
    release();
    expect(readHeader((await p2).answer).rcode).toBe(0);
    expect(readHeader((await p1).answer).rcode).toBe(2);

    const c1 = new AbortController();
    const c2 = new AbortController();
    const aborted = (): ResolveOutcome => ({
      kind: "servfail",
      answer: answerTo(buildQuery("gone.test", 1), { flags: 0x8182 }),
      route: "r",
      error: new Error("aborted") as never,
    });
    const never = setup({}, (_q, signal) =>
      signal?.aborted
        ? aborted()
        : new Promise<ResolveOutcome>((resolve) => {
            signal?.addEventListener("abort", () => resolve(aborted()));
          }),
    );
    const q1 = never.cached.resolve(buildQuery("gone.test", 1), c1.signal);
    const q2 = never.cached.resolve(buildQuery("gone.test", 1), c2.signal);
    c1.abort(new Error("a"));
    c2.abort(new Error("b"));
    await Promise.all([q1, q2]);
    expect(never.aborted[0]).toBe(true);
  });
});
