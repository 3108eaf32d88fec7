// The relay's `metrics`: push reporting beside the /metrics endpoint (which
// is a listener, listen.metrics).

import * as z from "zod";
import { type HostPort, parseHostPort } from "../../upstream-url.ts";
import { intIn, parsedString, positiveDuration } from "../fields.ts";

export interface StatsdConfig {
  addr: HostPort;
  /** Share of latency samples kept, 0 < rate ≤ 1 (default 1); counters are always exact. */
  sample_rate: number;
  /** Dotted name prefix (default "doh_relay"); "" for none. */
  prefix: string;
  /** ms between flushes (default 10000). */
  interval: number;
  /** Bytes per UDP packet, lines joined by newlines up to this (default 1432). */
  max_packet_size: number;
  /** Latency samples kept per series per flush (default 100); more are sampled down. */
  timer_samples: number;
}

export interface MetricsConfig {
  statsd?: StatsdConfig;
}

export const metricsSchema = z
  .strictObject({
    statsd: z
      .strictObject({
        addr: parsedString(
          (text) => parseHostPort(text, { defaultPort: 8125 }),
          'an address such as "127.0.0.1:8125"',
        ),
        sample_rate: z
          .number()
          .gt(0, "must be greater than 0 and at most 1")
          .max(1, "must be greater than 0 and at most 1")
          .default(1),
        prefix: z
          .string()
          .regex(
            /^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$/,
            'must be dotted words of letters, digits, "_" and "-" (or "" for none)',
          )
          .default("doh_relay"),
        interval: positiveDuration.prefault("10s"),
        max_packet_size: intIn(512, 65_000).default(1432),
        timer_samples: intIn(1, 10_000).default(100),
      })
      .optional(),
  })
  .prefault({});

export function finalizeMetrics(raw: z.output<typeof metricsSchema>): MetricsConfig {
  return raw.statsd === undefined ? {} : { statsd: raw.statsd };
}
