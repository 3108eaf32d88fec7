// Each query's deadline and its caller's abort signal, kept one of two ways:
// - shared (the relay): every query of a route has the same timeout, so
//   deadlines come in start order and one timer, for the oldest, serves
//   them all; a signal shared by many queries (the relay's shutdown) gets
//   one listener however many queries use it.
// - per query (the worker): each query keeps its own timer and listener, so
//   none set by one request fires after it ends or touches another's I/O;
//   close() then leaves queries to their deadlines.

import type { Clock, TimerHandle } from "./clock.ts";
import type { UpstreamError } from "./errors.ts";

/**
 * A query in progress, as the keeper sees it. The link and timer fields
 * belong to the keeper (kept on the query so adding one allocates nothing).
 */
export interface TimedRun {
  readonly deadlineAt: number;
  readonly signal: AbortSignal | undefined;
  readonly done: boolean;
  /** The deadline passed. */
  onDeadline(): void;
  /** The caller's signal fired. */
  onAbort(): void;
  /** The route closed. */
  onClose(error: UpstreamError): void;
  older: TimedRun | undefined;
  newer: TimedRun | undefined;
  ownTimer: TimerHandle | undefined;
  ownListener: (() => void) | undefined;
}

export interface Deadlines {
  /** Starts keeping a new query's deadline and watching its signal. */
  add(run: TimedRun): void;
  /** The query finished: forget it. */
  remove(run: TimedRun): void;
  /** The route closed: ends each query kept in progress with `error`, oldest first. */
  closeAll(error: UpstreamError): void;
}

/** One timer and one listener per signal for every query (the relay). */
export function createSharedDeadlines(clock: Clock): Deadlines {
  let oldest: TimedRun | undefined;
  let newest: TimedRun | undefined;
  let timer: TimerHandle | undefined;
  const watched = new Map<AbortSignal, { runs: number; onAbort: () => void }>();

  function unlink(run: TimedRun) {
    if (run.older) run.older.newer = run.newer;
    else if (oldest === run) oldest = run.newer;
    if (run.newer) run.newer.older = run.older;
    else if (newest === run) newest = run.older;
    run.older = run.newer = undefined;
    if (!oldest && timer !== undefined) {
      clock.clearTimeout(timer);
      timer = undefined;
    }
  }

  function arm() {
    if (oldest) timer = clock.setTimeout(onTimer, Math.max(0, oldest.deadlineAt - clock.now()));
  }

  function onTimer() {
    timer = undefined;
    const now = clock.now();
    while (oldest && oldest.deadlineAt <= now) {
      const run = oldest;
      if (run.done) unlink(run);
      else run.onDeadline();
    }
    arm();
  }

  function abortRuns(signal: AbortSignal) {
    watched.delete(signal);
    const hit: TimedRun[] = [];
    for (let run = oldest; run; run = run.newer) if (run.signal === signal) hit.push(run);
    for (const run of hit) run.onAbort();
  }

  return {
    add(run) {
      run.older = newest;
      if (newest) newest.newer = run;
      else oldest = run;
      newest = run;
      if (timer === undefined) arm();
      if (!run.signal) return;
      let w = watched.get(run.signal);
      if (!w) {
        const signal = run.signal;
        w = { runs: 0, onAbort: () => abortRuns(signal) };
        watched.set(signal, w);
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      w.runs++;
    },
    remove(run) {
      unlink(run);
      if (!run.signal) return;
      const w = watched.get(run.signal);
      if (!w || --w.runs > 0) return;
      watched.delete(run.signal);
      run.signal.removeEventListener("abort", w.onAbort);
    },
    closeAll(error) {
      while (oldest) {
        const run = oldest;
        if (run.done) unlink(run);
        else run.onClose(error);
      }
    },
  };
}

/** A timer and a listener of each query's own (the worker's selfContainedQueries). */
export function createOwnDeadlines(clock: Clock, timeoutMs: number): Deadlines {
  return {
    add(run) {
      run.ownTimer = clock.setTimeout(() => {
        run.ownTimer = undefined;
        run.onDeadline();
      }, timeoutMs);
      if (run.signal) {
        run.ownListener = () => run.onAbort();
        run.signal.addEventListener("abort", run.ownListener, { once: true });
      }
    },
    remove(run) {
      if (run.ownTimer !== undefined) clock.clearTimeout(run.ownTimer);
      if (run.ownListener) run.signal?.removeEventListener("abort", run.ownListener);
    },
    closeAll() {
      // No list of queries is kept: each runs to its own deadline.
    },
  };
}
