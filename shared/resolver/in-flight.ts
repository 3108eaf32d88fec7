// Identical queries in flight at once share one resolution (shared/resolver/
// cached-resolver.ts keys them by cacheKey): each asker gets the outcome, and
// the resolution is cancelled only when every asker has gone, unless it is
// kept alive (the worker: see SharingOptions, shared/engine/shared-work.ts).

import type { Question } from "../dns/wire.ts";
import { type Clock, systemClock } from "../engine/clock.ts";
import { type KeepAlive, type Tracked, waitAtMost } from "../engine/shared-work.ts";
import type { ResolveOutcome } from "./create-resolver.ts";

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

/**
 * Starts the one resolution of a key; `signal` aborts when nobody waits for
 * it any more, and is undefined for work kept alive, which nothing cancels.
 */
export type StartResolution = (
  key: string,
  query: Uint8Array,
  signal: AbortSignal | undefined,
  question: Question | undefined,
) => Promise<ResolveOutcome>;

export interface InFlight {
  /**
   * The outcome of the resolution of `key` in flight, joined, or of a new one.
   * A query joining another request's resolution waits at most until
   * joinTimeoutMs after that one started; past that, the resolution is taken
   * as lost (its request ended and nothing kept it alive) and this query
   * joins a fresher one or starts its own, which its own request keeps alive.
   */
  coalesce(
    key: string,
    query: Uint8Array,
    signal: AbortSignal | undefined,
    question: Question | undefined,
  ): Promise<ResolveOutcome>;
  has(key: string): boolean;
  /** Queries answered by joining one already in flight. */
  coalesced(): number;
}

interface Shared {
  outcome: Tracked<ResolveOutcome>;
  /** Cancels work nobody keeps alive once its last asker leaves; none for work kept alive. */
  controller: AbortController | undefined;
  askers: number;
  startedAt: number;
}

/** An asker stops waiting: the last one out cancels work nobody keeps alive. */
function leave(shared: Shared, reason: unknown) {
  shared.askers--;
  if (shared.askers === 0) shared.controller?.abort(reason);
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

export function createInFlight(start: StartResolution, sharing: SharingOptions = {}): InFlight {
  const { keepAlive, joinTimeoutMs, joinPollMs } = sharing;
  const clock = sharing.clock ?? systemClock;
  const inFlight = new Map<string, Shared>();
  let coalesced = 0;

  function resolveShared(key: string, query: Uint8Array, question: Question | undefined): Shared {
    // Work kept alive runs to its end even with no asker left: no controller.
    const controller = keepAlive === undefined ? new AbortController() : undefined;
    const promise = start(key, query, controller?.signal, question).then((outcome) => {
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
    keepAlive?.(shared.outcome.promise);
    return shared;
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

  return { coalesce, has: (key) => inFlight.has(key), coalesced: () => coalesced };
}
