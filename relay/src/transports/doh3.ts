// DoH over HTTP/3 (RFC 8484 over RFC 9114): the pool core
// (shared/pool/pool.ts) with an HTTP/3 driver, as DoQ is with its own. One
// long-lived QUIC connection per upstream with ALPN "h3" (quic-dial.ts, the
// same dial as DoQ's) carries every query, one request stream each, GET or
// POST, message ID 0 on the wire (the caller's restored on the answer);
// more than `maxInFlight` at once are refused as `busy`. A GOAWAY takes the
// connection out of use (h3/doh3-connection.ts): new queries open a fresh
// one, queries it had accepted finish on it, and those past its stream ID,
// or rejected by the server, are retried within `maxRetries`, like queries
// on a connection that died. HTTP/3 only: no fallback to HTTP/2.

import { Buffer } from "node:buffer";
import { bracketHost, formatHostPort } from "../../../shared/config/ip.ts";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { withId } from "../../../shared/dns/wire.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import type { PoolDriver } from "../../../shared/pool/driver.ts";
import type { Pool } from "../../../shared/pool/pool.ts";
import { NOT_PROCESSED } from "./h3/connection.ts";
import { DNS_MESSAGE, Doh3Connection, type DohRequest } from "./h3/doh3-connection.ts";
import { H3_ERROR } from "./h3/frames.ts";
import { createQuicDialer, createQuicPool, type QuicDialOptions } from "./quic-dial.ts";
import { relayClock } from "./relay-clock.ts";

export interface Doh3UpstreamOptions extends Omit<QuicDialOptions, "clock"> {
  /** :authority; default host[:port]. */
  authority?: string | undefined;
  /** Path plus query, e.g. "/dns-query". */
  path: string;
  method: "POST" | "GET";
  /** The connection closes after this long without traffic (also QUIC's max_idle_timeout). */
  idleTimeoutMs: number;
  /** Retries on a fresh connection when one dies or goes away under a query. */
  maxRetries: number;
  /** Queries in flight at once; more are refused as `busy`. */
  maxInFlight: number;
  clock?: Clock;
}

export function createDoh3Upstream(options: Doh3UpstreamOptions): Pool {
  const clock = options.clock ?? relayClock;
  return createQuicPool(createDoh3Driver({ ...options, clock }), options, clock);
}

/** Opens QUIC connections with ALPN "h3", each resuming the last one's TLS session. */
export function createDoh3Driver(options: Doh3UpstreamOptions & { clock: Clock }): PoolDriver {
  const dialer = createQuicDialer(options, {
    alpn: "h3",
    // The server's control stream and QPACK streams, and room for reserved ones.
    peerUniStreams: 8,
    closeCode: H3_ERROR.noError,
  });
  const request = dohRequest(options);
  return {
    // ID 0 on the wire for both methods, so HTTP caches can share answers (RFC 8484 §4.1).
    prepare: (message) => withId(padQuery(message), 0),
    retryable: (error) => error.cause === NOT_PROCESSED,
    async open(context) {
      const connection = await dialer.dial(
        context.signal,
        (dialed) => new Doh3Connection({ ...dialed, context, request }),
      );
      connection.start();
      return connection;
    },
  };
}

/** The GET or POST request that carries a query's wire bytes. */
function dohRequest(options: Doh3UpstreamOptions): (wire: Uint8Array) => DohRequest {
  const { host, port, path } = options;
  const authority =
    options.authority ?? (port === 443 ? bracketHost(host) : formatHostPort({ host, port }));
  const common: [string, string][] = [
    [":scheme", "https"],
    [":authority", authority],
  ];
  if (options.method === "GET") {
    const sep = path.includes("?") ? "&" : "?";
    return (wire) => ({
      fields: [
        [":method", "GET"],
        ...common,
        [":path", `${path}${sep}dns=${Buffer.from(wire).toString("base64url")}`],
        ["accept", DNS_MESSAGE],
      ],
    });
  }
  return (wire) => ({
    fields: [
      [":method", "POST"],
      ...common,
      [":path", path],
      ["accept", DNS_MESSAGE],
      ["content-type", DNS_MESSAGE],
      ["content-length", String(wire.length)],
    ],
    body: wire,
  });
}
