// `upstreams`: the keys both runtimes take and the checks they share. Each
// runtime adds its own keys and rules (relay-upstreams.ts, worker-upstreams.ts).

import * as z from "zod";
import {
  isDohProtocol,
  isTlsProtocol,
  plainHttpWarning,
  type UpstreamUrl,
} from "../../upstream-url.ts";
import type { ConfigPathSegment } from "../errors.ts";
import { hostName, identifier, intIn, nonEmpty, positiveDuration, upstreamUrl } from "../fields.ts";
import type { Checker } from "../parse.ts";

export interface UpstreamConfig {
  /** Unique; letters, digits, ".", "_", "-". Used in /origin/<name>, metrics, logs. */
  name: string;
  url: UpstreamUrl;
  /** Load factor 1–100 for weighted_random (default 100). */
  weight: number;
  /** DoH upstreams only: "POST" unless set to "GET"; undefined for other protocols. */
  method?: "POST" | "GET";
  /** Per attempt, ms; undefined = bounded by the route's timeout only. */
  timeout?: number;
  /** TLS upstreams only (tls, https, h3, quic). ca/cert/key: file paths or PEM text. */
  tls_servername?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

/** Both runtimes' upstream keys; runtime rules (via, pool, file) are checked afterwards. */
export const upstreamShape = {
  name: identifier("upstream names").optional(),
  url: upstreamUrl.optional(),
  file: nonEmpty.optional(),
  weight: intIn(1, 100).optional(),
  tls_servername: hostName.optional(),
  ca: nonEmpty.optional(),
  cert: nonEmpty.optional(),
  key: nonEmpty.optional(),
  timeout: positiveDuration.optional(),
  method: z.enum(["POST", "GET"]).optional(),
  via: z.string().optional(),
};

export type RawUpstream = z.output<z.ZodObject<typeof upstreamShape>>;

export const TLS_KEYS = ["tls_servername", "ca", "cert", "key"] as const;

export type KeyPath = (...rest: ConfigPathSegment[]) => ConfigPathSegment[];

/**
 * The checks every url upstream gets, and its normalized common part;
 * undefined when name or url is missing. `seen` collects the names so far.
 */
export function finalizeUpstreamBase(
  entry: RawUpstream,
  at: KeyPath,
  seen: Set<string>,
  check: Checker,
): UpstreamConfig | undefined {
  if (entry.name === undefined) check.error(at("name"), "required");
  if (entry.url === undefined) {
    check.error(at("url"), "required (or file: for a resolv.conf)");
    return undefined;
  }
  if (entry.name === undefined) return undefined;
  if (seen.has(entry.name)) check.error(at("name"), `duplicate upstream name "${entry.name}"`);
  seen.add(entry.name);

  const url = entry.url;
  const protocol = url.protocol;
  if (entry.method !== undefined && !isDohProtocol(protocol)) {
    check.error(
      at("method"),
      `only DoH upstreams (https, http, h3) take a method; this one is ${protocol}://`,
    );
  }
  for (const key of TLS_KEYS) {
    if (entry[key] !== undefined && !isTlsProtocol(protocol)) {
      check.error(
        at(key),
        `only TLS upstreams (tls, https, h3, quic) take ${key}; this one is ${protocol}://`,
      );
    }
  }
  if ((entry.cert === undefined) !== (entry.key === undefined)) {
    const missing = entry.cert === undefined ? "cert" : "key";
    check.error(
      at(entry.cert === undefined ? "key" : "cert"),
      `a client certificate needs both cert and key; add ${missing}`,
    );
  }
  const warning = plainHttpWarning(url);
  if (warning !== undefined) check.warn(at("url"), warning);

  return {
    name: entry.name,
    url,
    weight: entry.weight ?? 100,
    ...(isDohProtocol(protocol) ? { method: entry.method ?? "POST" } : {}),
    ...(entry.timeout !== undefined ? { timeout: entry.timeout } : {}),
    ...(entry.tls_servername !== undefined ? { tls_servername: entry.tls_servername } : {}),
    ...(entry.ca !== undefined ? { ca: entry.ca } : {}),
    ...(entry.cert !== undefined ? { cert: entry.cert } : {}),
    ...(entry.key !== undefined ? { key: entry.key } : {}),
  };
}
