// DoH (RFC 8484) over persistent HTTP/2 sessions: the pool core
// (shared/pool/pool.ts) with the relay's own HTTP/2 client as its driver
// (h2/client-session.ts), many concurrent streams on each session, never a
// connection per query. The pool opens, idles out and replaces sessions,
// backs off and retries; the session does the framing, flow control and
// GOAWAY. A session that closes, errors or gets GOAWAY leaves the pool (its
// open streams may finish); streams GOAWAY left unprocessed fail as `read`
// and are retried on another. The driver is the seam: another HTTP/2 client
// plugs in through `createDohH2Upstream(options, driver)` (Node's http2
// module, h2/node-driver.ts, is the reference), built on
// shared/doh/doh-exchange.ts.

import type { Buffer } from "node:buffer";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { dohAnswer, dohRequest } from "../../../shared/doh/doh-exchange.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import { UpstreamError } from "../../../shared/engine/errors.ts";
import type { PoolConnection, PoolDriver } from "../../../shared/pool/driver.ts";
import { createPool, type Pool } from "../../../shared/pool/pool.ts";
import type { LookupFunction } from "./bootstrap.ts";
import { H2ClientSession } from "./h2/client-session.ts";
import { relayClock } from "./relay-clock.ts";
import type { TlsSettings } from "./tls-options.ts";

export interface DohH2UpstreamOptions {
  name: string;
  /** Origin, e.g. "https://dns.example:443". */
  origin: string;
  /** Path plus query, e.g. "/dns-query". */
  path: string;
  method: "POST" | "GET";
  poolSize: number;
  /** Streams per session before another session is opened (up to poolSize). */
  maxInFlight: number;
  /** Opening a session (TCP connect and TLS handshake), ms. */
  connectTimeoutMs: number;
  /** A session with no stream for this long is closed. */
  idleTimeoutMs: number;
  tls?: TlsSettings;
  maxBackoffMs?: number;
  /** Retries on a fresh session when a session dies mid-query (default 2). */
  maxRetries?: number;
  /** Host name resolution (the bootstrap servers); the system resolver otherwise. */
  lookup?: LookupFunction | undefined;
  clock?: Clock;
}

export type DohH2Upstream = Pool;

export function createDohH2Upstream(
  options: DohH2UpstreamOptions,
  driver: PoolDriver = createH2Driver(options),
): DohH2Upstream {
  return createPool(driver, {
    name: options.name,
    size: options.poolSize,
    maxInFlight: options.maxInFlight,
    idleTimeoutMs: options.idleTimeoutMs,
    maxRetries: options.maxRetries ?? 2,
    ...(options.maxBackoffMs !== undefined ? { maxBackoffMs: options.maxBackoffMs } : {}),
    clock: options.clock ?? relayClock,
  });
}

/** Sessions of the relay's own HTTP/2 client; TLS sessions resumed from the last ticket. */
export function createH2Driver(options: DohH2UpstreamOptions): PoolDriver {
  const { name, method, path } = options;
  const url = new URL(options.origin);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 443);
  let tlsSession: Buffer | undefined;
  return {
    prepare: padQuery,
    async open(context) {
      const session = new H2ClientSession({
        name,
        host,
        port,
        authority: url.host,
        tls: options.tls,
        connectTimeoutMs: options.connectTimeoutMs,
        lookup: options.lookup,
        tlsSession,
        onTlsSession: (ticket) => {
          tlsSession = ticket;
        },
        clock: options.clock ?? relayClock,
        signal: context.signal,
      });
      await session.ready;
      session.onGone(() => context.lost(new UpstreamError("read", name, `${name}: session gone`)));
      const connection: PoolConnection = {
        resumed: session.resumed,
        exchange: (wire, _message, signal) =>
          session
            .request(dohRequest(method, path, wire), signal)
            .then((response) => dohAnswer(name, response, method, wire)),
        close: (graceful) => session.close(graceful),
      };
      return connection;
    },
  };
}
