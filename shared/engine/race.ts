// The race engine: one query becomes attempts on selected upstreams and one
// answer. Up to worker_count attempts run at once (optionally staggered by
// hedge_delay); a failed or negative attempt makes room for the next
// candidate; the winner rules of winner.ts pick the answer. Every loser is
// cancelled through its own AbortSignal and every timer is cleared.
// The parts: race-settings.ts (options), selection.ts (which upstreams),
// deadlines.ts (query deadlines and caller signals), query-run.ts (one query).

import { buildErrorResponse, EdeCode, Rcode, readId } from "../dns/wire.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type Counters, createCounters } from "./counters.ts";
import { createOwnDeadlines, createSharedDeadlines } from "./deadlines.ts";
import { type ErrorClass, UpstreamError } from "./errors.ts";
import { createHealthTracker, type HealthTracker } from "./health.ts";
import type { AutoHedgeOptions, HedgeDelay } from "./hedge.ts";
import { createPolicy, type Policy, type PolicyConfig, type PolicyName } from "./policies.ts";
import { QueryRun, type RunContext, raceFailure } from "./query-run.ts";
import { raceMembers, raceSettings } from "./race-settings.ts";
import { createCryptoRandom, type Random } from "./random.ts";
import { createSelector } from "./selection.ts";
import type { Upstream } from "./upstream.ts";

export interface RaceMember {
  upstream: Upstream;
  /** Load factor 1-100 for weighted_random (default 100). */
  weight?: number;
  /** Per-attempt timeout (the upstream's own `timeout`); the query timeout always applies. */
  timeoutMs?: number;
}

export interface RaceOptions {
  /** Attempts in parallel for one query (default 1). */
  workerCount?: number;
  /** Bound on the whole query, in ms (default 5000). */
  timeoutMs?: number;
  /** The first valid DNS message wins, whatever its RCODE. */
  race?: boolean;
  /** With race: only NOERROR and NXDOMAIN end the race. */
  raceContinueOnError?: boolean;
  /** With workerCount > 1: start attempts this far apart instead of all at once. */
  hedgeDelayMs?: HedgeDelay;
  /** Hard cap on attempts in flight for one query, whatever else is set (default 8). */
  maxConcurrentAttempts?: number;
  /**
   * Each query keeps its own deadline timer and abort listener, and the route
   * keeps no list of queries in flight (close() lets them run to their
   * deadlines). For the worker, where a query's timers and I/O belong to its
   * request: a timer set by one request never fires after it ends, and no
   * request may touch another's I/O. Default false: one timer and one
   * listener per shared signal serve every query of the route (the relay).
   */
  selfContainedQueries?: boolean;
}

export interface RaceConfig extends RaceOptions {
  /** Name of the route, used as its Upstream name (default "race"). */
  name?: string;
  upstreams: readonly (Upstream | RaceMember)[];
  /** Default sequential. */
  policy?: Policy | PolicyName | PolicyConfig;
  /** Shared between routes that share upstreams; default a fresh tracker on `clock`. */
  health?: HealthTracker;
  counters?: Counters;
  clock?: Clock;
  random?: Random;
  autoHedge?: AutoHedgeOptions;
  /** debug: called for each defective attempt (never for losers cancelled on purpose). */
  onAttemptError?: (upstream: string, errorClass: ErrorClass, error: UpstreamError) => void;
  /** Whether close() also closes the member upstreams (default false: they may be shared). */
  ownsUpstreams?: boolean;
}

export interface Ede {
  code: number;
  text: string;
}

export interface RaceSuccess {
  ok: true;
  answer: Uint8Array;
  upstream: string;
  rcode: number;
  /** Attempts started for this query. */
  attempts: number;
}

export interface RaceFailure {
  ok: false;
  /** all_failed, timeout, aborted, closed or bad_query; `errors` holds the attempt errors. */
  error: UpstreamError;
  /** What to put in the SERVFAIL's Extended DNS Error. */
  ede: Ede;
  attempts: number;
}

export type RaceResult = RaceSuccess | RaceFailure;

export interface Race extends Upstream {
  /** Never rejects: upstream failures come back as { ok: false }. */
  resolve(query: Uint8Array, signal?: AbortSignal): Promise<RaceResult>;
  readonly health: HealthTracker;
  readonly counters: Counters;
  readonly policy: Policy;
}

/** The SERVFAIL (with EDE when the query has EDNS) a client gets for a failed query. */
export function toServfail(query: Uint8Array, failure: RaceFailure): Uint8Array {
  return buildErrorResponse(query, Rcode.SERVFAIL, { ede: failure.ede });
}

/** Settles `settle` at once when the query cannot start; true if it did. */
function refuseAtOnce(
  name: string,
  state: { closed: boolean },
  signal: AbortSignal | undefined,
  settle: (r: RaceResult) => void,
): boolean {
  if (state.closed) {
    const ede = { code: EdeCode.NOT_READY, text: "route closed" };
    settle(raceFailure(new UpstreamError("closed", name), ede, 0));
    return true;
  }
  if (signal?.aborted) {
    const ede = { code: EdeCode.OTHER, text: "query aborted" };
    settle(raceFailure(new UpstreamError("aborted", name), ede, 0));
    return true;
  }
  return false;
}

function startQuery(
  ctx: RunContext,
  state: { closed: boolean },
  query: Uint8Array,
  signal: AbortSignal | undefined,
  settle: (r: RaceResult) => void,
) {
  const name = ctx.settings.name;
  let queryId: number;
  try {
    queryId = readId(query);
  } catch (error) {
    const e = new UpstreamError("bad_query", name, `${name}: query is not a DNS message`, {
      cause: error,
    });
    settle(raceFailure(e, { code: EdeCode.OTHER, text: "malformed query" }, 0));
    return;
  }
  if (refuseAtOnce(name, state, signal, settle)) return;
  new QueryRun(ctx, query, queryId, signal, settle);
}

export function createRace(config: RaceConfig): Race {
  const name = config.name ?? "race";
  const members = raceMembers(name, config.upstreams);
  const clock = config.clock ?? systemClock;
  const health = config.health ?? createHealthTracker({ clock });
  const counters = config.counters ?? createCounters();
  const settings = raceSettings(name, config, { clock, health, counters });
  const policy =
    typeof config.policy === "object" && "order" in config.policy
      ? config.policy
      : createPolicy(config.policy ?? "sequential");
  const random = config.random ?? createCryptoRandom();
  const ctx: RunContext = {
    settings,
    select: createSelector({ members, policy, health, random }),
    deadlines: config.selfContainedQueries
      ? createOwnDeadlines(clock, settings.timeoutMs)
      : createSharedDeadlines(clock),
  };
  const state = { closed: false };

  function resolve(query: Uint8Array, signal?: AbortSignal): Promise<RaceResult> {
    return new Promise<RaceResult>((settle) => {
      try {
        startQuery(ctx, state, query, signal, settle);
      } catch (error) {
        // A bug, not an upstream failure; still an answer rather than a throw.
        const e = new UpstreamError("internal", name, `${name}: ${String(error)}`, {
          cause: error,
        });
        settle(raceFailure(e, { code: EdeCode.OTHER, text: "internal error" }, 0));
      }
    });
  }

  return {
    name,
    health,
    counters,
    policy,
    resolve,
    async query(message, signal) {
      const result = await resolve(message, signal);
      if (result.ok) return result.answer;
      throw result.error;
    },
    async close() {
      if (state.closed) return;
      state.closed = true;
      ctx.deadlines.closeAll(new UpstreamError("closed", name));
      if (config.ownsUpstreams) await Promise.all(members.map((m) => m.upstream.close()));
    },
  };
}
