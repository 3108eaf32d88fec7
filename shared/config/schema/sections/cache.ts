// `cache`: size, TTL clamps and what failures are kept. TTLs in ms, whole seconds.

import * as z from "zod";
import { intFrom, ttlDuration } from "../fields.ts";
import type { Checker } from "../parse.ts";

export interface CacheConfig {
  /** Entries; 0 disables the cache (default 10000). */
  size: number;
  /** Optional byte budget for cached messages. */
  max_bytes?: number;
  /** TTL clamp, ms, whole seconds (defaults 0 and 86400000 = 1d). */
  min_ttl: number;
  max_ttl: number;
  /** Cap for NXDOMAIN/NODATA TTLs, ms (default 3600000 = 1h). */
  negative_ttl: number;
  /** How long a SERVFAIL is cached, ms; 0 = not at all (default 5000). */
  servfail_ttl: number;
  /** Serve an expired entry when every upstream fails (default false). */
  serve_stale: boolean;
}

export const cacheSchema = z.strictObject({
  size: intFrom(0).default(10_000),
  max_bytes: intFrom(0).optional(),
  min_ttl: ttlDuration.prefault("0s"),
  max_ttl: ttlDuration.prefault("1d"),
  negative_ttl: ttlDuration.prefault("1h"),
  servfail_ttl: ttlDuration.prefault("5s"),
  serve_stale: z.boolean().default(false),
});

export function finalizeCache(raw: z.output<typeof cacheSchema>, check: Checker): CacheConfig {
  const cache: CacheConfig = {
    size: raw.size,
    ...(raw.max_bytes !== undefined ? { max_bytes: raw.max_bytes } : {}),
    min_ttl: raw.min_ttl,
    max_ttl: raw.max_ttl,
    negative_ttl: raw.negative_ttl,
    servfail_ttl: raw.servfail_ttl,
    serve_stale: raw.serve_stale,
  };
  if (cache.min_ttl > cache.max_ttl) check.error(["cache", "min_ttl"], "must not be above max_ttl");
  return cache;
}
