// hedge_delay: how long to wait after starting an attempt before starting the
// next one in parallel. A number is fixed; "auto" is the recent p95 latency
// of the upstream just started (its last N answers).

import { EngineConfigError } from "./errors.ts";
import type { HealthTracker } from "./health.ts";

export type HedgeDelay = number | "auto";

export interface AutoHedgeOptions {
  /** Quantile of recent latencies (default 0.95). */
  quantile?: number;
  /** Samples needed before the quantile is trusted (default 8). */
  minSamples?: number;
  /** Delay while there are too few samples (default 100 ms). */
  fallbackMs?: number;
  /** Floor of the computed delay (default 1 ms), so a hedge never fires in the same tick. */
  minMs?: number;
}

export function validateHedgeDelay(delay: HedgeDelay | undefined): void {
  if (delay === undefined || delay === "auto") return;
  if (!Number.isFinite(delay) || delay < 0) {
    throw new EngineConfigError(
      `hedge_delay must be a non-negative number of ms or "auto", got ${delay}`,
    );
  }
}

export function hedgeDelayFor(
  delay: HedgeDelay,
  health: HealthTracker,
  upstream: string,
  options: AutoHedgeOptions = {},
): number {
  if (delay !== "auto") return delay;
  const recent = health.recentLatency(upstream, options.quantile ?? 0.95, options.minSamples ?? 8);
  return Math.max(options.minMs ?? 1, recent ?? options.fallbackMs ?? 100);
}
