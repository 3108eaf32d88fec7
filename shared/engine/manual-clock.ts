// A clock that moves only when told to: advance(ms) fires due timers in
// order (by due time, then by creation), including timers they schedule.

import type { Clock, TimerHandle } from "./clock.ts";

export interface ManualClock extends Clock {
  /** Moves time forward, firing every timer due up to now + ms. */
  advance(ms: number): void;
  /** Timers scheduled and not yet fired or cleared. */
  pending(): number;
  /** Due time of the next timer, or undefined when none is pending. */
  nextDue(): number | undefined;
}

interface Timer {
  id: number;
  due: number;
  fn: () => void;
}

export function createManualClock(start = 0): ManualClock {
  let now = start;
  let nextId = 1;
  // Kept sorted by (due, id); timers are few, so insertion is a linear scan.
  const timers: Timer[] = [];

  return {
    now: () => now,
    setTimeout(fn, ms) {
      const timer = { id: nextId++, due: now + Math.max(0, ms), fn };
      let i = timers.length;
      while (i > 0 && timers[i - 1]!.due > timer.due) i--;
      timers.splice(i, 0, timer);
      return timer.id;
    },
    clearTimeout(handle: TimerHandle) {
      const i = timers.findIndex((t) => t.id === handle);
      if (i >= 0) timers.splice(i, 1);
    },
    advance(ms) {
      if (!(ms >= 0)) throw new RangeError(`cannot advance a clock by ${ms} ms`);
      const target = now + ms;
      while (timers.length > 0 && timers[0]!.due <= target) {
        const timer = timers.shift()!;
        now = timer.due;
        timer.fn();
      }
      now = target;
    },
    pending: () => timers.length,
    nextDue: () => timers[0]?.due,
  };
}
