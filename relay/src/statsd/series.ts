// The series the relay sends to statsd, by source: listener events (through
// a wrapped RelayMetrics), upstream attempts (through wrapped resolver
// Counters), pool state (read at each flush) and the sender's own losses.
// Names are listed in the README (Operations → statsd); configured names
// become one segment each (segment()).

import { rcodeText } from "../../../shared/dns/codes.ts";
import type { Counters } from "../../../shared/engine/counters.ts";
import type { PoolStats, Upstream } from "../../../shared/engine/upstream.ts";
import type { RelayMetrics } from "../metrics.ts";
import { type StatsdRegistry, segment } from "./registry.ts";
import type { StatsdSinkStats } from "./sink.ts";

/** Handles by a key, made once: the query path does a map lookup and an add. */
function memo<T>(make: (key: string) => T): (key: string) => T {
  const made = new Map<string, T>();
  return (key) => {
    let value = made.get(key);
    if (value === undefined) {
      value = make(key);
      made.set(key, value);
    }
    return value;
  };
}

export interface ListenerSeries {
  wrap(metrics: RelayMetrics): RelayMetrics;
  /** Sets the in-flight and open-connection gauges (names after `gaugeHead`). */
  readGauges(gaugeHead: string): void;
}

export function listenerSeries(registry: StatsdRegistry): ListenerSeries {
  const listener = memo((l) => {
    const at = `listener.${segment(l)}`;
    return {
      queries: registry.counter(`${at}.queries`),
      latency: registry.timer(`${at}.latency`),
      rcode: memo((rcode) => registry.counter(`${at}.rcode.${segment(rcode)}`)),
      dropped: memo((reason) => registry.counter(`${at}.dropped.${segment(reason)}`)),
      open: registry.counter(`${at}.cx_open`),
      close: registry.counter(`${at}.cx_close`),
    };
  });
  const refused = memo((reason) => registry.counter(`refused.${segment(reason)}`));
  /** Open client connections per listener. */
  const connections = new Map<string, number>();
  let inFlight = 0;

  return {
    wrap: (metrics) => ({
      ...metrics,
      query(protocol, rcode, seconds) {
        metrics.query(protocol, rcode, seconds);
        const l = listener(protocol);
        l.queries.add();
        l.rcode(rcode).add();
        l.latency.record(seconds * 1000);
      },
      refused(reason) {
        metrics.refused(reason);
        refused(reason).add();
      },
      dropped(protocol, reason) {
        metrics.dropped(protocol, reason);
        listener(protocol).dropped(reason).add();
      },
      inFlight(delta) {
        metrics.inFlight(delta);
        inFlight += delta;
      },
      connection(name, delta) {
        metrics.connection(name, delta);
        const l = listener(name);
        (delta > 0 ? l.open : l.close).add(Math.abs(delta));
        connections.set(name, (connections.get(name) ?? 0) + delta);
      },
    }),
    readGauges(gaugeHead) {
      registry.gauge(`${gaugeHead}in_flight`, inFlight);
      for (const [name, open] of connections) {
        registry.gauge(`${gaugeHead}listener.${segment(name)}.connections`, open);
      }
    },
  };
}

/** The resolver's counters, also counting each upstream attempt in `registry`. */
export function upstreamSeries(registry: StatsdRegistry): (counters: Counters) => Counters {
  const upstream = memo((u) => {
    const at = `upstream.${segment(u)}`;
    return {
      requests: registry.counter(`${at}.requests`),
      errors: memo((errorClass) => registry.counter(`${at}.errors.${segment(errorClass)}`)),
      cancels: registry.counter(`${at}.cancels`),
      successes: registry.counter(`${at}.successes`),
      wins: registry.counter(`${at}.wins`),
      rcode: memo((rcode) => registry.counter(`${at}.rcode.${segment(rcode)}`)),
      latency: registry.timer(`${at}.latency`),
    };
  });
  return (counters) => ({
    attemptStarted(name) {
      counters.attemptStarted(name);
      upstream(name).requests.add();
    },
    attemptFailed(name, errorClass) {
      counters.attemptFailed(name, errorClass);
      upstream(name).errors(errorClass).add();
    },
    attemptCancelled(name) {
      counters.attemptCancelled(name);
      upstream(name).cancels.add();
    },
    attemptSucceeded(name, rcode, latencyMs) {
      counters.attemptSucceeded(name, rcode, latencyMs);
      const u = upstream(name);
      u.successes.add();
      u.rcode(rcodeText(rcode)).add();
      u.latency.record(latencyMs);
    },
    won(name) {
      counters.won(name);
      upstream(name).wins.add();
    },
    snapshot: () => counters.snapshot(),
  });
}

/** Pool counters sent as deltas between flushes (open and inFlight are gauges). */
const POOL_COUNTERS = [
  ["opened", "cx_open"],
  ["reconnects", "reconnects"],
  ["resumed", "resumed"],
  ["reused", "reused"],
  ["fresh", "fresh"],
] as const satisfies readonly (readonly [keyof PoolStats, string])[];

/** Reads every pooled transport's state into `registry`. */
export function poolSeries(registry: StatsdRegistry) {
  /** Last counters seen, per transport object (a reload brings new ones, from 0). */
  const last = new WeakMap<Upstream, PoolStats>();
  return (transports: ReadonlyMap<string, Upstream>, gaugeHead: string) => {
    for (const [name, t] of transports) {
      const now = t.poolStats?.();
      if (!now) continue;
      const before = last.get(t);
      last.set(t, { ...now });
      const at = `upstream.${segment(name)}.pool`;
      registry.gauge(`${gaugeHead}${at}.connections`, now.open);
      registry.gauge(`${gaugeHead}${at}.in_flight`, now.inFlight);
      for (const [field, series] of POOL_COUNTERS) {
        const delta = now[field] - (before?.[field] ?? 0);
        if (delta > 0) registry.counter(`${at}.${series}`).add(delta);
      }
    }
  };
}

/**
 * The sender's own failures, so the collector learns what it missed. A count
 * sent while the collector is down is lost too: it is known to have arrived
 * only when the next interval brings no new failure, and is sent again
 * (added to the newer ones) otherwise.
 */
export function selfSeries(registry: StatsdRegistry, stats: () => StatsdSinkStats) {
  let seen = stats();
  const unconfirmed = { send_errors: 0, dropped_packets: 0 };
  return () => {
    const now = stats();
    const fresh = {
      send_errors: now.sendErrors - seen.sendErrors,
      dropped_packets: now.packetsDropped - seen.packetsDropped,
    };
    seen = now;
    const lost = fresh.send_errors > 0 || fresh.dropped_packets > 0;
    for (const key of ["send_errors", "dropped_packets"] as const) {
      unconfirmed[key] = (lost ? unconfirmed[key] : 0) + fresh[key];
      if (unconfirmed[key] > 0) registry.counter(`statsd.${key}`).add(unconfirmed[key]);
    }
  };
}
