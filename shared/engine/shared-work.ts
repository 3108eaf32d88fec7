// Work one request starts and other requests wait for: in-flight coalescing,
// the worker's block list load. On Cloudflare Workers, I/O, timers and
// promise continuations belong to the request that started them: when that
// request ends its pending work may never settle, and a promise it settles
// cannot safely wake another request (the waiter's continuation runs in the
// wrong request and its response "will never complete"). So:
//   - whoever starts shared work hands it to the runtime's KeepAlive (the
//     worker's waitUntil), so it runs to its end;
//   - the work records its result in a plain field (Tracked.settled);
//   - another request waits on timers of its own: it looks at that field
//     every pollMs, up to a bound, and then goes on alone.
// Without pollMs (the relay, one event loop) a waiter awaits the promise.

import type { Clock, TimerHandle } from "./clock.ts";

/** Keeps work running past the request that started it (the worker's waitUntil). */
export type KeepAlive = (work: Promise<unknown>) => void;

/** Shared work and, once it has ended, its result. */
export interface Tracked<T> {
  readonly promise: Promise<T>;
  settled: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
}

export function track<T>(promise: Promise<T>): Tracked<T> {
  const tracked: Tracked<T> = { promise, settled: undefined };
  promise.then(
    (value) => {
      tracked.settled = { ok: true, value };
    },
    (error: unknown) => {
      tracked.settled = { ok: false, error };
    },
  );
  return tracked;
}

export type Waited<T> = { settled: true; value: T } | { settled: false };

const GAVE_UP: Waited<never> = { settled: false };

export interface WaitOptions {
  clock: Clock;
  /** Give up after this long (undefined: never). */
  ms?: number | undefined;
  /** Stop waiting (reject with its reason) when it aborts. */
  signal?: AbortSignal | undefined;
  /** Look at `settled` this often instead of awaiting the promise (the worker). */
  pollMs?: number | undefined;
}

/**
 * `work`'s value, or `{ settled: false }` once `ms` have passed on this
 * waiter's own timer. Rejects when `work` rejects, or with the signal's
 * reason when `signal` aborts first.
 */
export function waitAtMost<T>(work: Tracked<T>, options: WaitOptions): Promise<Waited<T>> {
  const { clock, ms, signal, pollMs } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const giveUpAt = ms === undefined ? undefined : clock.now() + Math.max(0, ms);
    let timer: TimerHandle | undefined;
    const stop = () => {
      signal?.removeEventListener("abort", onAbort);
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    };
    const onAbort = () => {
      stop();
      reject(signal?.reason);
    };
    const take = (settled: NonNullable<Tracked<T>["settled"]>) => {
      stop();
      if (settled.ok) resolve({ settled: true, value: settled.value });
      else reject(settled.error);
    };
    const check = () => {
      timer = undefined;
      if (work.settled) return take(work.settled);
      const now = clock.now();
      if (giveUpAt !== undefined && now >= giveUpAt) {
        stop();
        resolve(GAVE_UP);
        return;
      }
      const wait = giveUpAt === undefined ? pollMs : Math.min(giveUpAt - now, pollMs ?? Infinity);
      if (wait !== undefined) timer = clock.setTimeout(check, wait);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    if (work.settled) return take(work.settled);
    check();
    if (pollMs === undefined) {
      work.promise.then(
        (value) => take({ ok: true, value }),
        (error: unknown) => take({ ok: false, error }),
      );
    }
  });
}
