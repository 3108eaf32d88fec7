// The relay's `upstreams`: a connection pool per upstream, and `file:`
// entries (a resolv.conf whose nameservers become udp upstreams).

import * as z from "zod";
import type { ConfigPathSegment } from "../errors.ts";
import { intIn, positiveDuration } from "../fields.ts";
import type { Checker } from "../parse.ts";
import {
  finalizeUpstreamBase,
  type RawUpstream,
  type UpstreamConfig,
  upstreamShape,
} from "./upstreams.ts";

/** Connection pool of one relay upstream. Durations in ms. */
export interface PoolConfig {
  /** Persistent connections kept open (default 2). */
  size: number;
  /** Queries in flight per connection (default 100). */
  max_in_flight: number;
  /** A connection idle this long is replaced (the stale timeout; default 8000). */
  idle_timeout: number;
  /** TCP/QUIC connect (default 2000). */
  connect_timeout: number;
  /** TLS handshake (default 3000). */
  handshake_timeout: number;
  /** Retries on a fresh connection when one dies mid-query (default 2). */
  max_retries: number;
}

export interface RelayUpstreamConfig extends UpstreamConfig {
  pool: PoolConfig;
}

/** A `file: /etc/resolv.conf` upstream entry not yet expanded (see RelayConfig.upstream_files). */
export interface UpstreamFileEntry {
  /** Position in the input `upstreams` list. */
  index: number;
  file: string;
  /** Prefix of the expanded names: `<name>-1`, `<name>-2`, … (default "resolv"). */
  name: string;
}

const poolSchema = z.strictObject({
  size: intIn(1, 256).default(2),
  max_in_flight: intIn(1, 65535).default(100),
  idle_timeout: positiveDuration.prefault("8s"),
  connect_timeout: positiveDuration.prefault("2s"),
  handshake_timeout: positiveDuration.prefault("3s"),
  max_retries: intIn(0, 10).default(2),
});

export const relayUpstreamSchema = z.strictObject({
  ...upstreamShape,
  pool: poolSchema.optional(),
});

type RawRelayUpstream = z.output<typeof relayUpstreamSchema>;

export interface RelayUpstreams {
  upstreams: RelayUpstreamConfig[];
  files: UpstreamFileEntry[];
}

/** Checks a `file:` entry (it takes only name) and returns its name prefix. */
function fileEntry(
  entry: RawUpstream & { file: string },
  at: (...rest: ConfigPathSegment[]) => ConfigPathSegment[],
  prefixes: Set<string>,
  check: Checker,
): string {
  for (const [key, value] of Object.entries(entry)) {
    if (value !== undefined && key !== "file" && key !== "name") {
      check.error(
        at(key),
        "a file: entry takes only name (the prefix of the expanded upstreams' names)",
      );
    }
  }
  const prefix = entry.name ?? "resolv";
  if (prefixes.has(prefix)) {
    check.error(
      at(entry.name === undefined ? "file" : "name"),
      `another file: entry already uses the name prefix "${prefix}"; give this one a different name`,
    );
  }
  prefixes.add(prefix);
  return prefix;
}

export function finalizeRelayUpstreams(raw: RawRelayUpstream[], check: Checker): RelayUpstreams {
  const upstreams: RelayUpstreamConfig[] = [];
  const files: UpstreamFileEntry[] = [];
  const seen = new Set<string>();
  const prefixes = new Set<string>();
  raw.forEach((entry, i) => {
    const at = (...rest: ConfigPathSegment[]) => ["upstreams", i, ...rest];
    if (entry.file !== undefined) {
      const name = fileEntry({ ...entry, file: entry.file }, at, prefixes, check);
      files.push({ index: i, file: entry.file, name });
      return;
    }
    const base = finalizeUpstreamBase(entry, at, seen, check);
    if (base === undefined) return;
    if (entry.via !== undefined) {
      check.error(at("via"), "edge-only key: the relay reaches its upstreams itself; remove via");
    }
    upstreams.push({ ...base, pool: entry.pool ?? poolSchema.parse({}) });
  });
  return { upstreams, files };
}
