// Per-upstream attempt accounting, fanout's model:
//   request = Σ errors by class + cancel + success
//   success = Σ rcodes,  win <= success
// plus latency (sum, count, histogram) of attempts that got a valid response.
// Plain data out; each runtime exports it its own way.

import type { ErrorClass } from "./errors.ts";

/** Histogram upper bounds in ms (value <= bound); +Inf is implied. */
export const DEFAULT_LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([
  1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
]);

export interface LatencySnapshot {
  sumMs: number;
  count: number;
  /** Cumulative, Prometheus style; the last bucket has le = Infinity and count = count. */
  buckets: { le: number; count: number }[];
}

export interface UpstreamCounterSnapshot {
  request: number;
  errors: Partial<Record<ErrorClass, number>>;
  cancel: number;
  success: number;
  win: number;
  rcodes: Record<number, number>;
  latency: LatencySnapshot;
}

export interface Counters {
  attemptStarted(upstream: string): void;
  attemptFailed(upstream: string, errorClass: ErrorClass): void;
  attemptCancelled(upstream: string): void;
  attemptSucceeded(upstream: string, rcode: number, latencyMs: number): void;
  /** This upstream's response was the one returned for the query. */
  won(upstream: string): void;
  snapshot(): Record<string, UpstreamCounterSnapshot>;
}

interface Entry {
  request: number;
  errors: Map<ErrorClass, number>;
  cancel: number;
  success: number;
  win: number;
  rcodes: Map<number, number>;
  sumMs: number;
  buckets: number[]; // per bucket, not cumulative; last = above every bound
}

export function createCounters(
  bucketsMs: readonly number[] = DEFAULT_LATENCY_BUCKETS_MS,
): Counters {
  const bounds = bucketsMs.slice();
  const entries = new Map<string, Entry>();
  const entry = (name: string): Entry => {
    let e = entries.get(name);
    if (!e) {
      e = {
        request: 0,
        errors: new Map(),
        cancel: 0,
        success: 0,
        win: 0,
        rcodes: new Map(),
        sumMs: 0,
        buckets: new Array<number>(bounds.length + 1).fill(0),
      };
      entries.set(name, e);
    }
    return e;
  };

  return {
    attemptStarted(upstream) {
      entry(upstream).request++;
    },
    attemptFailed(upstream, errorClass) {
      const e = entry(upstream);
      e.errors.set(errorClass, (e.errors.get(errorClass) ?? 0) + 1);
    },
    attemptCancelled(upstream) {
      entry(upstream).cancel++;
    },
    attemptSucceeded(upstream, rcode, latencyMs) {
      const e = entry(upstream);
      e.success++;
      e.rcodes.set(rcode, (e.rcodes.get(rcode) ?? 0) + 1);
      e.sumMs += latencyMs;
      let i = 0;
      while (i < bounds.length && latencyMs > bounds[i]!) i++;
      e.buckets[i]!++;
    },
    won(upstream) {
      entry(upstream).win++;
    },
    snapshot() {
      const out: Record<string, UpstreamCounterSnapshot> = {};
      for (const [name, e] of entries) {
        let running = 0;
        const buckets = e.buckets.map((n, i) => {
          running += n;
          return { le: bounds[i] ?? Number.POSITIVE_INFINITY, count: running };
        });
        out[name] = {
          request: e.request,
          errors: Object.fromEntries(e.errors),
          cancel: e.cancel,
          success: e.success,
          win: e.win,
          rcodes: Object.fromEntries(e.rcodes),
          latency: { sumMs: e.sumMs, count: e.success, buckets },
        };
      }
      return out;
    },
  };
}
