// The answer cache and in-flight coalescing around a Resolver, the same in
// both runtimes: a cache hit never touches an upstream; identical queries in
// flight at once (same cache key) share one resolution, each answer carrying
// its own asker's ID and question; queries that cacheKey turns away (NOTIFY,
// UPDATE, EDNS version 1...) neither use the cache nor share a resolution;
// a SERVFAIL falls back to a stale entry
// when serve_stale is on. The shared resolution is cancelled only when every
// asker has gone.

import type { CacheConfig } from "../config/schema.ts";
import type { Question } from "../dns/wire.ts";
import {
  type AnswerCache,
  adaptAnswer,
  type CacheStats,
  cacheKey,
  createAnswerCache,
  lifetimeMs,
  servedCopy,
} from "./answer-cache.ts";
import type { ResolveOutcome, Resolver } from "./create-resolver.ts";

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

interface Shared {
  outcome: Promise<ResolveOutcome>;
  controller: AbortController;
  askers: number;
}

function adapt(outcome: ResolveOutcome, query: Uint8Array): ResolveOutcome {
  return { ...outcome, answer: adaptAnswer(outcome.answer, query) };
}

export function createCachedResolver(
  resolver: Resolver,
  config: CacheConfig,
  now: () => number = Date.now,
  sharedCache?: SharedCache,
): CachedResolver {
  const cache: AnswerCache = createAnswerCache(config, now);
  const inFlight = new Map<string, Shared>();
  let coalesced = 0;
  let sharedHits = 0;

  function resolveShared(key: string, query: Uint8Array, question: Question | undefined): Shared {
    const controller = new AbortController();
    const shared: Shared = {
      controller,
      askers: 0,
      outcome: resolver.resolve(query, controller.signal, question).then((outcome) => {
        if (outcome.kind === "answer" || outcome.kind === "servfail") {
          const stored = cache.put(key, query, outcome.answer);
          const ms = stored && sharedCache ? lifetimeMs(config, query, outcome.answer) : undefined;
          if (ms !== undefined) {
            const t = now();
            sharedCache
              ?.put(key, { answer: outcome.answer, storedAt: t, expiresAt: t + ms })
              .catch(() => {});
          }
        }
        return outcome;
      }),
    };
    inFlight.set(key, shared);
    void shared.outcome.finally(() => {
      if (inFlight.get(key) === shared) inFlight.delete(key);
    });
    return shared;
  }

  /** `shared`'s outcome for one asker; rejects when that asker's signal aborts first. */
  function join(shared: Shared, signal: AbortSignal | undefined): Promise<ResolveOutcome> {
    shared.askers++;
    if (!signal) return shared.outcome;
    return new Promise((resolve, reject) => {
      const leave = () => {
        shared.askers--;
        if (shared.askers === 0) shared.controller.abort(signal.reason);
        reject(signal.reason);
      };
      if (signal.aborted) return leave();
      signal.addEventListener("abort", leave, { once: true });
      shared.outcome.then(
        (outcome) => {
          signal.removeEventListener("abort", leave);
          resolve(outcome);
        },
        (error) => {
          signal.removeEventListener("abort", leave);
          reject(error);
        },
      );
    });
  }

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
    if (sharedCache && !inFlight.has(key)) {
      const entry = await sharedCache.get(key).catch(() => undefined);
      const t = now();
      if (entry && t < entry.expiresAt) {
        const answer = servedCopy(entry, t, query);
        cache.put(key, query, answer);
        sharedHits++;
        return { kind: "answer", answer, route: "cache", upstream: "shared-cache" };
      }
    }
    let shared = inFlight.get(key);
    if (shared) coalesced++;
    else shared = resolveShared(key, query, question);
    let outcome: ResolveOutcome;
    try {
      outcome = await join(shared, signal);
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
    cacheStats: () => ({ ...cache.stats(), coalesced, sharedHits }),
  };
}
