// A route's `health_check`: an active probe per upstream, by DNS query
// (default ". NS") or by HTTP GET (CoreDNS proxy's `health_check PATH:PORT`).

import * as z from "zod";
import { tryNormalizeDomainName } from "../../except.ts";
import { describe } from "../errors.ts";
import { absoluteUrlPath, parseQtype, port, positiveDuration } from "../fields.ts";
import type { Checker } from "../parse.ts";
import type { KeyPath } from "./upstreams.ts";

/**
 * Active health probe per upstream of a route. Input shape:
 *   health_check: { interval: 4s, timeout: 2s, query: ". NS" }      # DNS probe (default)
 *   health_check: { interval: 4s, http: { path: /health, port: 8080 } }
 * The HTTP form probes http://<upstream host>:<port><path> (CoreDNS proxy's
 * `health_check PATH:PORT`); status 200–399 means healthy.
 */
export type HealthCheckConfig =
  | { kind: "dns"; interval: number; timeout: number; query: { name: string; qtype: number } }
  | { kind: "http"; interval: number; timeout: number; path: string; port: number };

export const healthCheckSchema = z.strictObject({
  interval: positiveDuration.prefault("4s"),
  timeout: positiveDuration.prefault("2s"),
  query: z.string().optional(),
  http: z.strictObject({ path: absoluteUrlPath.default("/health"), port }).optional(),
});

/** "<name> <type>" → the probe question; undefined when it does not read so. */
function probeQuestion(text: string): { name: string; qtype: number } | undefined {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 2) return undefined;
  const name = tryNormalizeDomainName(parts[0] ?? "");
  try {
    return name === undefined ? undefined : { name, qtype: parseQtype(parts[1]!) };
  } catch {
    return undefined;
  }
}

export function finalizeHealthCheck(
  raw: z.output<typeof healthCheckSchema>,
  at: KeyPath,
  check: Checker,
): HealthCheckConfig | undefined {
  const { interval, timeout } = raw;
  if (raw.http !== undefined) {
    if (raw.query !== undefined) {
      check.error(at("query"), "a health check probes with either query (DNS) or http, not both");
      return undefined;
    }
    return { kind: "http", interval, timeout, path: raw.http.path, port: raw.http.port };
  }
  const query = probeQuestion(raw.query ?? ". NS");
  if (query === undefined) {
    check.error(at("query"), `expected "<name> <type>" such as ". NS", got ${describe(raw.query)}`);
    return undefined;
  }
  return { kind: "dns", interval, timeout, query };
}
