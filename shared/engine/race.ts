// The race engine: one query becomes attempts on selected upstreams and one
// answer. Up to worker_count attempts run at once (optionally staggered by
// hedge_delay); a failed or negative attempt makes room for the next
// candidate; the winner rules of winner.ts pick the answer. Every loser is
// cancelled through its own AbortSignal and every timer is cleared.

import { buildErrorResponse, EdeCode, Rcode, readId } from "../dns/wire.ts";
import { type Clock, systemClock, type TimerHandle } from "./clock.ts";
import { type Counters, createCounters } from "./counters.ts";
import {
  EngineConfigError,
  type ErrorClass,
  errorClassOf,
  toUpstreamError,
  UpstreamError,
} from "./errors.ts";
import { createHealthTracker, type HealthTracker } from "./health.ts";
import {
  type AutoHedgeOptions,
  type HedgeDelay,
  hedgeDelayFor,
  validateHedgeDelay,
} from "./hedge.ts";
import { createPolicy, type Policy, type PolicyConfig, type PolicyName } from "./policies.ts";
import { createCryptoRandom, type Random, randomIndex } from "./random.ts";
import type { Upstream } from "./upstream.ts";
import { answerRank, checkAnswer, endsRace, winnerMode } from "./winner.ts";

export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_MAX_CONCURRENT_ATTEMPTS = 8;

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

interface Member {
  readonly upstream: Upstream;
  readonly name: string;
  readonly weight: number;
  readonly timeoutMs: number | undefined;
}

interface Attempt {
  readonly member: Member;
  readonly controller: AbortController;
  readonly startedAt: number;
  timer: TimerHandle | undefined;
}

interface Held {
  answer: Uint8Array;
  rcode: number;
  upstream: string;
  rank: number;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new EngineConfigError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function positiveMs(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new EngineConfigError(`${name} must be a positive number of ms, got ${value}`);
  }
  return value;
}

function toMember(entry: Upstream | RaceMember): Member {
  const m: RaceMember = "upstream" in entry ? entry : { upstream: entry };
  const name = m.upstream.name;
  const weight = m.weight ?? 100;
  if (!Number.isFinite(weight) || weight < 1 || weight > 100) {
    throw new EngineConfigError(`upstream "${name}": weight must be 1-100, got ${weight}`);
  }
  const timeoutMs =
    m.timeoutMs === undefined ? undefined : positiveMs(`upstream "${name}": timeout`, m.timeoutMs);
  return { upstream: m.upstream, name, weight, timeoutMs };
}

function summary(errors: readonly UpstreamError[]): string {
  return [...new Set(errors.map((e) => errorClassOf(e)))].join(", ");
}

export function createRace(config: RaceConfig): Race {
  const name = config.name ?? "race";
  const members = config.upstreams.map(toMember);
  if (members.length === 0) throw new EngineConfigError(`route "${name}" has no upstreams`);
  const names = new Set(members.map((m) => m.name));
  if (names.size !== members.length)
    throw new EngineConfigError(`route "${name}" lists an upstream twice`);
  const workerCount = positiveInteger("worker_count", config.workerCount ?? 1);
  const timeoutMs = positiveMs("timeout", config.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const maxConcurrent = positiveInteger(
    "maxConcurrentAttempts",
    config.maxConcurrentAttempts ?? DEFAULT_MAX_CONCURRENT_ATTEMPTS,
  );
  validateHedgeDelay(config.hedgeDelayMs);
  if (config.raceContinueOnError && !config.race) {
    throw new EngineConfigError("race_continue_on_error needs race");
  }
  const mode = winnerMode(config.race ?? false, config.raceContinueOnError ?? false);
  const limit = Math.min(workerCount, maxConcurrent);
  const hedgeDelay = limit > 1 ? config.hedgeDelayMs : undefined;
  const clock = config.clock ?? systemClock;
  const random = config.random ?? createCryptoRandom();
  const health = config.health ?? createHealthTracker({ clock });
  const counters = config.counters ?? createCounters();
  const policy =
    typeof config.policy === "object" && "order" in config.policy
      ? config.policy
      : createPolicy(config.policy ?? "sequential");
  const onAttemptError = config.onAttemptError;
  let closed = false;
  // Queries in progress, to end them when the race is closed.
  const running = new Set<(error: UpstreamError) => void>();

  const failure = (error: UpstreamError, ede: Ede, attempts: number): RaceFailure => ({
    ok: false,
    error,
    ede,
    attempts,
  });

  const report = (upstream: string, errorClass: ErrorClass, error: UpstreamError) => {
    try {
      onAttemptError?.(upstream, errorClass, error);
    } catch {
      // a debug hook must never break a query
    }
  };

  // spray: why one random upstream is tried anyway (undefined: normal selection).
  function select(): { candidates: Member[]; spray: "down" | "unavailable" | undefined } {
    const up = members.filter((m) => health.isUp(m.name));
    if (up.length > 0) {
      const ordered = policy.order(up, { health, random, now: clock.now() });
      if (ordered.length > 0) return { candidates: ordered, spray: undefined };
    }
    // All down (or all pulled out): spray one at random anyway.
    const pool = up.length > 0 ? up : members;
    return {
      candidates: [pool[randomIndex(random, pool.length)]!],
      spray: up.length > 0 ? "unavailable" : "down",
    };
  }

  function run(
    query: Uint8Array,
    signal: AbortSignal | undefined,
    settle: (r: RaceResult) => void,
  ) {
    let queryId: number;
    try {
      queryId = readId(query);
    } catch (error) {
      const e = new UpstreamError("bad_query", name, `${name}: query is not a DNS message`, {
        cause: error,
      });
      settle(failure(e, { code: EdeCode.OTHER, text: "malformed query" }, 0));
      return;
    }
    if (closed) {
      settle(
        failure(
          new UpstreamError("closed", name),
          { code: EdeCode.NOT_READY, text: "route closed" },
          0,
        ),
      );
      return;
    }
    if (signal?.aborted) {
      settle(
        failure(
          new UpstreamError("aborted", name),
          { code: EdeCode.OTHER, text: "query aborted" },
          0,
        ),
      );
      return;
    }

    const { candidates, spray } = select();
    const live = new Set<Attempt>();
    const errors: UpstreamError[] = [];
    const deadlineAt = clock.now() + timeoutMs;
    let held: Held | undefined;
    let next = 0;
    let started = 0;
    let done = false;
    let allowed = hedgeDelay === undefined ? limit : 1;
    let hedgeTimer: TimerHandle | undefined;

    const success = (h: { answer: Uint8Array; rcode: number; upstream: string }): RaceSuccess => ({
      ok: true,
      answer: h.answer,
      upstream: h.upstream,
      rcode: h.rcode,
      attempts: started,
    });

    const downEde = (): Ede => ({
      code: EdeCode.NOT_READY,
      text: spray === "down" ? "all upstreams down" : "all upstreams pulled out",
    });

    function finish(result: RaceResult) {
      if (done) return;
      done = true;
      clock.clearTimeout(deadline);
      if (hedgeTimer !== undefined) clock.clearTimeout(hedgeTimer);
      signal?.removeEventListener("abort", onAbort);
      running.delete(onClose);
      for (const attempt of live) cancel(attempt);
      live.clear();
      if (result.ok) counters.won(result.upstream);
      settle(result);
    }

    function cancel(attempt: Attempt) {
      live.delete(attempt);
      clock.clearTimeout(attempt.timer);
      counters.attemptCancelled(attempt.member.name);
      health.attemptCancelled(attempt.member.name);
      attempt.controller.abort(
        new UpstreamError("aborted", attempt.member.name, "cancelled: query finished"),
      );
    }

    function fail(attempt: Attempt, error: UpstreamError) {
      const upstream = attempt.member.name;
      live.delete(attempt);
      clock.clearTimeout(attempt.timer);
      const errorClass = errorClassOf(error);
      counters.attemptFailed(upstream, errorClass);
      health.attemptFailed(upstream, error.code);
      errors.push(error);
      report(upstream, errorClass, error);
    }

    function timeOut(attempt: Attempt, ms: number) {
      const error = new UpstreamError(
        "timeout",
        attempt.member.name,
        `${attempt.member.name}: no answer within ${ms} ms`,
      );
      fail(attempt, error);
      attempt.controller.abort(error);
    }

    function launch(): Member {
      const member = candidates[next++]!;
      const controller = new AbortController();
      const attempt: Attempt = { member, controller, startedAt: clock.now(), timer: undefined };
      live.add(attempt);
      started++;
      counters.attemptStarted(member.name);
      health.attemptStarted(member.name);
      const ms = member.timeoutMs;
      if (ms !== undefined && attempt.startedAt + ms < deadlineAt) {
        attempt.timer = clock.setTimeout(() => {
          if (!live.has(attempt)) return;
          timeOut(attempt, ms);
          afterEnd();
        }, ms);
      }
      let pending: Promise<Uint8Array>;
      try {
        pending = member.upstream.query(query, controller.signal);
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (answer) => onAnswer(attempt, answer),
        (error: unknown) => {
          if (!live.has(attempt)) return;
          fail(attempt, toUpstreamError(error, member.name));
          afterEnd();
        },
      );
      return member;
    }

    function fill() {
      let last: Member | undefined;
      while (!done && live.size < allowed && next < candidates.length) last = launch();
      if (last && hedgeDelay !== undefined && allowed < limit && next < candidates.length) {
        // The next hedge is measured from the latest start.
        if (hedgeTimer !== undefined) clock.clearTimeout(hedgeTimer);
        hedgeTimer = clock.setTimeout(
          onHedge,
          hedgeDelayFor(hedgeDelay, health, last.name, config.autoHedge),
        );
      }
    }

    function onHedge() {
      hedgeTimer = undefined;
      if (done) return;
      allowed = Math.min(limit, allowed + 1);
      fill();
    }

    function onAnswer(attempt: Attempt, answer: Uint8Array) {
      if (!live.has(attempt)) return;
      const upstream = attempt.member.name;
      const rcode = checkAnswer(query, queryId, answer, upstream);
      if (rcode instanceof UpstreamError) {
        fail(attempt, rcode);
        afterEnd();
        return;
      }
      live.delete(attempt);
      clock.clearTimeout(attempt.timer);
      const latency = clock.now() - attempt.startedAt;
      counters.attemptSucceeded(upstream, rcode, latency);
      health.attemptSucceeded(upstream, latency);
      if (endsRace(rcode, mode)) {
        finish(success({ answer, rcode, upstream }));
        return;
      }
      const rank = answerRank(rcode);
      if (!held || rank < held.rank) held = { answer, rcode, upstream, rank };
      afterEnd();
    }

    // After an attempt ended without a winner: start the next candidate, or
    // finish when nothing is left in flight.
    function afterEnd() {
      if (done) return;
      fill();
      if (live.size > 0) return;
      if (held) {
        finish(success(held));
        return;
      }
      const error = new UpstreamError(
        "all_failed",
        name,
        `${name}: all ${started} attempts failed (${summary(errors)})`,
        { errors: errors.slice() },
      );
      const ede: Ede = spray
        ? downEde()
        : errors.every((e) => e.code === "timeout")
          ? { code: EdeCode.NO_REACHABLE_AUTHORITY, text: "upstreams timed out" }
          : { code: EdeCode.NETWORK_ERROR, text: `upstreams failed: ${summary(errors)}` };
      finish(failure(error, ede, started));
    }

    function onDeadline() {
      if (done) return;
      for (const attempt of [...live]) timeOut(attempt, timeoutMs);
      if (held) {
        finish(success(held));
        return;
      }
      const error = new UpstreamError(
        "timeout",
        name,
        `${name}: no answer within ${timeoutMs} ms`,
        {
          errors: errors.slice(),
        },
      );
      const ede = spray
        ? downEde()
        : { code: EdeCode.NO_REACHABLE_AUTHORITY, text: `no answer within ${timeoutMs} ms` };
      finish(failure(error, ede, started));
    }

    function onAbort() {
      const error = new UpstreamError("aborted", name, `${name}: query aborted by the caller`, {
        cause: signal?.reason,
      });
      finish(failure(error, { code: EdeCode.OTHER, text: "query aborted" }, started));
    }

    function onClose(error: UpstreamError) {
      finish(failure(error, { code: EdeCode.NOT_READY, text: "route closed" }, started));
    }

    const deadline = clock.setTimeout(onDeadline, timeoutMs);
    signal?.addEventListener("abort", onAbort);
    running.add(onClose);
    fill();
  }

  function resolve(query: Uint8Array, signal?: AbortSignal): Promise<RaceResult> {
    return new Promise<RaceResult>((settle) => {
      try {
        run(query, signal, settle);
      } catch (error) {
        // A bug, not an upstream failure; still an answer rather than a throw.
        const e = new UpstreamError("internal", name, `${name}: ${String(error)}`, {
          cause: error,
        });
        settle(failure(e, { code: EdeCode.OTHER, text: "internal error" }, 0));
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
      if (closed) return;
      closed = true;
      for (const end of [...running]) end(new UpstreamError("closed", name));
      if (config.ownsUpstreams) await Promise.all(members.map((m) => m.upstream.close()));
    },
  };
}
