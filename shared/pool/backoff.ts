// Exponential reconnect backoff: after n failed opens in a row, no new open
// for min(maxMs, baseMs * 2^n) ms; a successful open resets it.

import type { Clock } from "../engine/clock.ts";

export interface Backoff {
  failed(): void;
  succeeded(): void;
  /** True while no new connection may be opened. */
  holding(): boolean;
  /** Clock time when opening is allowed again. */
  readyAt(): number;
}

export function createBackoff(options: { clock: Clock; maxMs: number; baseMs?: number }): Backoff {
  const { clock, maxMs } = options;
  const baseMs = options.baseMs ?? 50;
  let failures = 0;
  let readyAt = -Infinity;
  return {
    failed() {
      failures++;
      readyAt = clock.now() + Math.min(maxMs, baseMs * 2 ** Math.min(failures, 10));
    },
    succeeded() {
      failures = 0;
    },
    holding: () => clock.now() < readyAt,
    readyAt: () => readyAt,
  };
}
