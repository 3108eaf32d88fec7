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
  const selfContained = config.selfContainedQueries ?? false;
  let closed = false;

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
  function select(now: number): {
    candidates: Member[];
    spray: "down" | "unavailable" | undefined;
  } {
    let up = members;
    for (const m of members) {
      if (!health.isUp(m.name)) {
        up = members.filter((x) => health.isUp(x.name));
        break;
      }
    }
    if (up.length > 0) {
      const ordered = policy.order(up, { health, random, now });
      if (ordered.length > 0) return { candidates: ordered, spray: undefined };
    }
    // All down (or all pulled out): spray one at random anyway.
    const pool = up.length > 0 ? up : members;
    return {
      candidates: [pool[randomIndex(random, pool.length)]!],
      spray: up.length > 0 ? "unavailable" : "down",
    };
  }

  // Queries in progress, oldest first (unless selfContainedQueries); close()
  // ends them all. With one timeout for every query their deadlines come in
  // the same order, so one timer (for the oldest) serves them all.
  let oldest: QueryRun | undefined;
  let newest: QueryRun | undefined;
  let deadlineTimer: TimerHandle | undefined;

  function track(run: QueryRun) {
    run.older = newest;
    if (newest) newest.newer = run;
    else oldest = run;
    newest = run;
    if (deadlineTimer === undefined) armDeadline();
  }

  function untrack(run: QueryRun) {
    if (run.older) run.older.newer = run.newer;
    else if (oldest === run) oldest = run.newer;
    if (run.newer) run.newer.older = run.older;
    else if (newest === run) newest = run.older;
    run.older = run.newer = undefined;
    if (!oldest && deadlineTimer !== undefined) {
      clock.clearTimeout(deadlineTimer);
      deadlineTimer = undefined;
    }
  }

  function armDeadline() {
    if (!oldest) return;
    deadlineTimer = clock.setTimeout(onDeadlineTimer, Math.max(0, oldest.deadlineAt - clock.now()));
  }

  function onDeadlineTimer() {
    deadlineTimer = undefined;
    const now = clock.now();
    while (oldest && oldest.deadlineAt <= now) {
      const run = oldest;
      if (run.done) untrack(run);
      else run.onDeadline();
    }
    armDeadline();
  }

  // Callers' signals, each with one listener however many queries share it
  // (the relay's shutdown signal is shared by every UDP query).
  const watched = new Map<AbortSignal, { runs: number; onAbort: () => void }>();

  function watch(signal: AbortSignal) {
    let w = watched.get(signal);
    if (!w) {
      w = { runs: 0, onAbort: () => abortRuns(signal) };
      watched.set(signal, w);
      signal.addEventListener("abort", w.onAbort, { once: true });
    }
    w.runs++;
  }

  function unwatch(signal: AbortSignal) {
    const w = watched.get(signal);
    if (!w || --w.runs > 0) return;
    watched.delete(signal);
    signal.removeEventListener("abort", w.onAbort);
  }

  function abortRuns(signal: AbortSignal) {
    watched.delete(signal);
    const hit: QueryRun[] = [];
    for (let run = oldest; run; run = run.newer) if (run.signal === signal) hit.push(run);
    for (const run of hit) run.onAbort();
  }

  // One query: its attempts, held answer and deadline. A class rather than
  // closures: this runs for every query.
  class QueryRun {
    readonly query: Uint8Array;
    readonly queryId: number;
    readonly signal: AbortSignal | undefined;
    readonly settle: (r: RaceResult) => void;
    readonly candidates: Member[];
    readonly spray: "down" | "unavailable" | undefined;
    readonly deadlineAt: number;
    live: Attempt[] = [];
    errors: UpstreamError[] = [];
    held: Held | undefined = undefined;
    next = 0;
    started = 0;
    done = false;
    allowed: number;
    hedgeTimer: TimerHandle | undefined = undefined;
    /** With selfContainedQueries: this query's own deadline timer and abort listener. */
    deadlineTimer: TimerHandle | undefined = undefined;
    abortListener: (() => void) | undefined = undefined;
    older: QueryRun | undefined = undefined;
    newer: QueryRun | undefined = undefined;

    constructor(
      query: Uint8Array,
      queryId: number,
      signal: AbortSignal | undefined,
      settle: (r: RaceResult) => void,
    ) {
      this.query = query;
      this.queryId = queryId;
      this.signal = signal;
      this.settle = settle;
      const now = clock.now();
      const { candidates, spray } = select(now);
      this.candidates = candidates;
      this.spray = spray;
      this.deadlineAt = now + timeoutMs;
      this.allowed = hedgeDelay === undefined ? limit : 1;
      if (selfContained) {
        this.deadlineTimer = clock.setTimeout(() => {
          this.deadlineTimer = undefined;
          this.onDeadline();
        }, timeoutMs);
        if (signal) {
          this.abortListener = () => this.onAbort();
          signal.addEventListener("abort", this.abortListener, { once: true });
        }
      } else {
        track(this);
        if (signal) watch(signal);
      }
      this.fill(now);
    }

    /** The caller's signal fired. */
    onAbort() {
      const error = new UpstreamError("aborted", name, `${name}: query aborted by the caller`, {
        cause: this.signal?.reason,
      });
      this.finish(failure(error, { code: EdeCode.OTHER, text: "query aborted" }, this.started));
    }

    success(h: { answer: Uint8Array; rcode: number; upstream: string }): RaceSuccess {
      return {
        ok: true,
        answer: h.answer,
        upstream: h.upstream,
        rcode: h.rcode,
        attempts: this.started,
      };
    }

    downEde(): Ede {
      return {
        code: EdeCode.NOT_READY,
        text: this.spray === "down" ? "all upstreams down" : "all upstreams pulled out",
      };
    }

    finish(result: RaceResult) {
      if (this.done) return;
      this.done = true;
      if (this.hedgeTimer !== undefined) clock.clearTimeout(this.hedgeTimer);
      if (selfContained) {
        if (this.deadlineTimer !== undefined) clock.clearTimeout(this.deadlineTimer);
        if (this.abortListener) this.signal?.removeEventListener("abort", this.abortListener);
      } else {
        untrack(this);
        if (this.signal) unwatch(this.signal);
      }
      const live = this.live;
      this.live = [];
      for (const attempt of live) this.cancel(attempt);
      if (result.ok) counters.won(result.upstream);
      this.settle(result);
    }

    /** Takes the attempt out of the live list; false if it had already ended. */
    end(attempt: Attempt): boolean {
      const i = this.live.indexOf(attempt);
      if (i < 0) return false;
      this.live.splice(i, 1);
      if (attempt.timer !== undefined) clock.clearTimeout(attempt.timer);
      return true;
    }

    cancel(attempt: Attempt) {
      if (attempt.timer !== undefined) clock.clearTimeout(attempt.timer);
      counters.attemptCancelled(attempt.member.name);
      health.attemptCancelled(attempt.member.name);
      attempt.controller.abort(
        new UpstreamError("aborted", attempt.member.name, "cancelled: query finished"),
      );
    }

    fail(attempt: Attempt, error: UpstreamError) {
      const upstream = attempt.member.name;
      const errorClass = errorClassOf(error);
      counters.attemptFailed(upstream, errorClass);
      health.attemptFailed(upstream, error.code);
      this.errors.push(error);
      report(upstream, errorClass, error);
    }

    timeOut(attempt: Attempt, ms: number) {
      const error = new UpstreamError(
        "timeout",
        attempt.member.name,
        `${attempt.member.name}: no answer within ${ms} ms`,
      );
      this.fail(attempt, error);
      attempt.controller.abort(error);
    }

    launch(now: number): Member {
      const member = this.candidates[this.next++]!;
      const attempt: Attempt = {
        member,
        controller: new AbortController(),
        startedAt: now,
        timer: undefined,
      };
      this.live.push(attempt);
      this.started++;
      counters.attemptStarted(member.name);
      health.attemptStarted(member.name);
      const ms = member.timeoutMs;
      if (ms !== undefined && attempt.startedAt + ms < this.deadlineAt) {
        attempt.timer = clock.setTimeout(() => {
          if (!this.end(attempt)) return;
          this.timeOut(attempt, ms);
          this.afterEnd();
        }, ms);
      }
      let pending: Promise<Uint8Array>;
      try {
        pending = member.upstream.query(this.query, attempt.controller.signal);
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (answer) => this.onAnswer(attempt, answer),
        (error: unknown) => {
          if (!this.end(attempt)) return;
          this.fail(attempt, toUpstreamError(error, member.name));
          this.afterEnd();
        },
      );
      return member;
    }

    /** Starts attempts while there is room; `now` when the caller has just read the clock. */
    fill(now?: number) {
      let last: Member | undefined;
      while (!this.done && this.live.length < this.allowed && this.next < this.candidates.length) {
        last = this.launch(now ?? clock.now());
      }
      if (
        last &&
        hedgeDelay !== undefined &&
        this.allowed < limit &&
        this.next < this.candidates.length
      ) {
        // The next hedge is measured from the latest start.
        if (this.hedgeTimer !== undefined) clock.clearTimeout(this.hedgeTimer);
        this.hedgeTimer = clock.setTimeout(
          () => this.onHedge(),
          hedgeDelayFor(hedgeDelay, health, last.name, config.autoHedge),
        );
      }
    }

    onHedge() {
      this.hedgeTimer = undefined;
      if (this.done) return;
      this.allowed = Math.min(limit, this.allowed + 1);
      this.fill();
    }

    onAnswer(attempt: Attempt, answer: Uint8Array) {
      if (!this.end(attempt)) return;
      const upstream = attempt.member.name;
      const rcode = checkAnswer(this.query, this.queryId, answer, upstream);
      if (rcode instanceof UpstreamError) {
        this.fail(attempt, rcode);
        this.afterEnd();
        return;
      }
      const latency = clock.now() - attempt.startedAt;
      counters.attemptSucceeded(upstream, rcode, latency);
      health.attemptSucceeded(upstream, latency);
      if (endsRace(rcode, mode)) {
        this.finish(this.success({ answer, rcode, upstream }));
        return;
      }
      const rank = answerRank(rcode);
      if (!this.held || rank < this.held.rank) this.held = { answer, rcode, upstream, rank };
      this.afterEnd();
    }

    // After an attempt ended without a winner: start the next candidate, or
    // finish when nothing is left in flight.
    afterEnd() {
      if (this.done) return;
      this.fill();
      if (this.live.length > 0) return;
      if (this.held) {
        this.finish(this.success(this.held));
        return;
      }
      const { errors, started } = this;
      const error = new UpstreamError(
        "all_failed",
        name,
        `${name}: all ${started} attempts failed (${summary(errors)})`,
        { errors: errors.slice() },
      );
      const ede: Ede = this.spray
        ? this.downEde()
        : errors.every((e) => e.code === "timeout")
          ? { code: EdeCode.NO_REACHABLE_AUTHORITY, text: "upstreams timed out" }
          : { code: EdeCode.NETWORK_ERROR, text: `upstreams failed: ${summary(errors)}` };
      this.finish(failure(error, ede, started));
    }

    onDeadline() {
      if (this.done) return;
      const live = this.live;
      this.live = [];
      for (const attempt of live) {
        if (attempt.timer !== undefined) clock.clearTimeout(attempt.timer);
        this.timeOut(attempt, timeoutMs);
      }
      if (this.held) {
        this.finish(this.success(this.held));
        return;
      }
      const error = new UpstreamError(
        "timeout",
        name,
        `${name}: no answer within ${timeoutMs} ms`,
        {
          errors: this.errors.slice(),
        },
      );
      const ede = this.spray
        ? this.downEde()
        : { code: EdeCode.NO_REACHABLE_AUTHORITY, text: `no answer within ${timeoutMs} ms` };
      this.finish(failure(error, ede, this.started));
    }

    onClose(error: UpstreamError) {
      this.finish(failure(error, { code: EdeCode.NOT_READY, text: "route closed" }, this.started));
    }
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
    new QueryRun(query, queryId, signal, settle);
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
      while (oldest) {
        const run = oldest;
        if (run.done) untrack(run);
        else run.onClose(new UpstreamError("closed", name));
      }
      if (config.ownsUpstreams) await Promise.all(members.map((m) => m.upstream.close()));
    },
  };
}
