// What a protocol gives the pool core (pool.ts): a way to open one
// connection and to exchange one query on it. The core does the rest
// (how many connections, which one a query takes, idle timers, reconnect
// backoff, retries, stats), the same for every protocol.

import type { UpstreamError } from "../engine/errors.ts";

/** One open connection (a TCP or TLS socket, an HTTP/2 session, a QUIC connection). */
export interface PoolConnection {
  /**
   * Sends one query (the driver's prepared bytes, see PoolDriver.prepare)
   * and resolves with the answer under the caller's ID, as bytes the caller
   * owns. Rejects with an UpstreamError: `read` or `send` when the
   * connection died under the query (the core may retry it elsewhere),
   * `aborted` once `signal` aborts.
   */
  exchange(prepared: Uint8Array, original: Uint8Array, signal: AbortSignal): Promise<Uint8Array>;
  /**
   * Ends the connection: `graceful` for an idle close (let the peer see an
   * orderly goodbye), otherwise at once. Exchanges still on it reject.
   * Safe to call more than once.
   */
  close(graceful: boolean): void;
  /** The connection resumed an earlier TLS session. */
  readonly resumed: boolean;
}

export interface OpenContext {
  /** Aborts when the pool closes while the connection is still opening. */
  readonly signal: AbortSignal;
  /**
   * The driver calls this once an open connection is gone (closed by the
   * peer, reset, a protocol error): the pool stops giving it queries and
   * opens another when needed.
   */
  lost(error: UpstreamError): void;
  /**
   * The driver calls this when the connection takes no new queries but
   * finishes the ones it has (an HTTP/3 GOAWAY): the pool opens another for
   * new queries, keeps counting this one (open, in flight) and closes it
   * gracefully once its last query settles, or when the pool closes. The
   * driver still calls `lost` once it is gone.
   */
  goingAway(): void;
}

export interface PoolDriver {
  /**
   * Opens one connection; resolves once it can carry queries, or rejects
   * with an UpstreamError (`connect` or `tls`) within the driver's own
   * connect and handshake budgets.
   */
  open(context: OpenContext): Promise<PoolConnection>;
  /** The bytes to put on the wire for a query, made once per query (padding, framing). */
  prepare?(message: Uint8Array): Uint8Array;
  /**
   * A failure the server cannot have acted on (an HTTP/3 request it
   * rejected): retried like a query whose connection died, within
   * `maxRetries`, even though the connection lives on.
   */
  retryable?(error: UpstreamError): boolean;
}
