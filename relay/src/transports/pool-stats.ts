// What every pooled upstream (DoT, TCP, DoQ, HTTP/2 DoH) reports for
// /metrics and /statusz, read off the transport by duck typing.

import type { Upstream } from "../../../shared/engine/upstream.ts";

export interface PoolStats {
  /** Connections (sessions) open now. */
  open: number;
  /** Queries waiting for an answer on any connection now. */
  inFlight: number;
  /** Connections opened since start (TCP connect, TLS or QUIC handshake). */
  opened: number;
  /** Of those, TLS sessions resumed from a ticket (0 where not applicable). */
  resumed: number;
  /** Connections opened to replace one that died or went stale. */
  reconnects: number;
  /** Queries sent on a connection that had already carried one. */
  reused: number;
  /** Queries that needed a new connection first. */
  fresh: number;
}

export interface PooledUpstream extends Upstream {
  poolStats(): PoolStats;
}

export function isPooled(upstream: Upstream): upstream is PooledUpstream {
  return typeof (upstream as Partial<PooledUpstream>).poolStats === "function";
}

export function emptyPoolStats(): PoolStats {
  return { open: 0, inFlight: 0, opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
}
