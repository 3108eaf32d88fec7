// The relay's client-facing limits: `allow` (who may query) and
// `rate_limit` (how much, per client address).

import * as z from "zod";
import { type Cidr, LOOPBACK_AND_PRIVATE_CIDRS, parseCidr } from "../../ip.ts";
import { intFrom, parsedString } from "../fields.ts";
import type { Checker } from "../parse.ts";

/** Per client address; 0 = unlimited. */
export interface RateLimitConfig {
  /** Sustained queries per second (default 500). */
  qps: number;
  /** Bucket size (default 2 × qps). */
  burst: number;
  /** Queries in flight at once (default 200). */
  max_in_flight: number;
}

export const cidr = parsedString(parseCidr, 'a CIDR block such as "10.0.0.0/8"');

export const allowSchema = z.array(cidr).optional();

export const rateLimitSchema = z
  .strictObject({
    qps: intFrom(0).default(500),
    burst: intFrom(1).optional(),
    max_in_flight: intFrom(0).default(200),
  })
  .prefault({});

/** The allow list, loopback and private ranges by default. */
export function finalizeAllow(raw: Cidr[] | undefined, check: Checker): Cidr[] {
  if (raw !== undefined && raw.length === 0) {
    check.warn(["allow"], "is empty: every client will get REFUSED");
  }
  return raw ?? LOOPBACK_AND_PRIVATE_CIDRS.map(parseCidr);
}

export function finalizeRateLimit(raw: z.output<typeof rateLimitSchema>): RateLimitConfig {
  return {
    qps: raw.qps,
    burst: raw.burst ?? Math.max(1, raw.qps * 2),
    max_in_flight: raw.max_in_flight,
  };
}
