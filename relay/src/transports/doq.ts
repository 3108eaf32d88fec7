// DNS over QUIC (RFC 9250) on quiche (quiche-link.ts): the pool core
// (shared/pool/pool.ts) with a QUIC driver. One long-lived connection per
// upstream with ALPN "doq" carries every query (doq-connection.ts); more
// than `maxInFlight` at once are refused as `busy`. A connection that dies
// is replaced on the next query, resuming the TLS session from its ticket.
//
// Certificates: quiche checks the chain and the servername (also the SNI).
// An IP-literal servername is checked here (doq-certs.ts) against `ca`.

import { padQuery } from "../../../shared/dns/edns-options.ts";
import { frameMessage } from "../../../shared/dns/framing.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import type { PoolDriver } from "../../../shared/pool/driver.ts";
import type { Pool } from "../../../shared/pool/pool.ts";
import { createDoqConnection, DOQ_ERROR } from "./doq-connection.ts";
import { createQuicDialer, createQuicPool, type QuicDialOptions } from "./quic-dial.ts";
import { relayClock } from "./relay-clock.ts";

export { DOQ_ERROR, type DoqErrorCode } from "./doq-connection.ts";

export interface DoqUpstreamOptions extends Omit<QuicDialOptions, "clock"> {
  /** The connection closes after this long without traffic (also QUIC's max_idle_timeout). */
  idleTimeoutMs: number;
  /** Retries on a fresh connection when one dies under a query. */
  maxRetries: number;
  /** Queries (streams) in flight at once; more are refused as `busy`. */
  maxInFlight: number;
  clock?: Clock;
}

export function createDoqUpstream(options: DoqUpstreamOptions): Pool {
  const clock = options.clock ?? relayClock;
  return createQuicPool(createDoqDriver({ ...options, clock }), options, clock);
}

/** Opens QUIC connections with ALPN "doq", each resuming the last one's TLS session. */
export function createDoqDriver(options: DoqUpstreamOptions & { clock: Clock }): PoolDriver {
  const dialer = createQuicDialer(options, { alpn: "doq", closeCode: DOQ_ERROR.noError });
  return {
    prepare: (message) => frameMessage(padQuery(message), 0),
    open: (context) =>
      dialer.dial(context.signal, (dialed) => createDoqConnection({ ...dialed, context })),
  };
}
