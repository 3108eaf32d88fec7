// Driving the manual clock from async tests: promise callbacks must run
// between timers, so time moves one due timer at a time.

import type { ManualClock } from "../../../shared/engine/manual-clock.ts";

/** Lets every queued promise callback run (one macrotask turn). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Advances `clock` by `ms`, settling promises before and after each timer fires. */
export async function runFor(clock: ManualClock, ms: number): Promise<void> {
  const target = clock.now() + ms;
  await settle();
  for (;;) {
    const due = clock.nextDue();
    if (due === undefined || due > target) break;
    clock.advance(due - clock.now());
    await settle();
  }
  clock.advance(target - clock.now());
  await settle();
}

/** Runs the clock until `promise` settles (or `limitMs` of clock time passed) and returns it. */
export async function runUntil<T>(
  clock: ManualClock,
  promise: Promise<T>,
  limitMs = 60_000,
): Promise<T> {
  let finished = false;
  const tracked = promise.finally(() => {
    finished = true;
  });
  tracked.catch(() => {}); // the caller sees the rejection through the return value
  const end = clock.now() + limitMs;
  await settle();
  while (!finished) {
    const due = clock.nextDue();
    if (due === undefined || due > end) break;
    clock.advance(due - clock.now());
    await settle();
  }
  return tracked;
}
