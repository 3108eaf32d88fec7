// DNS over QUIC (RFC 9250) on quiche (quiche-link.ts): the pool core
// (shared/pool/pool.ts) with a QUIC driver. One long-lived connection per
// upstream with ALPN "doq" carries every query (doq-connection.ts); more
// than `maxInFlight` at once are refused as `busy`. A connection that dies
// is replaced on the next query, resuming the TLS session from its ticket.
//
// Certificates: quiche checks the chain and the servername (also the SNI).
// An IP-literal servername is checked here (doq-certs.ts) against `ca`.

import { randomBytes } from "node:crypto";
import { isIP, type LookupFunction } from "node:net";
import { rootCertificates } from "node:tls";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { frameMessage } from "../../../shared/dns/framing.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import { UpstreamError } from "../../../shared/engine/errors.ts";
import type { OpenContext, PoolDriver } from "../../../shared/pool/driver.ts";
import { createOpening } from "../../../shared/pool/opening.ts";
import { createPool, type Pool } from "../../../shared/pool/pool.ts";
import { pemCertificates, verifyChainForIp } from "./doq-certs.ts";
import { createDoqConnection, DOQ_ERROR, type DoqConnection } from "./doq-connection.ts";
import {
  buildQuicheConfig,
  isCryptoError,
  loadQuiche,
  type Quiche,
  type QuicheConfig,
  QuicheLink,
} from "./quiche-link.ts";
import { relayClock } from "./relay-clock.ts";
import type { TlsSettings } from "./tls-options.ts";
import { connectUdpSocket } from "./udp.ts";

export { DOQ_ERROR, type DoqErrorCode } from "./doq-connection.ts";

/** TLS as for DoT, except that servername defaults to the host even when it is an IP address. */
export interface DoqUpstreamOptions extends TlsSettings {
  name: string;
  /** Address (or host name) to send to. */
  host: string;
  port: number;
  /** QUIC has no separate connect: this plus handshakeTimeoutMs bounds opening a connection. */
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** The connection closes after this long without traffic (also QUIC's max_idle_timeout). */
  idleTimeoutMs: number;
  /** Retries on a fresh connection when one dies under a query. */
  maxRetries: number;
  /** Queries (streams) in flight at once; more are refused as `busy`. */
  maxInFlight: number;
  /** Resolves a host name (the relay's bootstrap servers); default: the system resolver. */
  lookup?: LookupFunction | undefined;
  clock?: Clock;
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

export function createDoqUpstream(options: DoqUpstreamOptions): Pool {
  const clock = options.clock ?? relayClock;
  return createPool(createDoqDriver({ ...options, clock }), {
    name: options.name,
    size: 1,
    maxInFlight: options.maxInFlight,
    whenFull: "busy",
    idleTimeoutMs: options.idleTimeoutMs,
    maxRetries: options.maxRetries,
    clock,
  });
}

/** Opens QUIC connections with ALPN "doq", each resuming the last one's TLS session. */
export function createDoqDriver(options: DoqUpstreamOptions & { clock: Clock }): PoolDriver {
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
      alpn: ["doq"],
      maxIdleTimeoutMs: options.idleTimeoutMs,
      // The server opens no streams to us (RFC 9250 §4.2).
      peerBidiStreams: 0,
    });
    return config;
  };

  return {
    prepare: (message) => frameMessage(padQuery(message), 0),
    async open(context) {
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
          ticket = undefined;
        }
      }
      const verify = (chain: Uint8Array[] | null) =>
        !checkIpHere || verifyChainForIp(chain ?? [], roots, servername);
      return handshake({ quiche, conn, socket, options, context, verify }, (next) => {
        ticket = next ?? ticket;
      });
    },
  };
}

interface HandshakeParts {
  quiche: Quiche;
  conn: QuicheLink["conn"];
  socket: ReturnType<typeof connectUdpSocket>["socket"];
  options: DoqUpstreamOptions & { clock: Clock };
  context: OpenContext;
  /** The certificate check quiche cannot make (an IP servername). */
  verify(chain: Uint8Array[] | null): boolean;
}

/** Runs the QUIC handshake within connect + handshake timeouts; the connection once done. */
async function handshake(
  parts: HandshakeParts,
  keepTicket: (ticket: Uint8Array | null) => void,
): Promise<DoqConnection> {
  const { quiche, conn, socket, options, context } = parts;
  const { name, clock } = options;
  let socketClosed = false;
  const closeSocket = () => {
    if (socketClosed) return;
    socketClosed = true;
    // After the CONNECTION_CLOSE already handed to the socket has gone out.
    setImmediate(() => socket.close());
  };
  const opening = createOpening(name, clock, context.signal);
  const settle = (error?: UpstreamError) => opening.finish(error);
  const limit = options.connectTimeoutMs + options.handshakeTimeoutMs;
  // QUIC has no connect apart from the handshake: a stall in either is `connect`.
  opening.deadline(limit, () => {
    return new UpstreamError("connect", name, `${name}: no QUIC handshake within ${limit} ms`);
  });
  let established: DoqConnection | undefined;
  const local = socket.address();
  const link = new QuicheLink(
    conn,
    { host: local.address, port: local.port },
    quiche.MAX_DATAGRAM_SIZE,
    (packet) => socket.send(packet),
    {
      onEstablished() {
        if (parts.verify(conn.peerCertChain())) return settle();
        // 42: bad_certificate, as a TLS alert inside QUIC (RFC 9001 §4.8).
        conn.close(false, quiche.CRYPTO_ERROR_START + 42, new Uint8Array(0));
        const servername = options.servername ?? options.host;
        settle(new UpstreamError("tls", name, `${name}: certificate does not name ${servername}`));
      },
      onStreamData: (streamId, data, fin) => established?.onStreamData(streamId, data, fin),
      onStreamReset: (streamId, code) => established?.onStreamReset(streamId, code),
      onReceived: () => established?.onReceived(),
      onClosed() {
        const peer = conn.peerError();
        const local = conn.localError();
        const why = `${name}: QUIC connection closed (${describeClose(peer, local)})`;
        if (established) return established.drop(new UpstreamError("read", name, why));
        closeSocket();
        const tls = isCryptoError(quiche, local) || isCryptoError(quiche, peer);
        settle(new UpstreamError(tls ? "tls" : "connect", name, why));
      },
    },
  );
  socket.on("message", (packet, from) => {
    link.receive(packet, { host: from.address, port: from.port });
  });
  socket.on("error", (error) => {
    const failure = (code: "read" | "connect") =>
      new UpstreamError(code, name, `${name}: ${error.message}`, { cause: error });
    if (established) established.drop(failure("read"));
    else settle(failure("connect"));
  });
  link.flush();
  try {
    await opening.done;
  } catch (error) {
    link.close(DOQ_ERROR.noError);
    closeSocket();
    throw error;
  }
  if (link.isEnded) throw new UpstreamError("connect", name, `${name}: QUIC connection closed`);
  const silenceMs = limit;
  established = createDoqConnection({
    name,
    link,
    clock,
    context,
    silenceMs,
    closeSocket,
    keepTicket,
  });
  return established;
}
