// The worker's shared answer cache (the Cache API) inside workerd: a second
// isolate's resolver (an empty in-memory cache) answers from it without an
// upstream query, TTLs counted down; another config's namespace does not.

import { describe, expect, it } from "vitest";
import { createEdgeCache, fingerprint } from "../../edge-worker/src/edge-cache.ts";
import type { CacheConfig } from "../../shared/config/schema.ts";
import { decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import { createCachedResolver } from "../../shared/resolver/cached-resolver.ts";
import type { Resolver } from "../../shared/resolver/create-resolver.ts";

const CONFIG: CacheConfig = {
  size: 100,
  min_ttl: 0,
  max_ttl: 86_400_000,
  negative_ttl: 3_600_000,
  servfail_ttl: 5000,
  serve_stale: false,
};

function countingResolver() {
  let calls = 0;
  const resolver: Resolver = {
    async resolve(query) {
      calls++;
      const q = decodeMessage(query);
      const answer = encodeMessage({
        id: q.id,
        type: "response",
        flags: 0x8180,
        questions: q.questions,
        answers: [{ name: q.questions![0]!.name, type: "A", ttl: 300, data: "192.0.2.33" }],
      });
      return { kind: "answer", answer, route: "r", upstream: "u" };
    },
    resolveRoute: (_n, query, signal) => resolver.resolve(query, signal),
    counters: () => ({}),
    status: () => [],
    start() {},
    async close() {},
  };
  return { resolver, calls: () => calls };
}

describe("worker shared cache (Cache API)", () => {
  it("answers another isolate's repeat from the Cache API, TTL counted down", async () => {
    const namespace = fingerprint(`test-${Date.now()}`);
    let now = Date.now();
    const first = countingResolver();
    const second = countingResolver();
    const isolateA = createCachedResolver(
      first.resolver,
      CONFIG,
      () => now,
      createEdgeCache(caches.default, namespace),
    );
    const isolateB = createCachedResolver(
      second.resolver,
      CONFIG,
      () => now,
      createEdgeCache(caches.default, namespace),
    );
    await isolateA.resolve(buildQuery("shared.test", 1, { id: 1 }));
    // The write to the Cache API is not awaited by the resolver: give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 50));
    now += 10_000;
    const outcome = await isolateB.resolve(buildQuery("SHARED.test", 1, { id: 2 }));
    expect(second.calls()).toBe(0);
    expect(readId(outcome.answer)).toBe(2);
    expect(decodeMessage(outcome.answer).questions?.[0]?.name).toBe("SHARED.test");
    expect(decodeMessage(outcome.answer).answers?.[0]?.ttl).toBe(290);
    expect(isolateB.cacheStats().sharedHits).toBe(1);
    // Now in B's own memory too.
    await isolateB.resolve(buildQuery("shared.test", 1, { id: 3 }));
    expect(isolateB.cacheStats().hits).toBe(1);

    const otherConfig = countingResolver();
    const isolateC = createCachedResolver(
      otherConfig.resolver,
      CONFIG,
      () => now,
      createEdgeCache(caches.default, `${namespace}x`),
    );
    await isolateC.resolve(buildQuery("shared.test", 1));
    expect(otherConfig.calls()).toBe(1);
  });
});
