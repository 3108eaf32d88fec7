// Injected time: the engine never reads the wall clock or starts a timer
// except through a Clock, so tests drive it with a manual clock.

export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds on a monotonic scale (only differences matter). */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

type NativeHandle = Parameters<typeof clearTimeout>[0];

/** The runtime's timers and performance.now(). */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NativeHandle),
};
