// Builds the Upstream for each configured upstream by protocol.

import { readFileSync } from "node:fs";
import { formatHostPort } from "../../../shared/config/ip.ts";
import type { RelayConfig, RelayUpstreamConfig } from "../../../shared/config/schema.ts";
import { DOH_PATH } from "../../../shared/doh/doh-request.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import { createFetchDohUpstream } from "../../../shared/transport/doh-fetch.ts";
import { type Bootstrap, createBootstrap, type LookupFunction } from "./bootstrap.ts";
import { createDohH2Upstream } from "./doh-h2.ts";
import { createDoh3Upstream } from "./doh3.ts";
import { createDoqUpstream } from "./doq.ts";
import { relayClock } from "./relay-clock.ts";
import { createStreamPool } from "./stream-pool.ts";
import { createUdpUpstream } from "./udp.ts";

/** A file path or inline PEM text. */
function pem(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return value.includes("-----BEGIN") ? value : readFileSync(value, "utf8");
}

function tlsOptions(upstream: RelayUpstreamConfig) {
  return {
    ...(upstream.tls_servername !== undefined ? { servername: upstream.tls_servername } : {}),
    ...(upstream.ca !== undefined ? { ca: pem(upstream.ca) } : {}),
    ...(upstream.cert !== undefined ? { cert: pem(upstream.cert) } : {}),
    ...(upstream.key !== undefined ? { key: pem(upstream.key) } : {}),
  };
}

/** What the QUIC upstreams (quic://, h3://) take from an upstream's config. */
function quicOptions(upstream: RelayUpstreamConfig, lookup: LookupFunction | undefined) {
  const { url, name, pool } = upstream;
  return {
    name,
    host: url.host,
    port: url.port,
    ...tlsOptions(upstream),
    connectTimeoutMs: pool.connect_timeout,
    handshakeTimeoutMs: pool.handshake_timeout,
    idleTimeoutMs: pool.idle_timeout,
    maxRetries: pool.max_retries,
    maxInFlight: pool.max_in_flight,
    lookup,
  };
}

export function buildTransport(
  upstream: RelayUpstreamConfig,
  bootstrap?: Bootstrap,
  clock: Clock = relayClock,
): Upstream {
  const { url, name, pool } = upstream;
  const lookup = url.hostKind === "name" ? bootstrap?.lookup : undefined;
  switch (url.protocol) {
    case "udp":
      return createUdpUpstream({
        name,
        host: url.host,
        port: url.port,
        connectTimeoutMs: pool.connect_timeout,
        lookup,
        clock,
      });
    case "tcp":
    case "tls":
      return createStreamPool({
        name,
        host: url.host,
        port: url.port,
        ...(url.protocol === "tls" ? { tls: tlsOptions(upstream) } : {}),
        size: pool.size,
        maxInFlight: pool.max_in_flight,
        idleTimeoutMs: pool.idle_timeout,
        connectTimeoutMs: pool.connect_timeout,
        handshakeTimeoutMs: pool.handshake_timeout,
        maxRetries: pool.max_retries,
        lookup,
        clock,
      });
    case "http":
      // Plain-HTTP DoH is for loopback, tunnels and `wrangler dev`, which
      // speak HTTP/1.1: Node's fetch keeps those connections alive and pooled.
      return createFetchDohUpstream({
        name,
        url: `http://${formatHostPort(url)}${url.path ?? DOH_PATH}`,
        method: upstream.method ?? "POST",
      });
    case "https": {
      return createDohH2Upstream({
        name,
        origin: `https://${formatHostPort(url)}`,
        path: url.path ?? DOH_PATH,
        method: upstream.method ?? "POST",
        poolSize: pool.size,
        maxInFlight: pool.max_in_flight,
        connectTimeoutMs: pool.connect_timeout + pool.handshake_timeout,
        idleTimeoutMs: pool.idle_timeout,
        maxRetries: pool.max_retries,
        tls: tlsOptions(upstream),
        lookup,
        clock,
      });
    }
    case "h3":
      // HTTP/3 only, on one QUIC connection (ALPN h3) like quic://: pool.size does not apply.
      return createDoh3Upstream({
        ...quicOptions(upstream, lookup),
        path: url.path ?? DOH_PATH,
        method: upstream.method ?? "POST",
        clock,
      });
    case "quic":
      // One QUIC connection carries every query: pool.size does not apply.
      return createDoqUpstream({ ...quicOptions(upstream, lookup), clock });
    default: {
      const unknown: never = url.protocol;
      throw new Error(`no transport for ${String(unknown)}://`);
    }
  }
}

export interface Transports {
  upstreams: Map<string, Upstream>;
  /** Resolves upstream host names when `bootstrap` servers are configured. */
  bootstrap: Bootstrap | undefined;
  close(): Promise<void>;
}

/** Every configured upstream's transport; pools keep time by `clock`. */
export function buildTransports(config: RelayConfig, clock: Clock = relayClock): Transports {
  const bootstrap =
    config.bootstrap.length > 0
      ? createBootstrap({
          servers: config.bootstrap,
          ...(config.ecs !== undefined ? { ecs: config.ecs } : {}),
        })
      : undefined;
  const upstreams = new Map(
    config.upstreams.map((u) => [u.name, buildTransport(u, bootstrap, clock)]),
  );
  return {
    upstreams,
    bootstrap,
    async close() {
      await Promise.all([...upstreams.values()].map((t) => t.close()));
      await bootstrap?.close();
    },
  };
}
