// The worker's `upstreams`: what it reaches by itself (DoH with fetch, DoT
// with sockets) and what it reaches through a relay (`via`).

import * as z from "zod";
import type { UpstreamProtocol } from "../../upstream-url.ts";
import type { ConfigPathSegment } from "../errors.ts";
import type { Checker } from "../parse.ts";
import {
  finalizeUpstreamBase,
  type KeyPath,
  TLS_KEYS,
  type UpstreamConfig,
  upstreamShape,
} from "./upstreams.ts";

export interface WorkerUpstreamConfig extends UpstreamConfig {
  /** The relay (a `relays[].name`) whose origin endpoint reaches this upstream. */
  via?: string;
}

/**
 * What the edge worker reaches by itself: DoH with fetch (h3:// is fetched as
 * https://, the platform picks the HTTP version) and DoT with
 * cloudflare:sockets, one connection per query. The rest needs `via: <relay>`.
 */
const WORKER_DIRECT_PROTOCOLS: readonly UpstreamProtocol[] = ["https", "http", "h3", "tls"];

/** `pool` is the relay's; accepted here only to be refused with a message saying so. */
export const workerUpstreamSchema = z.strictObject({
  ...upstreamShape,
  pool: z.unknown().optional(),
});

type RawWorkerUpstream = z.output<typeof workerUpstreamSchema>;

function checkVia(
  entry: RawWorkerUpstream & { via: string },
  base: UpstreamConfig,
  at: KeyPath,
  relayNames: ReadonlySet<string>,
  check: Checker,
) {
  if (!relayNames.has(entry.via)) {
    const known =
      relayNames.size === 0 ? "no relays are configured" : `relays: ${[...relayNames].join(", ")}`;
    check.error(at("via"), `unknown relay "${entry.via}" (${known})`);
  }
  for (const key of TLS_KEYS) {
    if (entry[key] !== undefined) {
      check.error(
        at(key),
        `the relay "${entry.via}" makes this connection; set ${key} on its upstream "${base.name}" in the relay's config`,
      );
    }
  }
}

function checkDirect(entry: RawWorkerUpstream, base: UpstreamConfig, at: KeyPath, check: Checker) {
  const protocol = base.url.protocol;
  if (!WORKER_DIRECT_PROTOCOLS.includes(protocol)) {
    check.error(
      at("url"),
      `the edge worker cannot speak ${protocol}://; add via: <relay name> to reach it through a relay`,
    );
    return;
  }
  for (const key of TLS_KEYS) {
    if (entry[key] === undefined || (key === "tls_servername" && protocol === "tls")) continue;
    check.error(
      at(key),
      key === "tls_servername"
        ? "the edge worker's fetch cannot set tls_servername; reach this upstream through a relay (via) to use it"
        : `the edge worker verifies against the platform's CA store and has no client certificate, so it cannot use ${key}; reach this upstream through a relay (via)`,
    );
  }
}

export function finalizeWorkerUpstreams(
  raw: RawWorkerUpstream[],
  relayNames: ReadonlySet<string>,
  check: Checker,
): WorkerUpstreamConfig[] {
  const upstreams: WorkerUpstreamConfig[] = [];
  const seen = new Set<string>();
  raw.forEach((entry, i) => {
    const at = (...rest: ConfigPathSegment[]) => ["upstreams", i, ...rest];
    if (entry.file !== undefined) {
      check.error(
        at("file"),
        "a resolv.conf entry works only on the relay (the edge worker reads no files); list the upstreams with url",
      );
      return;
    }
    const base = finalizeUpstreamBase(entry, at, seen, check);
    if (base === undefined) return;
    if (entry.pool !== undefined) {
      check.error(
        at("pool"),
        "relay-only key: the edge worker keeps no connection pools; remove pool",
      );
    }
    if (entry.via !== undefined) {
      checkVia({ ...entry, via: entry.via }, base, at, relayNames, check);
      upstreams.push({ ...base, via: entry.via });
    } else {
      checkDirect(entry, base, at, check);
      upstreams.push(base);
    }
  });
  return upstreams;
}
