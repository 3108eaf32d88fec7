// The relay's `metrics`: push reporting beside the /metrics endpoint (which
// is a listener, listen.metrics).

import * as z from "zod";
import { type HostPort, parseHostPort } from "../../upstream-url.ts";
import { parsedString } from "../fields.ts";

export interface StatsdConfig {
  addr: HostPort;
  /** 0 < rate ≤ 1 (default 1). */
  sample_rate: number;
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
      })
      .optional(),
  })
  .prefault({});

export function finalizeMetrics(raw: z.output<typeof metricsSchema>): MetricsConfig {
  return raw.statsd === undefined ? {} : { statsd: raw.statsd };
}
