// Per-client admission: a token bucket (qps/burst) and an in-flight cap per
// client address. The table is bounded: when it is full, idle entries (no
// query in flight) are evicted oldest-first; if every entry is busy the new
// client is refused rather than growing the table.

import { performance } from "node:perf_hooks";

export interface ClientLimitsOptions {
  /** Sustained queries per second; 0 = unlimited. */
  qps: number;
  burst: number;
  /** 0 = unlimited. */
  maxInFlight: number;
  /** Most clients tracked at once (default 10000). */
  maxClients?: number;
  now?: () => number;
}

export type Admission = "ok" | "rate_limit" | "in_flight" | "table_full";

export interface ClientLimits {
  /** Admits a query from `client`; on "ok" the caller must call release(client) once. */
  admit(client: string): Admission;
  release(client: string): void;
  readonly size: number;
}

interface Entry {
  tokens: number;
  at: number;
  inFlight: number;
}

export function createClientLimits(options: ClientLimitsOptions): ClientLimits {
  const now = options.now ?? (() => performance.now());
  const maxClients = options.maxClients ?? 10_000;
  const table = new Map<string, Entry>();
  const burst = Math.max(options.burst, 1);
  // No limit at all: nothing to track.
  const unlimited = options.qps <= 0 && options.maxInFlight <= 0;

  function evictIdle(): void {
    for (const [key, entry] of table) {
      if (table.size < maxClients) return;
      if (entry.inFlight === 0) table.delete(key);
    }
  }

  return {
    get size() {
      return table.size;
    },
    admit(client) {
      if (unlimited) return "ok";
      const t = now();
      let entry = table.get(client);
      if (entry) {
        // Re-insert so Map order is least-recently-used first.
        table.delete(client);
        table.set(client, entry);
      } else {
        if (table.size >= maxClients) evictIdle();
        if (table.size >= maxClients) return "table_full";
        entry = { tokens: burst, at: t, inFlight: 0 };
        table.set(client, entry);
      }
      if (options.qps > 0) {
        entry.tokens = Math.min(burst, entry.tokens + ((t - entry.at) / 1000) * options.qps);
        entry.at = t;
        if (entry.tokens < 1) return "rate_limit";
      }
      if (options.maxInFlight > 0 && entry.inFlight >= options.maxInFlight) return "in_flight";
      if (options.qps > 0) entry.tokens -= 1;
      entry.inFlight++;
      return "ok";
    },
    release(client) {
      const entry = table.get(client);
      if (entry && entry.inFlight > 0) entry.inFlight--;
    },
  };
}
