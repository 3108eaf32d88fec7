// Active health checks: every interval, run an injected probe per upstream
// and mark it up or down. The probe is a function so each runtime supplies
// its own (a DNS query through the upstream, or an HTTP URL check).

import { type Clock, systemClock, type TimerHandle } from "./clock.ts";
import { EngineConfigError, toUpstreamError, UpstreamError } from "./errors.ts";
import type { HealthTracker } from "./health.ts";
import type { Upstream } from "./upstream.ts";

/** Resolves true (or nothing) when healthy; false or a rejection means unhealthy. */
export type Probe = (upstream: Upstream, signal: AbortSignal) => Promise<boolean | undefined>;

export interface HealthCheckOptions {
  upstreams: readonly Upstream[];
  health: HealthTracker;
  probe: Probe;
  /** Time between rounds, from the end of one to the start of the next (default 4000 ms). */
  intervalMs?: number;
  /** Per-probe timeout (default min(intervalMs, 2000)). */
  timeoutMs?: number;
  /** How long a failed probe keeps an upstream down unless a later probe passes (default 2 × interval). */
  downForMs?: number;
  clock?: Clock;
}

export interface HealthChecker {
  /** Starts the rounds; the first runs at once. */
  start(): void;
  /** Stops: clears every timer and aborts probes in flight; their results are ignored. */
  stop(): void;
  /** Runs one round now and resolves when every probe has ended. */
  checkNow(): Promise<void>;
  readonly running: boolean;
}

/**
 * The probe's verdict and, when unhealthy, the error code to record. Settles
 * on the probe's outcome or on abort, whichever comes first, so a probe that
 * ignores its signal cannot stall the rounds.
 */
function probeOutcome(
  probe: Probe,
  upstream: Upstream,
  signal: AbortSignal,
  timedOut: () => boolean,
): Promise<{ healthy: boolean; code: string }> {
  return new Promise((resolve) => {
    signal.addEventListener(
      "abort",
      () => resolve({ healthy: false, code: timedOut() ? "timeout" : "aborted" }),
      { once: true },
    );
    let pending: Promise<boolean | undefined>;
    try {
      pending = probe(upstream, signal);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (result) => resolve({ healthy: result !== false, code: "probe_failed" }),
      (error: unknown) =>
        resolve({ healthy: false, code: toUpstreamError(error, upstream.name).code }),
    );
  });
}

export function createHealthChecker(options: HealthCheckOptions): HealthChecker {
  const clock = options.clock ?? systemClock;
  const intervalMs = options.intervalMs ?? 4000;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
    throw new EngineConfigError(`health check interval must be positive, got ${intervalMs}`);
  }
  const timeoutMs = options.timeoutMs ?? Math.min(intervalMs, 2000);
  const downForMs = options.downForMs ?? 2 * intervalMs;
  const { health, probe } = options;
  let running = false;
  let generation = 0; // bumped by stop(): results of older rounds are dropped
  let roundTimer: TimerHandle | undefined;
  const inFlight = new Set<{ controller: AbortController; timer: TimerHandle }>();

  async function probeOne(upstream: Upstream, round: number): Promise<void> {
    const controller = new AbortController();
    let timedOut = false;
    const entry = {
      controller,
      timer: clock.setTimeout(() => {
        timedOut = true;
        controller.abort(
          new UpstreamError("timeout", upstream.name, `${upstream.name}: probe timed out`),
        );
      }, timeoutMs),
    };
    inFlight.add(entry);
    const outcome = await probeOutcome(probe, upstream, controller.signal, () => timedOut);
    clock.clearTimeout(entry.timer);
    inFlight.delete(entry);
    if (round !== generation) return;
    if (outcome.healthy) health.markUp(upstream.name);
    else health.markDown(upstream.name, clock.now() + downForMs, outcome.code);
  }

  async function round(): Promise<void> {
    const current = generation;
    await Promise.all(options.upstreams.map((u) => probeOne(u, current)));
  }

  function schedule() {
    roundTimer = clock.setTimeout(() => {
      roundTimer = undefined;
      const current = generation;
      void round().then(() => {
        if (running && current === generation) schedule();
      });
    }, intervalMs);
  }

  return {
    start() {
      if (running) return;
      running = true;
      const current = generation;
      void round().then(() => {
        if (running && current === generation) schedule();
      });
    },
    stop() {
      running = false;
      generation++;
      if (roundTimer !== undefined) clock.clearTimeout(roundTimer);
      roundTimer = undefined;
      for (const entry of inFlight) {
        clock.clearTimeout(entry.timer);
        entry.controller.abort(
          new UpstreamError("aborted", "health-check", "health check stopped"),
        );
      }
      inFlight.clear();
    },
    checkNow: round,
    get running() {
      return running;
    },
  };
}
