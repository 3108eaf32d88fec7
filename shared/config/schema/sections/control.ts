// The relay's `control`: how the supervisor restarts a worker process that
// exits (relay/src/supervisor.ts reads it).

import * as z from "zod";
import { intFrom, positiveDuration } from "../fields.ts";
import type { Checker } from "../parse.ts";

/** Supervision of listeners and pools (BalanceDNS's control plane). Durations in ms. */
export interface ControlConfig {
  /** First restart delay, doubling per failure (default 200). */
  restart_backoff: number;
  /** Cap of the delay (default 5000). */
  restart_max_backoff: number;
  /** Give up after this many failures in a row; 0 = never (default 0). */
  max_consecutive_failure: number;
  /** A run this long resets the failure count (default 10000). */
  min_stable_run: number;
}

export const controlSchema = z
  .strictObject({
    restart_backoff: positiveDuration.prefault("200ms"),
    restart_max_backoff: positiveDuration.prefault("5s"),
    max_consecutive_failure: intFrom(0).default(0),
    min_stable_run: positiveDuration.prefault("10s"),
  })
  .prefault({});

export function finalizeControl(raw: ControlConfig, check: Checker): ControlConfig {
  if (raw.restart_backoff > raw.restart_max_backoff) {
    check.error(["control", "restart_backoff"], "must not be above restart_max_backoff");
  }
  return raw;
}
