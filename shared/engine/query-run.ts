// One query of a race: its attempts, the answer it holds and how it ends.
// Up to `limit` attempts run at once (one more per hedge delay when
// staggered); a failed or negative attempt makes room for the next
// candidate; the winner rules of winner.ts pick the answer. Every loser is
// cancelled through its own AbortSignal and every timer is cleared.
// A class rather than closures: this runs for every query.

import { EdeCode } from "../dns/wire.ts";
import type { TimerHandle } from "./clock.ts";
import type { Deadlines, TimedRun } from "./deadlines.ts";
import { errorClassOf, toUpstreamError, UpstreamError } from "./errors.ts";
import { hedgeDelayFor } from "./hedge.ts";
import type { Ede, RaceFailure, RaceResult, RaceSuccess } from "./race.ts";
import type { Member, RaceSettings } from "./race-settings.ts";
import type { Selection, Spray } from "./selection.ts";
import { answerRank, checkAnswer, endsRace } from "./winner.ts";

/** What every query of a route shares. */
export interface RunContext {
  readonly settings: RaceSettings;
  readonly select: (now: number) => Selection;
  readonly deadlines: Deadlines;
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

export function raceFailure(error: UpstreamError, ede: Ede, attempts: number): RaceFailure {
  return { ok: false, error, ede, attempts };
}

function summary(errors: readonly UpstreamError[]): string {
  return [...new Set(errors.map((e) => errorClassOf(e)))].join(", ");
}

export class QueryRun implements TimedRun {
  readonly ctx: RunContext;
  readonly query: Uint8Array;
  readonly queryId: number;
  readonly signal: AbortSignal | undefined;
  readonly settle: (r: RaceResult) => void;
  readonly candidates: Member[];
  readonly spray: Spray;
  readonly deadlineAt: number;
  live: Attempt[] = [];
  errors: UpstreamError[] = [];
  held: Held | undefined = undefined;
  next = 0;
  started = 0;
  done = false;
  allowed: number;
  hedgeTimer: TimerHandle | undefined = undefined;
  // Kept for ctx.deadlines (see TimedRun).
  older: TimedRun | undefined = undefined;
  newer: TimedRun | undefined = undefined;
  ownTimer: TimerHandle | undefined = undefined;
  ownListener: (() => void) | undefined = undefined;

  constructor(
    ctx: RunContext,
    query: Uint8Array,
    queryId: number,
    signal: AbortSignal | undefined,
    settle: (r: RaceResult) => void,
  ) {
    this.ctx = ctx;
    this.query = query;
    this.queryId = queryId;
    this.signal = signal;
    this.settle = settle;
    const { settings } = ctx;
    const now = settings.clock.now();
    const { candidates, spray } = ctx.select(now);
    this.candidates = candidates;
    this.spray = spray;
    this.deadlineAt = now + settings.timeoutMs;
    this.allowed = settings.hedgeDelay === undefined ? settings.limit : 1;
    ctx.deadlines.add(this);
    this.fill(now);
  }

  onAbort() {
    const name = this.ctx.settings.name;
    const error = new UpstreamError("aborted", name, `${name}: query aborted by the caller`, {
      cause: this.signal?.reason,
    });
    this.finish(raceFailure(error, { code: EdeCode.OTHER, text: "query aborted" }, this.started));
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
    const { clock, counters } = this.ctx.settings;
    if (this.hedgeTimer !== undefined) clock.clearTimeout(this.hedgeTimer);
    this.ctx.deadlines.remove(this);
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
    // The order of live attempts means nothing: the last one fills the gap.
    const last = this.live.pop()!;
    if (i < this.live.length) this.live[i] = last;
    if (attempt.timer !== undefined) this.ctx.settings.clock.clearTimeout(attempt.timer);
    return true;
  }

  cancel(attempt: Attempt) {
    const { clock, counters, health } = this.ctx.settings;
    if (attempt.timer !== undefined) clock.clearTimeout(attempt.timer);
    counters.attemptCancelled(attempt.member.name);
    health.attemptCancelled(attempt.member.name);
    attempt.controller.abort(
      new UpstreamError("aborted", attempt.member.name, "cancelled: query finished"),
    );
  }

  fail(attempt: Attempt, error: UpstreamError) {
    const { counters, health, report } = this.ctx.settings;
    const upstream = attempt.member.name;
    const errorClass = errorClassOf(error);
    counters.attemptFailed(upstream, errorClass);
    health.attemptFailed(upstream, error.code);
    this.errors.push(error);
    report(upstream, errorClass, error);
  }

  timeOut(attempt: Attempt, ms: number) {
    const { name } = attempt.member;
    const error = new UpstreamError("timeout", name, `${name}: no answer within ${ms} ms`);
    this.fail(attempt, error);
    attempt.controller.abort(error);
  }

  launch(now: number): Member {
    const { clock, counters, health } = this.ctx.settings;
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
    const { clock, limit, hedgeDelay, health, autoHedge } = this.ctx.settings;
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
        hedgeDelayFor(hedgeDelay, health, last.name, autoHedge),
      );
    }
  }

  onHedge() {
    this.hedgeTimer = undefined;
    if (this.done) return;
    this.allowed = Math.min(this.ctx.settings.limit, this.allowed + 1);
    this.fill();
  }

  onAnswer(attempt: Attempt, answer: Uint8Array) {
    if (!this.end(attempt)) return;
    const { clock, counters, health, mode } = this.ctx.settings;
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
    const name = this.ctx.settings.name;
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
    this.finish(raceFailure(error, ede, started));
  }

  onDeadline() {
    if (this.done) return;
    const { clock, name, timeoutMs } = this.ctx.settings;
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
    const error = new UpstreamError("timeout", name, `${name}: no answer within ${timeoutMs} ms`, {
      errors: this.errors.slice(),
    });
    const ede = this.spray
      ? this.downEde()
      : { code: EdeCode.NO_REACHABLE_AUTHORITY, text: `no answer within ${timeoutMs} ms` };
    this.finish(raceFailure(error, ede, this.started));
  }

  onClose(error: UpstreamError) {
    this.finish(
      raceFailure(error, { code: EdeCode.NOT_READY, text: "route closed" }, this.started),
    );
  }
}
