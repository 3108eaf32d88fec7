// metrics.statsd: the relay's per-listener and per-upstream series (dotproxy's
// events: connections opened and closed, errors, upstream and round-trip
// latency) aggregated in memory and sent to a statsd collector over UDP
// every `interval`, and once more at shutdown. The reporter hooks in by
// wrapping the relay's metrics (listeners) and the resolver's counters
// (upstream attempts), and reads pool state at each flush (series.ts).

import type { StatsdConfig } from "../../../shared/config/schema.ts";
import { type Clock, systemClock, type TimerHandle } from "../../../shared/engine/clock.ts";
import type { Counters } from "../../../shared/engine/counters.ts";
import { createCryptoRandom, type Random } from "../../../shared/engine/random.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { createStatsdRegistry, packLines } from "./registry.ts";
import { listenerSeries, poolSeries, selfSeries, upstreamSeries } from "./series.ts";
import { createStatsdSink, type Lookup, type StatsdSinkStats } from "./sink.ts";

export interface StatsdReporterOptions {
  config: StatsdConfig;
  logger: Logger;
  /** Drives the flush interval (tests use a manual clock). */
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
  // Counters and timers from several workers add up at the collector; gauges would overwrite.
  const gaugeHead = options.worker === undefined ? "" : `worker.${options.worker}.`;
  const listeners = listenerSeries(registry);
  const wrapCounters = upstreamSeries(registry);
  const readPools = poolSeries(registry);
  const readSelf = selfSeries(registry, () => sink.stats());
  let transports: (() => ReadonlyMap<string, Upstream>) | undefined;

  function flush(): void {
    if (transports) readPools(transports(), gaugeHead);
    readSelf();
    listeners.readGauges(gaugeHead);
    sink.send(packLines(registry.drain(), config.max_packet_size));
  }

  let timer: TimerHandle | undefined;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    flush();
    schedule();
  };
  const schedule = () => {
    timer = clock.setTimeout(tick, config.interval);
    // Never the thing that keeps the process alive.
    (timer as { unref?: () => void } | undefined)?.unref?.();
  };
  schedule();

  return {
    wrapMetrics: (metrics) => listeners.wrap(metrics),
    wrapCounters,
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
