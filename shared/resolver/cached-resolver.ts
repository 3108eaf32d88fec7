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
import { type Clock, systemClock } from "../engine/clock.ts";
import { type KeepAlive, type Tracked, waitAtMost } from "../engine/shared-work.ts";
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

/**
 * How identical queries share one resolution when the runtime ties work to
 * the request that started it (the worker). The relay passes none.
 */
export interface SharingOptions {
  /**
   * Keeps a shared resolution (and its shared-cache write) running past the
   * request that started it. Such a resolution runs to its end, filling the
   * cache, even when every asker has gone: no other request may cancel I/O
   * its starter owns.
   */
  keepAlive?: KeepAlive;
  /**
   * How long after a shared resolution started a query that joined it waits
   * for it; then it takes the resolution as lost and starts its own. Default:
   * as long as it takes.
   */
  joinTimeoutMs?: number;
  /**
   * A query that joined another request's resolution looks for its outcome
   * this often, on its own timer, instead of awaiting its promise (see
   * shared/engine/shared-work.ts). Default: it awaits the promise.
   */
  joinPollMs?: number;
  clock?: Clock;
}

interface Shared {
  outcome: Tracked<ResolveOutcome>;
  controller: AbortController;
  askers: number;
  startedAt: number;
}

function adapt(outcome: ResolveOutcome, query: Uint8Array): ResolveOutcome {
  return { ...outcome, answer: adaptAnswer(outcome.answer, query) };
}

export function createCachedResolver(
  resolver: Resolver,
  config: CacheConfig,
  now: () => number = Date.now,
  sharedCache?: SharedCache,
  sharing: SharingOptions = {},
): CachedResolver {
  const { keepAlive, joinTimeoutMs, joinPollMs } = sharing;
  const clock = sharing.clock ?? systemClock;
  const cache: AnswerCache = createAnswerCache(config, now);
  const inFlight = new Map<string, Shared>();
  let coalesced = 0;
  let sharedHits = 0;

  function resolveShared(key: string, query: Uint8Array, question: Question | undefined): Shared {
    const controller = new AbortController();
    let stored: Promise<void> | undefined;
    const promise = resolver.resolve(query, controller.signal, question).then((outcome) => {
      if (outcome.kind === "answer" || outcome.kind === "servfail") {
        const kept = cache.put(key, query, outcome.answer);
        const ms = kept && sharedCache ? lifetimeMs(config, query, outcome.answer) : undefined;
        if (ms !== undefined) {
          const t = now();
          stored = sharedCache
            ?.put(key, { answer: outcome.answer, storedAt: t, expiresAt: t + ms })
            .catch(() => {});
        }
      }
      // For joiners that poll; here rather than by track(): no extra reaction.
      if (joinPollMs !== undefined) shared.outcome.settled = { ok: true, value: outcome };
      return outcome;
    });
    const shared: Shared = {
      controller,
      askers: 0,
      startedAt: joinTimeoutMs === undefined ? 0 : clock.now(),
      outcome: { promise, settled: undefined },
    };
    inFlight.set(key, shared);
    void shared.outcome.promise.finally(() => {
      if (inFlight.get(key) === shared) inFlight.delete(key);
    });
    keepAlive?.(shared.outcome.promise.then(() => stored));
    return shared;
  }

  /** An asker stops waiting: the last one out cancels work nobody keeps alive. */
  function leave(shared: Shared, reason: unknown) {
    shared.askers--;
    if (shared.askers === 0 && !keepAlive) shared.controller.abort(reason);
  }

  /** `shared`'s outcome for one asker; rejects when that asker's signal aborts first. */
  function join(shared: Shared, signal: AbortSignal | undefined): Promise<ResolveOutcome> {
    shared.askers++;
    if (!signal) return shared.outcome.promise;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        leave(shared, signal.reason);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      shared.outcome.promise.then(
        (outcome) => {
          signal.removeEventListener("abort", onAbort);
          resolve(outcome);
        },
        (error) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      );
    });
  }

  /**
   * The same for an asker that joined another request's resolution: it looks
   * for the outcome every joinPollMs on its own timers (when set), and gets
   * undefined once `ms` have passed.
   */
  function joinAtMost(
    shared: Shared,
    signal: AbortSignal | undefined,
    ms: number,
  ): Promise<ResolveOutcome | undefined> {
    shared.askers++;
    return waitAtMost(shared.outcome, { clock, ms, signal, pollMs: joinPollMs }).then(
      (waited) => {
        if (waited.settled) return waited.value;
        leave(shared, undefined);
        return undefined;
      },
      (error: unknown) => {
        leave(shared, error);
        throw error;
      },
    );
  }

  /**
   * The outcome of the resolution of `key` in flight, joined, or of a new one.
   * A query joining another request's resolution waits at most until
   * joinTimeoutMs after that one started; past that, the resolution is taken
   * as lost (its request ended and nothing kept it alive) and this query
   * joins a fresher one or starts its own, which its own request keeps alive.
   */
  function coalesce(
    key: string,
    query: Uint8Array,
    signal: AbortSignal | undefined,
    question: Question | undefined,
  ): Promise<ResolveOutcome> {
    const found = inFlight.get(key);
    if (!found) return join(resolveShared(key, query, question), signal);
    coalesced++;
    if (joinTimeoutMs === undefined) return join(found, signal);
    const left = found.startedAt + joinTimeoutMs - clock.now();
    return joinAtMost(found, signal, left).then((outcome) => {
      if (outcome) return outcome;
      if (inFlight.get(key) === found) inFlight.delete(key);
      return coalesce(key, query, signal, question); // join a fresh one, or start it
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
    let outcome: ResolveOutcome;
    try {
      outcome = await coalesce(key, query, signal, question);
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
