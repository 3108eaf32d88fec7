// metrics.statsd: the relay's per-listener and per-upstream series (dotproxy's
// events: connections opened and closed, errors, upstream and round-trip
// latency) aggregated in memory and sent to a statsd collector over UDP
// every `interval`, and once more at shutdown. The reporter hooks in by
// wrapping the relay's metrics (listeners) and the resolver's counters
// (upstream attempts), and reads pool state at each flush. The series and
// their names are listed in the README (Operations → statsd).

import type { StatsdConfig } from "../../../shared/config/schema.ts";
import { rcodeText } from "../../../shared/dns/codes.ts";
import { type Clock, systemClock, type TimerHandle } from "../../../shared/engine/clock.ts";
import type { Counters } from "../../../shared/engine/counters.ts";
import { createCryptoRandom, type Random } from "../../../shared/engine/random.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { isPooled, type PoolStats } from "../transports/pool-stats.ts";
import {
  type CounterHandle,
  createStatsdRegistry,
  packLines,
  type TimerHandle as StatsdTimer,
  segment,
} from "./registry.ts";
import { createStatsdSink, type Lookup, type StatsdSinkStats } from "./sink.ts";

export interface StatsdReporterOptions {
  config: StatsdConfig;
  logger: Logger;
  clock?: Clock;
  random?: Random;
  lookup?: Lookup;
  /** A worker's slot (workers > 1): its gauges get a `worker.<n>.` segment. */
  worker?: number;
}

export interface StatsdReporter {
  /** The relay's metrics, also reporting listener events here. */
  wrapMetrics(metrics: RelayMetrics): RelayMetrics;
  /** The resolver's counters, also reporting upstream attempts here. */
  wrapCounters(counters: Counters): Counters;
  /** Where pool state is read at each flush (the current transports). */
  watchPools(transports: () => ReadonlyMap<string, Upstream>): void;
  /** Sends what accumulated since the last flush now. */
  flush(): void;
  stats(): StatsdSinkStats;
  /** A last flush, then the socket closes. */
  close(): Promise<void>;
}

/** Pool counters sent as deltas between flushes (the rest of PoolStats are gauges). */
const POOL_COUNTERS = [
  ["opened", "cx_open"],
  ["reconnects", "reconnects"],
  ["resumed", "resumed"],
  ["reused", "reused"],
  ["fresh", "fresh"],
] as const satisfies readonly (readonly [keyof PoolStats, string])[];

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

export function createStatsdReporter(options: StatsdReporterOptions): StatsdReporter {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const registry = createStatsdRegistry({
    prefix: config.prefix,
    sampleRate: config.sample_rate,
    timerSamples: config.timer_samples,
    random: options.random ?? createCryptoRandom(),
  });
  const sink = createStatsdSink({
    addr: config.addr,
    ...(options.lookup ? { lookup: options.lookup } : {}),
    onProblem: (what, error) =>
      logger.warn(what === "resolve" ? "statsd host not resolved" : "statsd send failed", {
        error,
        more: "counted, not logged again until it works",
      }),
  });
  const gaugeHead = options.worker === undefined ? "" : `worker.${options.worker}.`;
  let reported: StatsdSinkStats = sink.stats();
  let transports: (() => ReadonlyMap<string, Upstream>) | undefined;
  /** Last pool counters seen, per transport object (a reload brings new ones). */
  const lastPool = new WeakMap<Upstream, PoolStats>();
  /** Open client connections per listener, as a gauge. */
  const connections = new Map<string, number>();
  let inFlight = 0;

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

  function readPools(): void {
    if (!transports) return;
    for (const [name, t] of transports()) {
      if (!isPooled(t)) continue;
      const now = t.poolStats();
      const before = lastPool.get(t);
      lastPool.set(t, { ...now });
      const at = `upstream.${segment(name)}.pool`;
      registry.gauge(`${gaugeHead}${at}.connections`, now.open);
      registry.gauge(`${gaugeHead}${at}.in_flight`, now.inFlight);
      for (const [field, series] of POOL_COUNTERS) {
        const delta = now[field] - (before?.[field] ?? 0);
        if (delta > 0) registry.counter(`${at}.${series}`).add(delta);
      }
    }
  }

  /** The sink's own failures since the last flush, so the collector sees what it missed. */
  function readSelf(): void {
    const now = sink.stats();
    const add = (name: string, delta: number) => {
      if (delta > 0) registry.counter(name).add(delta);
    };
    add("statsd.send_errors", now.sendErrors - reported.sendErrors);
    add("statsd.dropped_packets", now.packetsDropped - reported.packetsDropped);
    reported = now;
  }

  function flush(): void {
    readPools();
    readSelf();
    registry.gauge(`${gaugeHead}in_flight`, inFlight);
    for (const [l, open] of connections) {
      registry.gauge(`${gaugeHead}listener.${segment(l)}.connections`, open);
    }
    sink.send(packLines(registry.drain(), config.max_packet_size));
  }

  let timer: TimerHandle | undefined;
  let stopped = false;
  const schedule = () => {
    timer = clock.setTimeout(tick, config.interval);
    // Never the thing that keeps the process alive.
    (timer as { unref?: () => void } | undefined)?.unref?.();
  };
  const tick = () => {
    if (stopped) return;
    flush();
    schedule();
  };
  schedule();

  return {
    wrapMetrics: (metrics) =>
      wrapMetrics(metrics, { listener, refused, connections, inFlight: (d) => (inFlight += d) }),
    wrapCounters: (counters) => wrapCounters(counters, upstream),
    watchPools(source) {
      transports = source;
    },
    flush,
    stats: () => sink.stats(),
    async close() {
      if (stopped) return;
      stopped = true;
      clock.clearTimeout(timer);
      flush();
      await sink.close();
    },
  };
}

interface ListenerHooks {
  listener: (name: string) => {
    queries: CounterHandle;
    latency: StatsdTimer;
    rcode: (rcode: string) => CounterHandle;
    dropped: (reason: string) => CounterHandle;
    open: CounterHandle;
    close: CounterHandle;
  };
  refused: (reason: string) => CounterHandle;
  connections: Map<string, number>;
  inFlight: (delta: number) => void;
}

function wrapMetrics(metrics: RelayMetrics, hooks: ListenerHooks): RelayMetrics {
  return {
    ...metrics,
    query(protocol, rcode, seconds) {
      metrics.query(protocol, rcode, seconds);
      const l = hooks.listener(protocol);
      l.queries.add();
      l.rcode(rcode).add();
      l.latency.record(seconds * 1000);
    },
    refused(reason) {
      metrics.refused(reason);
      hooks.refused(reason).add();
    },
    dropped(protocol, reason) {
      metrics.dropped(protocol, reason);
      hooks.listener(protocol).dropped(reason).add();
    },
    inFlight(delta) {
      metrics.inFlight(delta);
      hooks.inFlight(delta);
    },
    connection(name, delta) {
      metrics.connection(name, delta);
      const l = hooks.listener(name);
      (delta > 0 ? l.open : l.close).add(Math.abs(delta));
      hooks.connections.set(name, (hooks.connections.get(name) ?? 0) + delta);
    },
  };
}

type UpstreamHooks = (name: string) => {
  requests: CounterHandle;
  errors: (errorClass: string) => CounterHandle;
  cancels: CounterHandle;
  successes: CounterHandle;
  wins: CounterHandle;
  rcode: (rcode: string) => CounterHandle;
  latency: StatsdTimer;
};

function wrapCounters(counters: Counters, upstream: UpstreamHooks): Counters {
  return {
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
  };
}
