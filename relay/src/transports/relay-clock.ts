// The relay's clock: the system clock, with timers that never keep the
// process alive on their own (pools' idle and backoff timers).

import { performance } from "node:perf_hooks";
import type { Clock } from "../../../shared/engine/clock.ts";

export const relayClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
