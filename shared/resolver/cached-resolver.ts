// The answer cache and in-flight coalescing around a Resolver, the same in
// both runtimes: a cache hit never touches an upstream; identical queries in
// flight at once (same cache key) share one resolution, each answer carrying
// its own asker's ID and question; queries that cacheKey turns away (NOTIFY,
// UPDATE, EDNS version 1...) neither use the cache nor share a resolution;
// a SERVFAIL falls back to a stale entry
// when serve_stale is on. The shared resolution is cancelled only when every
// asker has gone, unless it is kept alive (the worker: see SharingOptions).

import type { CacheConfig } from "../config/schema.ts";
import type { Question } from "../dns/wire.ts";
import {
  type AnswerCache,
  adaptAnswer,
  type CacheStats,
  cacheKey,
  createAnswerCache,
  servedCopy,
} from "./answer-cache.ts";
import type { ResolveOutcome, Resolver } from "./create-resolver.ts";
import { createInFlight, type SharingOptions } from "./in-flight.ts";

export type { SharingOptions };

export interface CachedResolverStats extends CacheStats {
  /** Queries answered by joining an identical one already in flight. */
  coalesced: number;
  /** Queries answered from the shared cache (also counted as in-memory misses). */
  sharedHits: number;
}

export interface CachedResolver extends Resolver {
  cacheStats(): CachedResolverStats;
}

/** A stored answer in a shared second-level cache. */
export interface SharedEntry {
  answer: Uint8Array;
  storedAt: number;
  expiresAt: number;
}

/**
 * A cache shared beyond this instance (the Cache API on the worker): asked on
 * a miss of the in-memory cache, filled with what the in-memory cache keeps.
 */
export interface SharedCache {
  get(key: string): Promise<SharedEntry | undefined>;
  put(key: string, entry: SharedEntry): Promise<void>;
}

function adapt(outcome: ResolveOutcome, query: Uint8Array): ResolveOutcome {
  return { ...outcome, answer: adaptAnswer(outcome.answer, query) };
}

/** A fresh answer from the shared cache, kept in the in-memory cache too. */
async function fromSharedCache(
  sharedCache: SharedCache,
  cache: AnswerCache,
  key: string,
  query: Uint8Array,
  now: () => number,
): Promise<Uint8Array | undefined> {
  const entry = await sharedCache.get(key).catch(() => undefined);
  const t = now();
  if (!entry || t >= entry.expiresAt) return undefined;
  const answer = servedCopy(entry, t, query);
  cache.put(key, query, answer);
  return answer;
}

export function createCachedResolver(
  resolver: Resolver,
  config: CacheConfig,
  now: () => number = Date.now,
  sharedCache?: SharedCache,
  sharing: SharingOptions = {},
): CachedResolver {
  const cache: AnswerCache = createAnswerCache(config, now);
  let sharedHits = 0;

  /** Caches `outcome` (and keeps what the in-memory cache keeps in the shared cache too). */
  function store(key: string, query: Uint8Array, outcome: ResolveOutcome): ResolveOutcome {
    if (outcome.kind !== "answer" && outcome.kind !== "servfail") return outcome;
    const ms = cache.put(key, query, outcome.answer);
    if (ms === undefined || !sharedCache) return outcome;
    const t = now();
    const stored = sharedCache
      .put(key, { answer: outcome.answer, storedAt: t, expiresAt: t + ms })
      .catch(() => {});
    sharing.keepAlive?.(stored);
    return outcome;
  }

  const inFlight = createInFlight(
    (key, query, signal, question) =>
      resolver.resolve(query, signal, question).then((outcome) => store(key, query, outcome)),
    sharing,
  );

  async function resolveCached(
    query: Uint8Array,
    signal: AbortSignal | undefined,
    question: Question | undefined,
  ): Promise<ResolveOutcome> {
    const key = cacheKey(query);
    // Not cacheable (NOTIFY, UPDATE, EDNS version 1, unreadable): its own resolution.
    if (key === undefined) return resolver.resolve(query, signal, question);
    const hit = cache.get(key, query);
    if (hit) return { kind: "answer", answer: hit, route: "cache", upstream: "cache" };
    const shared =
      sharedCache && !inFlight.has(key)
        ? await fromSharedCache(sharedCache, cache, key, query, now)
        : undefined;
    if (shared) {
      sharedHits++;
      return { kind: "answer", answer: shared, route: "cache", upstream: "shared-cache" };
    }
    let outcome: ResolveOutcome;
    try {
      outcome = await inFlight.coalesce(key, query, signal, question);
    } catch (error) {
      // This asker gave up (shutdown, client gone): the resolver's answer to aborts.
      return resolver.resolve(query, AbortSignal.abort(error));
    }
    if (outcome.kind === "servfail") {
      const stale = cache.getStale(key, query);
      if (stale) return { kind: "answer", answer: stale, route: outcome.route, upstream: "stale" };
    }
    return adapt(outcome, query);
  }

  return {
    resolve(query, signal, question) {
      // Without a cache, straight through (no extra async step per query).
      if (config.size === 0) return resolver.resolve(query, signal, question);
      return resolveCached(query, signal, question);
    },
    resolveRoute: (name, query, signal) => resolver.resolveRoute(name, query, signal),
    counters: () => resolver.counters(),
    status: () => resolver.status(),
    start: () => resolver.start(),
    close: () => resolver.close(),
    cacheStats: () => ({ ...cache.stats(), coalesced: inFlight.coalesced(), sharedHits }),
  };
}
