// DoH over HTTP/3 (RFC 8484 over RFC 9114) on quiche (quiche-link.ts), the
// link the DoQ upstream drives: one long-lived QUIC connection per upstream
// with ALPN "h3", one request stream per query, GET or POST, message ID 0 on
// the wire (the caller's restored on the answer). A GOAWAY takes the
// connection out of use: new queries open a fresh one, queries it had
// already accepted finish on it, and those past its stream ID are retried.
// A connection that dies under a query is replaced and the query retried up
// to `maxRetries` times. HTTP/3 only: no fallback to HTTP/2.

import { isIP, type LookupFunction } from "node:net";
import { rootCertificates } from "node:tls";
import { bracketHost, formatHostPort } from "../../../shared/config/ip.ts";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { readId, setId, withId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import { type PoolStats, unsendable } from "../../../shared/engine/upstream.ts";
import type { Pool } from "../../../shared/pool/pool.ts";
import { pemCertificates } from "./doq-certs.ts";
import { H3Connection, type H3Response, NOT_PROCESSED } from "./h3/connection.ts";
import { H3_ERROR } from "./h3/frames.ts";
import type { HeaderField } from "./h3/qpack.ts";
import { dialQuic } from "./h3/quic-dial.ts";
import { buildQuicheConfig, loadQuiche, type QuicheConfig } from "./quiche-link.ts";

export interface Doh3UpstreamOptions {
  name: string;
  /** Address (or host name) to send to. */
  host: string;
  port: number;
  /** :authority; default host[:port]. */
  authority?: string | undefined;
  /** Path plus query, e.g. "/dns-query". */
  path: string;
  method: "POST" | "GET";
  /** Name the certificate must carry and the SNI (default: host). */
  servername?: string | undefined;
  /** Trusted CAs, PEM (default: Node's bundled roots). */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** QUIC has no separate connect: this plus handshakeTimeoutMs bounds opening a connection. */
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** The connection closes after this long without traffic (QUIC max_idle_timeout). */
  idleTimeoutMs: number;
  /** Retries on a fresh connection when one dies or goes away under a query. */
  maxRetries: number;
  /** Queries in flight at once; more are refused as `busy`. */
  maxInFlight: number;
  lookup?: LookupFunction | undefined;
}

const DNS_MESSAGE = "application/dns-message";

interface Session {
  h3: H3Connection;
  queries: number;
}

export function createDoh3Upstream(options: Doh3UpstreamOptions): Pool {
  const { name, host, port } = options;
  const servername = options.servername ?? host;
  const ca = options.ca ?? rootCertificates.join("\n");
  const ipRoots = isIP(servername) ? pemCertificates(ca) : undefined;
  const authority =
    options.authority ?? (port === 443 ? bracketHost(host) : formatHostPort({ host, port }));
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
  let config: QuicheConfig | undefined;
  let ticket: Uint8Array | undefined;
  let connecting: Promise<Session> | undefined;
  let session: Session | undefined;
  /** Connections that got GOAWAY and still carry queries. */
  const draining = new Set<Session>();
  let hadSession = false;
  let inFlight = 0;
  let closed = false;

  function forget(s: Session) {
    if (session === s) session = undefined;
    draining.delete(s);
    ticket = s.h3.link.conn.session() ?? ticket;
  }

  async function open(): Promise<Session> {
    const quiche = await loadQuiche();
    config ??= buildQuicheConfig(quiche, {
      verifyPeer: true,
      // An IP servername: the handshake completes and the chain is checked in quic-dial.ts.
      verifyAllowFail: ipRoots !== undefined,
      ca,
      cert: options.key ? options.cert : undefined,
      key: options.cert ? options.key : undefined,
      alpn: ["h3"],
      maxIdleTimeoutMs: options.idleTimeoutMs,
      peerBidiStreams: 0,
      // The server's control stream and QPACK streams, and room for reserved ones.
      peerUniStreams: 8,
    });
    let s: Session | undefined;
    const dialed = await dialQuic(
      {
        name,
        host,
        port,
        servername,
        ipRoots,
        quiche,
        config,
        ticket,
        timeoutMs: options.connectTimeoutMs + options.handshakeTimeoutMs,
        lookup: options.lookup,
      },
      (link) => {
        const h3 = new H3Connection(name, link);
        s = { h3, queries: 0 };
        return {
          onStreamData: (id, data, fin) => h3.onStreamData(id, data, fin),
          onStreamReset: (id, code) => h3.onStreamReset(id, code),
          onReceived: () => h3.onReceived(),
          onClosed(why) {
            if (s) forget(s);
            h3.fail(why);
          },
        };
      },
    );
    if (!s) throw new UpstreamError("internal", name);
    const opened = s;
    if (dialed.conn.isResumed()) stats.resumed++;
    opened.h3.onGoaway = () => {
      if (session === opened) session = undefined;
      if (!opened.h3.dead.signal.aborted) draining.add(opened);
    };
    opened.h3.start();
    return opened;
  }

  function connect(signal: AbortSignal): Promise<Session> {
    if (session?.h3.usable) return Promise.resolve(session);
    if (!connecting) {
      stats.opened++;
      if (hadSession) stats.reconnects++;
      const pending = open().then(
        (s) => {
          if (connecting === pending) connecting = undefined;
          if (closed) {
            s.h3.close(H3_ERROR.noError, new UpstreamError("closed", name));
            throw new UpstreamError("closed", name);
          }
          session = s;
          hadSession = true;
          return s;
        },
        (error: unknown) => {
          if (connecting === pending) connecting = undefined;
          throw error;
        },
      );
      connecting = pending;
    }
    const pending = connecting;
    // One caller giving up must not cancel the connection the others wait for.
    return new Promise<Session>((resolve, reject) => {
      const onAbort = () => reject(abortedBy(signal, name));
      signal.addEventListener("abort", onAbort, { once: true });
      pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  function requestFields(wire: Uint8Array): { fields: HeaderField[]; body?: Uint8Array } {
    const common: HeaderField[] = [
      [":scheme", "https"],
      [":authority", authority],
    ];
    if (options.method === "GET") {
      const sep = options.path.includes("?") ? "&" : "?";
      const dns = Buffer.from(wire).toString("base64url");
      return {
        fields: [
          [":method", "GET"],
          ...common,
          [":path", `${options.path}${sep}dns=${dns}`],
          ["accept", DNS_MESSAGE],
        ],
      };
    }
    return {
      fields: [
        [":method", "POST"],
        ...common,
        [":path", options.path],
        ["accept", DNS_MESSAGE],
        ["content-type", DNS_MESSAGE],
        ["content-length", String(wire.length)],
      ],
      body: wire,
    };
  }

  /**
   * One request on `s`; undefined when the connection stopped taking requests
   * before this one went out (the caller picks another, at no retry's cost).
   */
  async function exchange(
    s: Session,
    wire: Uint8Array,
    signal: AbortSignal,
  ): Promise<H3Response | undefined> {
    // Waits while the server's stream limit is used up; no await between this check and the write.
    for (;;) {
      if (signal.aborted) throw abortedBy(signal, name);
      if (!s.h3.usable) return undefined;
      if (s.h3.streamCredit > 0) break;
      await s.h3.moreStreams(signal);
    }
    if (s.queries++ > 0) stats.reused++;
    else stats.fresh++;
    const { fields, body } = requestFields(wire);
    const sent = s.h3.request(fields, body);
    const onAbort = () => sent.cancel(abortedBy(signal, name));
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await sent.response;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** The answer in a response, under the caller's ID; throws an UpstreamError otherwise. */
  function answerOf(response: H3Response, id: number): Uint8Array {
    if (response.status < 200 || response.status > 299) {
      throw new UpstreamError("http_status", name, `${name}: HTTP ${response.status}`, {
        status: response.status,
      });
    }
    const type = response.fields.find(([field]) => field === "content-type")?.[1] ?? "";
    if (!type.toLowerCase().startsWith(DNS_MESSAGE)) {
      throw new UpstreamError("malformed_answer", name, `${name}: content-type ${type}`);
    }
    if (response.body.length < 12) {
      throw new UpstreamError("malformed_answer", name, `${name}: short DoH answer`);
    }
    // The body is fresh memory, ours alone: the caller's ID goes back in place.
    setId(response.body, id);
    return response.body;
  }

  /**
   * UDP gives no sign of a peer that forgot the connection: a query given up
   * on after a whole connect + handshake allowance with no answer since it was
   * sent retires the connection, so the next query opens a fresh one.
   */
  function silentSince(s: Session, sentAt: number): boolean {
    const now = performance.now();
    return (
      s.h3.lastAnswerAt < sentAt &&
      now - sentAt >= options.connectTimeoutMs + options.handshakeTimeoutMs
    );
  }

  async function attempts(message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    // ID 0 on the wire for both methods, so HTTP caches can share answers (RFC 8484 §4.1).
    const wire = withId(padQuery(message), 0);
    for (let attempt = 0; ; ) {
      const s = await connect(signal);
      const sentAt = performance.now();
      let response: H3Response | undefined;
      try {
        response = await exchange(s, wire, signal);
      } catch (error) {
        if (signal.aborted) {
          if (silentSince(s, sentAt)) {
            s.h3.close(H3_ERROR.noError, abortedBy(signal, name));
          }
          throw abortedBy(signal, name);
        }
        if (closed) throw new UpstreamError("closed", name);
        const failure = error instanceof UpstreamError ? error : undefined;
        // quiche refused the write: the connection is no use any more.
        if (failure?.code === "send") s.h3.close(H3_ERROR.internalError, failure);
        const retryable =
          s.h3.dead.signal.aborted || failure?.code === "send" || failure?.cause === NOT_PROCESSED;
        if (retryable && attempt++ < options.maxRetries) continue;
        throw new UpstreamError(failure?.code ?? "read", name, failure?.message, {
          cause: s.h3.dead.signal.reason ?? error,
        });
      }
      if (response) return answerOf(response, readId(message));
    }
  }

  return {
    name,
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      if (signal.aborted) throw abortedBy(signal, name);
      const bad = unsendable(message, name);
      if (bad) throw bad;
      if (inFlight >= options.maxInFlight) {
        throw new UpstreamError("busy", name, `${name}: ${inFlight} DoH3 queries in flight`);
      }
      inFlight++;
      try {
        return await attempts(message, signal);
      } finally {
        inFlight--;
      }
    },
    poolStats(): PoolStats {
      return { open: (session ? 1 : 0) + draining.size, inFlight, ...stats };
    },
    async close() {
      closed = true;
      const pending = await connecting?.catch(() => undefined);
      for (const s of new Set([session, pending, ...draining])) {
        s?.h3.close(H3_ERROR.noError, new UpstreamError("closed", name));
      }
    },
  };
}
