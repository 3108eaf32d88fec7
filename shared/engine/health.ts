// Passive health per upstream: attempt_count consecutive failures mark it down
// for fail_timeout; a success resets. Also the live numbers policies read
// (in flight, total, EWMA latency) and the plain-data view for /statusz.

import { type Clock, systemClock } from "./clock.ts";
import { EngineConfigError } from "./errors.ts";
import { createLatencyWindow, type LatencyWindow } from "./latency-window.ts";

export interface HealthOptions {
  /** Consecutive failures that mark an upstream down; 0 = never (default 3). */
  attemptCount?: number;
  /** How long a down upstream stays out (default 2000 ms). */
  failTimeoutMs?: number;
  /** First pull-out period of the availability policy (default failTimeoutMs); doubles per failure. */
  backoffBaseMs?: number;
  /** Longest availability pull-out (default 60000 ms). */
  backoffMaxMs?: number;
  /** Weight of the newest sample in the latency EWMA (default 0.3). */
  ewmaAlpha?: number;
  /** Latencies kept per upstream for the recent p95 (default 64). */
  latencyWindow?: number;
  clock?: Clock;
}

/** What policies read about one upstream. */
export interface UpstreamHealthView {
  name: string;
  consecutiveFailures: number;
  /** Clock time until which it is down; 0 when it is not. */
  downUntil: number;
  lastErrorCode: string | undefined;
  lastFailureAt: number | undefined;
  ewmaLatencyMs: number | undefined;
  inFlight: number;
  /** Attempts sent to it so far (dotproxy's HistoricalConnections). */
  total: number;
}

/** One upstream's health as plain data (JSON-ready, a copy). */
export interface UpstreamHealth extends UpstreamHealthView {
  up: boolean;
}

export interface HealthTracker {
  readonly attemptCount: number;
  readonly failTimeoutMs: number;
  attemptStarted(name: string): void;
  attemptSucceeded(name: string, latencyMs: number): void;
  attemptFailed(name: string, code: string): void;
  /** A cancelled attempt: neither a success nor a failure. */
  attemptCancelled(name: string): void;
  /** `now` when the caller has just read the clock. */
  isUp(name: string, now?: number): boolean;
  /** When the availability policy may use it again (exponential pull-out after failures). */
  availableAt(name: string): number;
  /** Recent latency quantile (e.g. 0.95) or undefined without enough samples. */
  recentLatency(name: string, q: number, minSamples?: number): number | undefined;
  /** Live state for policies; do not mutate. */
  view(name: string): Readonly<UpstreamHealthView>;
  /** Marks up now (an active health check passed): failures reset. */
  markUp(name: string): void;
  /** Marks down until `until` (an active health check failed). */
  markDown(name: string, until: number, code: string): void;
  snapshot(): UpstreamHealth[];
}

interface Entry extends UpstreamHealthView {
  window: LatencyWindow;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new EngineConfigError(`${name} must be a non-negative number, got ${value}`);
  }
  return value;
}

/** The options checked (throws EngineConfigError), with their defaults. */
function healthSettings(options: HealthOptions) {
  const attemptCount = nonNegative("attempt_count", options.attemptCount ?? 3);
  if (!Number.isInteger(attemptCount))
    throw new EngineConfigError("attempt_count must be an integer");
  const failTimeoutMs = nonNegative("fail_timeout", options.failTimeoutMs ?? 2000);
  const backoffBaseMs = nonNegative("backoff base", options.backoffBaseMs ?? failTimeoutMs);
  const backoffMaxMs = nonNegative("backoff max", options.backoffMaxMs ?? 60_000);
  const alpha = options.ewmaAlpha ?? 0.3;
  if (!(alpha > 0 && alpha <= 1))
    throw new EngineConfigError(`EWMA alpha must be in (0, 1], got ${alpha}`);
  const windowSize = options.latencyWindow ?? 64;
  if (!Number.isInteger(windowSize) || windowSize < 1) {
    throw new EngineConfigError(`latency window must be a positive integer, got ${windowSize}`);
  }
  return { attemptCount, failTimeoutMs, backoffBaseMs, backoffMaxMs, alpha, windowSize };
}

function newEntry(name: string, windowSize: number): Entry {
  return {
    name,
    consecutiveFailures: 0,
    downUntil: 0,
    lastErrorCode: undefined,
    lastFailureAt: undefined,
    ewmaLatencyMs: undefined,
    inFlight: 0,
    total: 0,
    window: createLatencyWindow(windowSize),
  };
}

function snapshotOf(e: Entry, up: boolean): UpstreamHealth {
  return {
    name: e.name,
    up,
    consecutiveFailures: e.consecutiveFailures,
    downUntil: up ? 0 : e.downUntil,
    lastErrorCode: e.lastErrorCode,
    lastFailureAt: e.lastFailureAt,
    ewmaLatencyMs: e.ewmaLatencyMs,
    inFlight: e.inFlight,
    total: e.total,
  };
}

/** An attempt of the upstream ended, whichever way. */
function settle(e: Entry) {
  if (e.inFlight > 0) e.inFlight--;
}

export function createHealthTracker(options: HealthOptions = {}): HealthTracker {
  const clock = options.clock ?? systemClock;
  const { attemptCount, failTimeoutMs, backoffBaseMs, backoffMaxMs, alpha, windowSize } =
    healthSettings(options);
  const entries = new Map<string, Entry>();

  const entry = (name: string): Entry => {
    let e = entries.get(name);
    if (!e) {
      e = newEntry(name, windowSize);
      entries.set(name, e);
    }
    return e;
  };
  // A healthy upstream (never down) needs no clock read.
  const isUp = (e: Entry, now?: number) => e.downUntil === 0 || e.downUntil <= (now ?? clock.now());

  return {
    attemptCount,
    failTimeoutMs,
    attemptStarted(name) {
      const e = entry(name);
      e.inFlight++;
      e.total++;
    },
    attemptSucceeded(name, latencyMs) {
      const e = entry(name);
      settle(e);
      e.consecutiveFailures = 0;
      e.downUntil = 0;
      e.ewmaLatencyMs =
        e.ewmaLatencyMs === undefined
          ? latencyMs
          : e.ewmaLatencyMs + alpha * (latencyMs - e.ewmaLatencyMs);
      e.window.add(latencyMs);
    },
    attemptFailed(name, code) {
      const e = entry(name);
      settle(e);
      const now = clock.now();
      e.consecutiveFailures++;
      e.lastErrorCode = code;
      e.lastFailureAt = now;
      // Readmitted upstreams keep their count, so one more failure sends them
      // straight back out (half-open); a success clears it.
      if (attemptCount > 0 && e.consecutiveFailures >= attemptCount) {
        e.downUntil = Math.max(e.downUntil, now + failTimeoutMs);
      }
    },
    attemptCancelled(name) {
      settle(entry(name));
    },
    isUp: (name, now) => isUp(entry(name), now),
    availableAt(name) {
      const e = entry(name);
      if (e.consecutiveFailures === 0 || e.lastFailureAt === undefined) return 0;
      const exponent = Math.min(e.consecutiveFailures - 1, 30);
      return e.lastFailureAt + Math.min(backoffMaxMs, backoffBaseMs * 2 ** exponent);
    },
    recentLatency(name, q, minSamples = 1) {
      const e = entry(name);
      return e.window.size >= minSamples ? e.window.quantile(q) : undefined;
    },
    view: (name) => entry(name),
    markUp(name) {
      const e = entry(name);
      e.consecutiveFailures = 0;
      e.downUntil = 0;
    },
    markDown(name, until, code) {
      const e = entry(name);
      e.downUntil = Math.max(e.downUntil, until);
      e.lastErrorCode = code;
    },
    snapshot() {
      return [...entries.values()].map((e) => snapshotOf(e, isUp(e)));
    },
  };
}
