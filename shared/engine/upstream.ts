// The one shape every way of reaching an upstream has: a transport, a pool
// of a driver's connections (shared/pool), a tracked upstream (counters and
// health around one). Each goes where another would, like undici's
// Dispatchers; a route's race picks among them (docs/architecture.md, Pools).
//
// Who owns the bytes: the caller keeps its query (an Upstream never writes
// to it; a Node Buffer is fine). The answer is the caller's alone: a plain
// Uint8Array (never a Node Buffer, whose slice() is a view) over memory no
// one else reads or writes, so the caller may change it in place (setId)
// and every copy of it is a real copy. A transport makes it so once, where
// the bytes arrive (plainBytes, or copyBytes when it keeps the memory:
// shared/dns/bytes.ts); layers above copy only to keep or share an answer.
// test/shared/support/upstream-contract.ts is the table of these rules
// that each transport is tested against.

import { UpstreamError } from "./errors.ts";

export interface Upstream {
  /** Stable name: health, counters and logs are keyed by it. */
  readonly name: string;
  /**
   * Sends one DNS message and resolves with the response bytes, under the
   * message's ID whatever went on the wire. Rejects with an UpstreamError
   * (see errors.ts): `closed` after close, `aborted` (caused by the signal's
   * reason) once `signal` aborts, before or during the query, and promptly;
   * `bad_query` for bytes that cannot be a DNS message (see unsendable).
   */
  query(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array>;
  /** Releases connections and timers. Queries after close reject with `closed`. */
  close(): Promise<void>;
  /** Connection figures, on upstreams that keep connections (shared/pool/pool.ts). */
  poolStats?(): PoolStats;
}

/** What a connection pool reports for /metrics and /statusz. */
export interface PoolStats {
  /** Connections (sessions) open or opening now. */
  open: number;
  /** Queries holding a place on a connection now (waiting for its handshake or an answer). */
  inFlight: number;
  /** Connections opened since start (TCP connect, TLS or QUIC handshake). */
  opened: number;
  /** Of those, TLS sessions resumed from a ticket (0 where not applicable). */
  resumed: number;
  /** Connections opened to replace one that closed, died or failed to open. */
  reconnects: number;
  /** Queries sent on a connection that had already carried one. */
  reused: number;
  /** Queries that were the first on their connection. */
  fresh: number;
}

/**
 * The `bad_query` error for bytes no transport can send as a DNS message
 * (under a 12-byte header, or over 65535 bytes); undefined otherwise.
 */
export function unsendable(message: Uint8Array, upstream: string): UpstreamError | undefined {
  if (message.length >= 12 && message.length <= 0xffff) return undefined;
  return new UpstreamError(
    "bad_query",
    upstream,
    `${upstream}: ${message.length} bytes cannot be a DNS message`,
  );
}
