// Opening one client QUIC connection on quiche (quiche-link.ts), the one way
// both QUIC drivers do it (doq.ts with ALPN "doq", doh3.ts with "h3"): a
// connected UDP socket, the handshake bounded by connect + handshake time on
// the pool's clock, the server's certificate checked (an IP-literal
// servername against `ca` here, since quiche's check matches DNS names
// only), the last connection's TLS session offered for resumption. Once the
// handshake is done, stream events go to the driver's connection.

import { randomBytes } from "node:crypto";
import { isIP, type LookupFunction } from "node:net";
import { rootCertificates } from "node:tls";
import type { Clock } from "../../../shared/engine/clock.ts";
import { UpstreamError } from "../../../shared/engine/errors.ts";
import type { PoolDriver } from "../../../shared/pool/driver.ts";
import { createOpening } from "../../../shared/pool/opening.ts";
import { createPool, type Pool } from "../../../shared/pool/pool.ts";
import { pemCertificates, verifyChainForIp } from "./doq-certs.ts";
import {
  buildQuicheConfig,
  isCryptoError,
  loadQuiche,
  type Quiche,
  type QuicheConfig,
  type QuicheConnection,
  QuicheLink,
} from "./quiche-link.ts";
import type { TlsSettings } from "./tls-options.ts";
import { connectUdpSocket } from "./udp.ts";

/** TLS as for DoT, except that servername defaults to the host even when it is an IP address. */
export interface QuicDialOptions extends TlsSettings {
  name: string;
  /** Address (or host name) to send to. */
  host: string;
  port: number;
  /** QUIC has no separate connect: this plus handshakeTimeoutMs bounds opening a connection. */
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** QUIC's max_idle_timeout, ms. */
  idleTimeoutMs: number;
  /** Resolves a host name (the relay's bootstrap servers); default: the system resolver. */
  lookup?: LookupFunction | undefined;
  clock: Clock;
}

/** What the protocol on top asks of the connection. */
export interface QuicProtocol {
  alpn: string;
  /** Unidirectional streams the server may open (HTTP/3 control and QPACK streams); default 0. */
  peerUniStreams?: number;
  /** The application error code to close with when opening fails or the socket errs. */
  closeCode: number;
}

/** A connection's stream events, handed over once the handshake is done. */
export interface QuicStreamHandlers {
  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void;
  onStreamReset(streamId: number, code: number): void;
  onReceived(): void;
  /** The connection is gone (either side, idle timeout, a socket error); fires once. */
  onClosed(why: UpstreamError): void;
}

/** What the driver's connection is made with, before any packet is read. */
export interface DialedLink {
  name: string;
  link: QuicheLink;
  clock: Clock;
  /**
   * A query given up on this long after it was sent (connect + handshake
   * time), with no answer on the connection since, marks it dead: UDP gives
   * no sign of a peer that restarted and forgot the connection.
   */
  silenceMs: number;
  /** Keeps the connection's TLS session ticket for the next one. */
  keepTicket(ticket: Uint8Array | null): void;
}

export interface QuicDialer {
  /**
   * Opens one connection; `handlersFor` makes its stream handlers (the
   * driver's connection). Rejects with `connect`,
   * `tls` or `closed` (`signal`: the pool closed).
   */
  dial<T extends QuicStreamHandlers>(
    signal: AbortSignal,
    handlersFor: (dialed: DialedLink) => T,
  ): Promise<T>;
}

/** The pool for a QUIC upstream: one connection carries every query, more than maxInFlight are `busy`. */
export function createQuicPool(
  driver: PoolDriver,
  options: { name: string; maxInFlight: number; idleTimeoutMs: number; maxRetries: number },
  clock: Clock,
): Pool {
  const { name, maxInFlight, idleTimeoutMs, maxRetries } = options;
  const size = 1;
  return createPool(driver, {
    name,
    size,
    maxInFlight,
    whenFull: "busy",
    idleTimeoutMs,
    maxRetries,
    clock,
  });
}

/** Who closed a connection and with what code, for error messages. */
function describeClose(conn: QuicheConnection): string {
  const peer = conn.peerError();
  const error = peer ?? conn.localError();
  if (!error) return "idle timeout";
  const kind = error.isApp ? "application" : "transport";
  return `${peer ? "by the server" : "here"}, ${kind} error 0x${error.errorCode.toString(16)}`;
}

export function createQuicDialer(options: QuicDialOptions, protocol: QuicProtocol): QuicDialer {
  const servername = options.servername ?? options.host;
  const checkIpHere = isIP(servername) !== 0;
  const ca = options.ca ?? rootCertificates.join("\n");
  const roots = checkIpHere ? pemCertificates(ca) : [];
  let config: QuicheConfig | undefined;
  /** The last connection's TLS session ticket, offered by the next one. */
  let ticket: Uint8Array | undefined;

  const configFor = (quiche: Quiche): QuicheConfig => {
    config ??= buildQuicheConfig(quiche, {
      verifyPeer: true,
      // An IP servername: the handshake completes and the chain is checked here.
      verifyAllowFail: checkIpHere,
      ca,
      cert: options.key ? options.cert : undefined,
      key: options.cert ? options.key : undefined,
      alpn: [protocol.alpn],
      maxIdleTimeoutMs: options.idleTimeoutMs,
      // Requests are ours: the server opens no bidirectional streams.
      peerBidiStreams: 0,
      peerUniStreams: protocol.peerUniStreams ?? 0,
    });
    return config;
  };

  const keepTicket = (next: Uint8Array | null) => {
    ticket = next ?? ticket;
  };
  return {
    async dial(signal, handlersFor) {
      const quiche = await loadQuiche();
      const { socket, ready } = connectUdpSocket(options.host, options.port, options.lookup);
      try {
        await ready;
      } catch (error) {
        socket.close();
        throw new UpstreamError("connect", options.name, `${options.name}: ${String(error)}`, {
          cause: error,
        });
      }
      const local = socket.address();
      const conn = quiche.Connection.connect(
        checkIpHere ? null : servername,
        randomBytes(quiche.MAX_CONN_ID_LEN),
        { host: local.address, port: local.port },
        { host: socket.remoteAddress().address, port: options.port },
        configFor(quiche),
      );
      if (ticket) {
        try {
          conn.setSession(ticket);
        } catch {
          ticket = undefined; // stale: a full handshake instead
        }
      }
      const verify = (chain: Uint8Array[] | null) =>
        !checkIpHere || verifyChainForIp(chain ?? [], roots, servername);
      const parts = { quiche, conn, socket, verify, servername, signal, keepTicket };
      return handshake({ ...parts, options, protocol }, handlersFor);
    },
  };
}

interface HandshakeParts {
  quiche: Quiche;
  conn: QuicheConnection;
  socket: ReturnType<typeof connectUdpSocket>["socket"];
  /** The certificate check quiche cannot make (an IP servername). */
  verify(chain: Uint8Array[] | null): boolean;
  servername: string;
  signal: AbortSignal;
  options: QuicDialOptions;
  protocol: QuicProtocol;
  keepTicket(ticket: Uint8Array | null): void;
}

/** Runs the QUIC handshake within connect + handshake timeouts; the connection's handlers once done. */
async function handshake<T extends QuicStreamHandlers>(
  parts: HandshakeParts,
  handlersFor: (dialed: DialedLink) => T,
): Promise<T> {
  const { quiche, conn, socket, options } = parts;
  const { name, clock } = options;
  let socketClosed = false;
  const closeSocket = () => {
    if (socketClosed) return;
    socketClosed = true;
    // After the CONNECTION_CLOSE already handed to the socket has gone out.
    setImmediate(() => socket.close());
  };
  const opening = createOpening(name, clock, parts.signal);
  const limit = options.connectTimeoutMs + options.handshakeTimeoutMs;
  // QUIC has no connect apart from the handshake: a stall in either is `connect`.
  opening.deadline(limit, () => {
    return new UpstreamError("connect", name, `${name}: no QUIC handshake within ${limit} ms`);
  });
  let established: T | undefined;
  let socketError: Error | undefined;
  const local = socket.address();
  const link = new QuicheLink(
    conn,
    { host: local.address, port: local.port },
    quiche.MAX_DATAGRAM_SIZE,
    (packet) => socket.send(packet),
    {
      onEstablished() {
        if (parts.verify(conn.peerCertChain())) {
          established = handlers;
          return opening.finish();
        }
        // 42: bad_certificate, as a TLS alert inside QUIC (RFC 9001 §4.8).
        conn.close(false, quiche.CRYPTO_ERROR_START + 42, new Uint8Array(0));
        const failure = `${name}: certificate does not name ${parts.servername}`;
        opening.finish(new UpstreamError("tls", name, failure));
      },
      onStreamData: (streamId, data, fin) => established?.onStreamData(streamId, data, fin),
      onStreamReset: (streamId, code) => established?.onStreamReset(streamId, code),
      onReceived: () => established?.onReceived(),
      onClosed() {
        closeSocket();
        const why = socketError
          ? `${name}: ${socketError.message}`
          : `${name}: QUIC connection closed (${describeClose(conn)})`;
        const cause = socketError ? { cause: socketError } : undefined;
        if (established) return established.onClosed(new UpstreamError("read", name, why, cause));
        const tls =
          isCryptoError(quiche, conn.localError()) || isCryptoError(quiche, conn.peerError());
        opening.finish(
          new UpstreamError(tls && !socketError ? "tls" : "connect", name, why, cause),
        );
      },
    },
  );
  const { keepTicket } = parts;
  const handlers = handlersFor({ name, link, clock, silenceMs: limit, keepTicket });
  socket.on("message", (packet, from) => {
    link.receive(packet, { host: from.address, port: from.port });
  });
  socket.on("error", (error) => {
    socketError = error;
    link.close(parts.protocol.closeCode);
  });
  link.flush();
  try {
    await opening.done;
  } catch (error) {
    link.close(parts.protocol.closeCode);
    closeSocket();
    throw error;
  }
  if (link.isEnded) throw new UpstreamError("connect", name, `${name}: QUIC connection closed`);
  return handlers;
}
