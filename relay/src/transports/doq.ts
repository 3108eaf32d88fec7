// DNS over QUIC (RFC 9250) on quiche (quiche-link.ts): one long-lived
// connection per upstream with ALPN "doq", one bidirectional stream per
// query carrying a 2-byte length prefix, message ID 0 on the wire (the
// caller's restored on the answer). A connection that dies is replaced on
// the next query, resuming the TLS session from its ticket; a query caught on
// a dying connection is retried on a fresh one up to `maxRetries` times.
//
// Certificates: quiche checks the chain and the servername (also the SNI).
// An IP-literal servername is checked here with node:crypto against `ca`,
// since BoringSSL's name check in quiche matches DNS names only.

import { randomBytes, X509Certificate } from "node:crypto";
import { isIP, type LookupFunction } from "node:net";
import { rootCertificates } from "node:tls";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { createFrameReader, type FrameReader, frameMessage } from "../../../shared/dns/framing.ts";
import { readId, setId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import { unsendable } from "../../../shared/engine/upstream.ts";
import type { PooledUpstream, PoolStats } from "./pool-stats.ts";
import {
  buildQuicheConfig,
  isCryptoError,
  loadQuiche,
  type Quiche,
  type QuicheConfig,
  QuicheLink,
} from "./quiche-link.ts";
import { connectUdpSocket } from "./udp.ts";

export interface DoqUpstreamOptions {
  name: string;
  /** Address (or host name) to send to. */
  host: string;
  port: number;
  /** Name the certificate must carry and the SNI (default: host). */
  servername?: string | undefined;
  /** Trusted CAs, PEM (default: Node's bundled roots). */
  ca?: string | undefined;
  /** Client certificate and key, PEM. */
  cert?: string | undefined;
  key?: string | undefined;
  /** QUIC has no separate connect: this plus handshakeTimeoutMs bounds opening a connection. */
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** The connection closes after this long without traffic (QUIC max_idle_timeout). */
  idleTimeoutMs: number;
  /** Retries on a fresh connection when one dies under a query. */
  maxRetries: number;
  /** Queries (streams) in flight at once; more are refused as `busy`. */
  maxInFlight: number;
  /** Resolves a host name (the relay's bootstrap servers); default: the system resolver. */
  lookup?: LookupFunction | undefined;
}

/** RFC 9250 §4.3 error codes. */
export const DOQ_ERROR = {
  noError: 0x0,
  internalError: 0x1,
  protocolError: 0x2,
  requestCancelled: 0x3,
  excessiveLoad: 0x4,
  unspecifiedError: 0x5,
} as const;

export type DoqErrorCode = (typeof DOQ_ERROR)[keyof typeof DOQ_ERROR];

export function pemCertificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (block) => new X509Certificate(block),
  );
}

/** A DER chain checked against trusted roots and an IP address (what the library cannot do). */
export function verifyChainForIp(
  chain: readonly Uint8Array[],
  roots: readonly X509Certificate[],
  ip: string,
): boolean {
  try {
    const certs = chain.map((der) => new X509Certificate(der));
    const leaf = certs[0];
    if (!leaf?.checkIP(ip)) return false;
    const now = Date.now();
    let current = leaf;
    for (let depth = 0; depth <= certs.length; depth++) {
      if (now < Date.parse(current.validFrom) || now > Date.parse(current.validTo)) return false;
      const issuedBy = (c: X509Certificate) =>
        current.checkIssued(c) && current.verify(c.publicKey);
      if (roots.some(issuedBy)) return true;
      const next = certs.find((c) => c !== current && c.ca && issuedBy(c));
      if (!next) return false;
      current = next;
    }
    return false;
  } catch {
    return false;
  }
}

/** Who closed a connection and with what code, for error messages. */
function describeClose(
  peer: { isApp: boolean; errorCode: number } | null,
  local: { isApp: boolean; errorCode: number } | null,
): string {
  const error = peer ?? local;
  if (!error) return "idle timeout";
  const kind = error.isApp ? "application" : "transport";
  return `${peer ? "by the server" : "here"}, ${kind} error 0x${error.errorCode.toString(16)}`;
}

interface PendingAnswer {
  frames: FrameReader;
  resolve(answer: Uint8Array): void;
  reject(error: UpstreamError): void;
}

interface Session {
  link: QuicheLink;
  closeSocket(): void;
  /** Aborts when the connection is gone, failing the queries still on it. */
  dead: AbortController;
  queries: number;
  /** When an answer last arrived on this connection (performance.now()). */
  lastAnswerAt: number;
  /** Open streams by ID, and queries waiting for the peer to allow another. */
  streams: Map<number, PendingAnswer>;
  waiting: (() => void)[];
  nextStreamId: number;
}

export function createDoqUpstream(options: DoqUpstreamOptions): PooledUpstream {
  const { name, host, port } = options;
  const servername = options.servername ?? host;
  const checkIpHere = isIP(servername) !== 0;
  const ca = options.ca ?? rootCertificates.join("\n");
  const roots = checkIpHere ? pemCertificates(ca) : [];
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
  let config: QuicheConfig | undefined;
  /** The last connection's TLS session ticket, offered by the next one. */
  let ticket: Uint8Array | undefined;
  let connecting: Promise<Session> | undefined;
  let session: Session | undefined;
  let hadSession = false;
  let inFlight = 0;
  let closed = false;

  function configFor(quiche: Quiche): QuicheConfig {
    config ??= buildQuicheConfig(quiche, {
      verifyPeer: true,
      // An IP servername: the handshake completes and the chain is checked here.
      verifyAllowFail: checkIpHere,
      ca,
      cert: options.key ? options.cert : undefined,
      key: options.cert ? options.key : undefined,
      alpn: ["doq"],
      maxIdleTimeoutMs: options.idleTimeoutMs,
      // The server opens no streams to us (RFC 9250 §4.2).
      peerBidiStreams: 0,
    });
    return config;
  }

  /** Takes a connection out of use and closes it (once) with a DoQ error code. */
  function drop(which: Session, reason: unknown, errorCode: DoqErrorCode = DOQ_ERROR.noError) {
    if (session === which) session = undefined;
    if (which.dead.signal.aborted) return;
    which.dead.abort(reason);
    ticket = which.link.conn.session() ?? ticket;
    which.link.close(errorCode);
    for (const pending of which.streams.values()) {
      pending.reject(
        new UpstreamError("read", name, `${name}: QUIC connection closed`, { cause: reason }),
      );
    }
    which.streams.clear();
    for (const wake of which.waiting.splice(0)) wake();
    which.closeSocket();
  }

  /**
   * UDP gives no sign of a peer that restarted and forgot the connection: it
   * just stops answering until the idle timeout. A query given up on after a
   * whole connect + handshake allowance, with no answer on the connection
   * since it was sent, marks the connection dead so the next query opens a
   * fresh one. (Races cancel losers much sooner; slow answers still count.)
   */
  function silentSince(s: Session, sentAt: number): boolean {
    const now = performance.now();
    return (
      s.lastAnswerAt < sentAt &&
      now - sentAt >= options.connectTimeoutMs + options.handshakeTimeoutMs
    );
  }

  /** RFC 9250 §4.3: a peer that breaks the protocol loses the connection. */
  const protocolError = () => new UpstreamError("read", name, `${name}: DoQ protocol error`);

  async function open(): Promise<Session> {
    const quiche = await loadQuiche();
    const { socket, ready } = connectUdpSocket(host, port, options.lookup);
    try {
      await ready;
    } catch (error) {
      socket.close();
      throw new UpstreamError("connect", name, `${name}: ${String(error)}`, { cause: error });
    }
    const local = socket.address();
    const address = socket.remoteAddress().address;
    let socketClosed = false;
    const closeSocket = () => {
      if (socketClosed) return;
      socketClosed = true;
      // After the CONNECTION_CLOSE already handed to the socket has gone out.
      setImmediate(() => socket.close());
    };
    const conn = quiche.Connection.connect(
      checkIpHere ? null : servername,
      randomBytes(quiche.MAX_CONN_ID_LEN),
      { host: local.address, port: local.port },
      { host: address, port },
      configFor(quiche),
    );
    if (ticket) {
      try {
        conn.setSession(ticket);
      } catch {
        ticket = undefined;
      }
    }
    let settle: (error?: UpstreamError) => void = () => {};
    const handshake = new Promise<void>((resolve, reject) => {
      settle = (error) => (error ? reject(error) : resolve());
    });
    let s: Session | undefined;
    const link = new QuicheLink(
      conn,
      { host: local.address, port: local.port },
      quiche.MAX_DATAGRAM_SIZE,
      (packet) => socket.send(packet),
      {
        onEstablished() {
          if (checkIpHere && !verifyChainForIp(conn.peerCertChain() ?? [], roots, servername)) {
            // 42: bad_certificate, as a TLS alert inside QUIC (RFC 9001 §4.8).
            conn.close(false, quiche.CRYPTO_ERROR_START + 42, new Uint8Array(0));
            settle(
              new UpstreamError("tls", name, `${name}: certificate does not name ${servername}`),
            );
            return;
          }
          settle();
        },
        onStreamData(streamId, data, fin) {
          const pending = s?.streams.get(streamId);
          if (!pending || !s) return;
          s.lastAnswerAt = performance.now();
          const [answer] = pending.frames.push(data);
          if (answer) pending.resolve(answer);
          else if (fin)
            pending.reject(
              new UpstreamError("read", name, `${name}: stream ended before the answer`),
            );
        },
        onStreamReset(streamId, code) {
          s?.streams
            .get(streamId)
            ?.reject(
              new UpstreamError(
                "read",
                name,
                `${name}: the server reset the stream (code ${code})`,
              ),
            );
        },
        onReceived() {
          if (!s) return;
          let credit = conn.peerStreamsLeftBidi();
          while (credit-- > 0 && s.waiting.length > 0) s.waiting.shift()?.();
        },
        onClosed() {
          const peer = conn.peerError();
          const local = conn.localError();
          const tls = isCryptoError(quiche, local) || isCryptoError(quiche, peer);
          const why = `${name}: QUIC connection closed (${describeClose(peer, local)})`;
          if (s) drop(s, new UpstreamError("read", name, why));
          else {
            closeSocket();
            settle(new UpstreamError(tls ? "tls" : "connect", name, why));
          }
        },
      },
    );
    socket.on("message", (packet, from) => {
      link.receive(packet, { host: from.address, port: from.port });
    });
    socket.on("error", (error) => {
      if (s)
        drop(s, new UpstreamError("read", name, `${name}: ${error.message}`, { cause: error }));
      else
        settle(new UpstreamError("connect", name, `${name}: ${error.message}`, { cause: error }));
    });
    link.flush();
    const limit = options.connectTimeoutMs + options.handshakeTimeoutMs;
    // QUIC has no connect apart from the handshake: a stall in either is `connect`.
    const timer = setTimeout(() => {
      settle(new UpstreamError("connect", name, `${name}: no QUIC handshake within ${limit} ms`));
    }, limit);
    try {
      await handshake;
    } catch (error) {
      link.close(DOQ_ERROR.noError);
      closeSocket();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (link.isEnded) throw new UpstreamError("connect", name, `${name}: QUIC connection closed`);
    if (conn.isResumed()) stats.resumed++;
    s = {
      link,
      closeSocket,
      dead: new AbortController(),
      queries: 0,
      lastAnswerAt: performance.now(),
      streams: new Map(),
      waiting: [],
      nextStreamId: 0,
    };
    return s;
  }

  function connect(signal: AbortSignal): Promise<Session> {
    if (session) return Promise.resolve(session);
    if (!connecting) {
      stats.opened++;
      if (hadSession) stats.reconnects++;
      const pending = open().then(
        (s) => {
          if (connecting === pending) connecting = undefined;
          if (closed) {
            drop(s, new UpstreamError("closed", name));
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

  /** Resolves once the peer may have granted more streams (or the connection or caller gave up). */
  function moreStreams(s: Session, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", wake);
        resolve();
      };
      s.waiting.push(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  /** One query on one stream; rejects with an UpstreamError (`aborted` when the caller gave up). */
  async function exchange(
    s: Session,
    framed: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    // Waits while the peer's stream limit (its initial_max_streams_bidi, raised
    // as streams finish) is used up; no await between this check and the write.
    for (;;) {
      if (s.dead.signal.aborted)
        throw new UpstreamError("send", name, `${name}: QUIC connection closed`);
      if (signal.aborted) throw abortedBy(signal, name);
      if (s.link.conn.peerStreamsLeftBidi() > 0) break;
      await moreStreams(s, signal);
    }
    const streamId = s.nextStreamId;
    s.nextStreamId += 4;
    let onAbort: () => void = () => {};
    const answer = new Promise<Uint8Array>((resolve, reject) => {
      s.streams.set(streamId, { frames: createFrameReader(), resolve, reject });
      onAbort = () => {
        s.link.cancelStream(streamId, DOQ_ERROR.requestCancelled);
        reject(abortedBy(signal, name));
      };
    });
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      try {
        s.link.write(streamId, framed, true);
      } catch (error) {
        throw new UpstreamError("send", name, `${name}: cannot write a QUIC stream`, {
          cause: error,
        });
      }
      return await answer;
    } finally {
      signal.removeEventListener("abort", onAbort);
      s.streams.delete(streamId);
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
        throw new UpstreamError("busy", name, `${name}: ${inFlight} DoQ queries in flight`);
      }
      inFlight++;
      const framed = frameMessage(padQuery(message), 0);
      try {
        for (let attempt = 0; ; attempt++) {
          const s = await connect(signal);
          if (s.queries++ > 0) stats.reused++;
          else stats.fresh++;
          let answer: Uint8Array;
          const sentAt = performance.now();
          try {
            answer = await exchange(s, framed, signal);
          } catch (error) {
            if (signal.aborted) {
              if (silentSince(s, sentAt)) drop(s, abortedBy(signal, name));
              throw abortedBy(signal, name);
            }
            if (closed) throw new UpstreamError("closed", name);
            const failure = error instanceof UpstreamError ? error : undefined;
            const died = s.dead.signal.aborted || failure?.code === "send";
            if (died) drop(s, error);
            // Only a connection that died under the query is worth another try.
            if (died && attempt < options.maxRetries) continue;
            const cause = s.dead.signal.aborted ? s.dead.signal.reason : error;
            throw new UpstreamError(failure?.code ?? "read", name, failure?.message, { cause });
          }
          if (answer.length < 12) {
            drop(s, protocolError(), DOQ_ERROR.protocolError);
            throw new UpstreamError("malformed_answer", name, `${name}: short DoQ answer`);
          }
          if (readId(answer) !== 0) {
            drop(s, protocolError(), DOQ_ERROR.protocolError);
            throw new UpstreamError("id_mismatch", name, `${name}: DoQ answer with a non-zero ID`);
          }
          // The answer is ours alone (a plain copy of the stream's bytes): the caller's ID goes back in place.
          setId(answer, readId(message));
          return answer;
        }
      } finally {
        inFlight--;
      }
    },
    poolStats(): PoolStats {
      return { open: session ? 1 : 0, inFlight, ...stats };
    },
    async close() {
      closed = true;
      const s = session ?? (await connecting?.catch(() => undefined));
      if (s) drop(s, new UpstreamError("closed", name));
    },
  };
}
