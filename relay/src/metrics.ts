// The relay's own counters (queries by protocol and rcode, latency, refusals,
// in-flight, connections) and the Prometheus text rendering, which adds the
// resolver's per-upstream accounting (fanout's names).

import { rcodeText } from "../../shared/dns/codes.ts";
import type { UpstreamCounterSnapshot } from "../../shared/engine/counters.ts";
import type { PoolStats, Upstream } from "../../shared/engine/upstream.ts";
import type { CachedResolverStats } from "../../shared/resolver/cached-resolver.ts";

const BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface RelayMetrics {
  query(protocol: string, rcode: string, seconds: number): void;
  refused(reason: string): void;
  dropped(protocol: string, reason: string): void;
  inFlight(delta: number): void;
  connection(listener: string, delta: number): void;
  render(upstreams: Record<string, UpstreamCounterSnapshot>, extra?: string): string;
  /** For tests and /statusz. */
  refusedCount(reason: string): number;
}

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labels = (l: Record<string, string | number>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${esc(String(v))}"`)
    .join(",")}}`;

interface Histogram {
  sum: number;
  count: number;
  buckets: number[];
}

/** The relay's own counts, as render() reads them. */
interface RelayCounts {
  /** Per protocol, per rcode (both from small fixed sets, so their hashes are cached). */
  queries: Map<string, Map<string, number>>;
  latency: Map<string, Histogram>;
  refused: Map<string, number>;
  /** By protocol and reason, joined by a NUL. */
  dropped: Map<string, number>;
  connections: Map<string, number>;
  inFlight: number;
}

const bump = (m: Map<string, number>, key: string, by = 1) => m.set(key, (m.get(key) ?? 0) + by);

export function createRelayMetrics(): RelayMetrics {
  const counts: RelayCounts = {
    queries: new Map(),
    latency: new Map(),
    refused: new Map(),
    dropped: new Map(),
    connections: new Map(),
    inFlight: 0,
  };
  return {
    query(protocol, rcode, seconds) {
      let byRcode = counts.queries.get(protocol);
      if (!byRcode) {
        byRcode = new Map();
        counts.queries.set(protocol, byRcode);
      }
      bump(byRcode, rcode);
      observeLatency(counts.latency, protocol, seconds);
    },
    refused: (reason) => bump(counts.refused, reason),
    dropped: (protocol, reason) => bump(counts.dropped, `${protocol}\u0000${reason}`),
    inFlight(delta) {
      counts.inFlight += delta;
    },
    connection: (listener, delta) => bump(counts.connections, listener, delta),
    refusedCount: (reason) => counts.refused.get(reason) ?? 0,
    render(upstreams, extra = "") {
      const out = [...relayCountLines(counts), ...upstreamCounterLines(upstreams)];
      return `${out.join("\n")}\n${extra}`;
    },
  };
}

/** Adds one query's latency to its protocol's histogram. */
function observeLatency(latency: Map<string, Histogram>, protocol: string, seconds: number): void {
  let h = latency.get(protocol);
  if (!h) {
    h = { sum: 0, count: 0, buckets: BUCKETS_S.map(() => 0) };
    latency.set(protocol, h);
  }
  h.sum += seconds;
  h.count++;
  // Cumulative buckets: every bound at or above the value.
  for (let i = BUCKETS_S.length - 1; i >= 0 && seconds <= BUCKETS_S[i]!; i--) h.buckets[i]!++;
}

/** The HELP and TYPE lines that open a family. */
const familyHeader = (name: string, type: string, help: string) => [
  `# HELP ${name} ${help}`,
  `# TYPE ${name} ${type}`,
];

/** The relay's own counts, as Prometheus text lines. */
function relayCountLines(counts: RelayCounts): string[] {
  const out: string[] = [];
  const family = (name: string, type: string, help: string) =>
    out.push(...familyHeader(name, type, help));
  family("doh_relay_queries_total", "counter", "Client queries answered, by protocol and rcode.");
  for (const [protocol, byRcode] of counts.queries) {
    for (const [rcode, n] of byRcode) {
      out.push(`doh_relay_queries_total${labels({ protocol, rcode })} ${n}`);
    }
  }
  family("doh_relay_query_duration_seconds", "histogram", "Client query latency.");
  for (const [protocol, h] of counts.latency) {
    BUCKETS_S.forEach((le, i) => {
      out.push(
        `doh_relay_query_duration_seconds_bucket${labels({ protocol, le })} ${h.buckets[i]}`,
      );
    });
    out.push(
      `doh_relay_query_duration_seconds_bucket${labels({ protocol, le: "+Inf" })} ${h.count}`,
      `doh_relay_query_duration_seconds_sum${labels({ protocol })} ${h.sum}`,
      `doh_relay_query_duration_seconds_count${labels({ protocol })} ${h.count}`,
    );
  }
  family("doh_relay_refused_total", "counter", "Queries refused by the relay, by reason.");
  for (const [reason, n] of counts.refused) {
    out.push(`doh_relay_refused_total${labels({ reason })} ${n}`);
  }
  family("doh_relay_dropped_total", "counter", "Messages dropped unanswered.");
  for (const [key, n] of counts.dropped) {
    const [protocol = "", reason = ""] = key.split("\u0000");
    out.push(`doh_relay_dropped_total${labels({ protocol, reason })} ${n}`);
  }
  family("doh_relay_in_flight", "gauge", "Client queries in flight.");
  out.push(`doh_relay_in_flight ${counts.inFlight}`);
  family("doh_relay_connections", "gauge", "Open client connections per listener.");
  for (const [listener, n] of counts.connections) {
    out.push(`doh_relay_connections${labels({ listener })} ${n}`);
  }
  return out;
}

/** The resolver's per-upstream accounting (fanout's names), as Prometheus text lines. */
function upstreamCounterLines(upstreams: Record<string, UpstreamCounterSnapshot>): string[] {
  const out: string[] = [];
  const up = Object.entries(upstreams);
  /** A family with one sample per upstream. */
  const perUpstream = (
    name: string,
    help: string,
    value: (s: UpstreamCounterSnapshot) => number,
  ) => {
    out.push(...familyHeader(name, "counter", help));
    for (const [upstream, s] of up) out.push(`${name}${labels({ upstream })} ${value(s)}`);
  };
  perUpstream("request_count_total", "Upstream attempts.", (s) => s.request);
  out.push(
    ...familyHeader(
      "request_error_count_total",
      "counter",
      "Failed upstream attempts by error class.",
    ),
  );
  for (const [upstream, s] of up) {
    for (const [error, n] of Object.entries(s.errors)) {
      out.push(`request_error_count_total${labels({ upstream, error })} ${n}`);
    }
  }
  perUpstream("request_cancel_count_total", "Upstream attempts cancelled.", (s) => s.cancel);
  perUpstream(
    "response_success_count_total",
    "Upstream attempts with a valid response.",
    (s) => s.success,
  );
  perUpstream(
    "response_win_count_total",
    "Upstream responses returned to the client.",
    (s) => s.win,
  );
  out.push(
    ...familyHeader("response_rcode_count_total", "counter", "Upstream responses by rcode."),
  );
  for (const [upstream, s] of up) {
    for (const [rcode, n] of Object.entries(s.rcodes)) {
      out.push(
        `response_rcode_count_total${labels({ upstream, rcode: rcodeText(Number(rcode)) })} ${n}`,
      );
    }
  }
  out.push(...familyHeader("request_duration_seconds", "histogram", "Upstream attempt latency."));
  for (const [upstream, s] of up) {
    for (const b of s.latency.buckets) {
      const le = b.le === Number.POSITIVE_INFINITY ? "+Inf" : b.le / 1000;
      out.push(`request_duration_seconds_bucket${labels({ upstream, le })} ${b.count}`);
    }
    out.push(`request_duration_seconds_sum${labels({ upstream })} ${s.latency.sumMs / 1000}`);
    out.push(`request_duration_seconds_count${labels({ upstream })} ${s.latency.count}`);
  }
  return out;
}

/** A metric family per field of a stats object: [field, name, type, help]. */
type Families<T> = [keyof T, string, "gauge" | "counter", string][];

/** Each family with one sample per labelled stats object, in Prometheus text. */
function renderFamilies<T>(
  families: Families<T>,
  samples: readonly (readonly [Record<string, string>, T])[],
): string {
  const out: string[] = [];
  for (const [key, family, type, help] of families) {
    out.push(...familyHeader(family, type, help));
    for (const [sampleLabels, stats] of samples) {
      const text = Object.keys(sampleLabels).length > 0 ? labels(sampleLabels) : "";
      out.push(`${family}${text} ${String(stats[key])}`);
    }
  }
  return `${out.join("\n")}\n`;
}

const POOL_FAMILIES: Families<PoolStats> = [
  ["open", "doh_relay_upstream_connections", "gauge", "Open pooled upstream connections."],
  ["inFlight", "doh_relay_upstream_in_flight", "gauge", "Queries awaiting an upstream answer."],
  [
    "opened",
    "doh_relay_upstream_connections_opened_total",
    "counter",
    "Upstream connections opened (TCP connects, TLS and QUIC handshakes).",
  ],
  [
    "resumed",
    "doh_relay_upstream_tls_resumed_total",
    "counter",
    "Upstream TLS handshakes that resumed a session.",
  ],
  [
    "reconnects",
    "doh_relay_upstream_reconnects_total",
    "counter",
    "Upstream connections opened to replace a closed one.",
  ],
  [
    "reused",
    "doh_relay_upstream_reused_total",
    "counter",
    "Queries sent on a connection that had carried one before.",
  ],
  [
    "fresh",
    "doh_relay_upstream_fresh_total",
    "counter",
    "Queries that were the first on a new connection.",
  ],
];

/** Pool state of every pooled transport, in Prometheus text. */
export function renderPoolStats(transports: ReadonlyMap<string, Upstream>): string {
  return renderFamilies(
    POOL_FAMILIES,
    [...transports].flatMap(([name, t]) => {
      const stats = t.poolStats?.();
      return stats ? [[{ upstream: name }, stats] as const] : [];
    }),
  );
}

const CACHE_FAMILIES: Families<CachedResolverStats> = [
  ["hits", "doh_relay_cache_hits_total", "counter", "Queries answered from the cache."],
  ["misses", "doh_relay_cache_misses_total", "counter", "Queries not in the cache (or expired)."],
  [
    "stale",
    "doh_relay_cache_stale_total",
    "counter",
    "Stale answers served when upstreams failed.",
  ],
  ["evictions", "doh_relay_cache_evictions_total", "counter", "Entries evicted to stay in bounds."],
  [
    "coalesced",
    "doh_relay_cache_coalesced_total",
    "counter",
    "Queries that joined an identical one in flight.",
  ],
  ["entries", "doh_relay_cache_entries", "gauge", "Entries in the cache."],
  ["bytes", "doh_relay_cache_bytes", "gauge", "Bytes of cached messages."],
];

/** The answer cache's counters, in Prometheus text. */
export function renderCacheStats(stats: CachedResolverStats): string {
  return renderFamilies(CACHE_FAMILIES, [[{}, stats]]);
}

/** Rule and block-list decisions by action, in Prometheus text. */
export function renderPolicyHits(hits: Record<string, number>): string {
  const out = [
    "# HELP doh_relay_policy_hits_total Queries answered or redirected by rules and block lists.",
    "# TYPE doh_relay_policy_hits_total counter",
  ];
  for (const [action, n] of Object.entries(hits)) {
    out.push(`doh_relay_policy_hits_total${labels({ action })} ${n}`);
  }
  return `${out.join("\n")}\n`;
}

export interface WorkerStats {
  /** Workers running and ready. */
  running: number;
  /** Worker restarts since the supervisor started. */
  restarts: number;
}

const WORKER_FAMILIES: Families<WorkerStats> = [
  ["running", "doh_relay_workers", "gauge", "Relay worker processes running and ready."],
  [
    "restarts",
    "doh_relay_worker_restarts_total",
    "counter",
    "Workers restarted after they exited.",
  ],
];

/** The supervisor's own state, in Prometheus text. */
export function renderWorkerStats(stats: WorkerStats): string {
  return renderFamilies(WORKER_FAMILIES, [[{}, stats]]);
}

interface Family {
  comments: string[];
  samples: Map<string, number>;
}

/** Prometheus text by family (the name its HELP line gives), in order. */
function parseFamilies(text: string, into = new Map<string, Family>()): Map<string, Family> {
  let family: Family | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) {
      const name = line.slice(7, line.indexOf(" ", 7));
      family = into.get(name);
      if (!family) {
        family = { comments: [], samples: new Map() };
        into.set(name, family);
      }
    }
    if (!family) continue;
    if (line.startsWith("#")) {
      if (!family.comments.includes(line)) family.comments.push(line);
      continue;
    }
    const space = line.lastIndexOf(" ");
    const key = line.slice(0, space);
    family.samples.set(key, (family.samples.get(key) ?? 0) + Number(line.slice(space + 1)));
  }
  return into;
}

/**
 * What the workers' render() texts add up to: samples with the same name and
 * labels are summed (counters, gauges and histogram buckets all add).
 */
export function sumMetrics(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  for (const text of texts) parseFamilies(text, families);
  const out: string[] = [];
  for (const { comments, samples } of families.values()) {
    out.push(...comments);
    for (const [key, value] of samples) out.push(`${key} ${value}`);
  }
  return `${out.join("\n")}\n`;
}

/** The sum of one family's samples in a render() text, e.g. every answered query. */
export function familyTotal(text: string, name: string): number {
  let total = 0;
  for (const value of parseFamilies(text).get(name)?.samples.values() ?? []) total += value;
  return total;
}
