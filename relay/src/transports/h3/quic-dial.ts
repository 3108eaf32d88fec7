// Opens one client QUIC connection on quiche (quiche-link.ts) for HTTP/3:
// a connected UDP socket, the handshake bounded by a timeout, the server's
// certificate checked (an IP-literal servername against `roots` here, since
// quiche's check matches DNS names only), a resumed TLS session when a
// ticket is given. After the handshake, stream events go to `handlers`.

import { randomBytes } from "node:crypto";
import type { LookupFunction } from "node:net";
import { UpstreamError } from "../../../../shared/engine/errors.ts";
import { verifyChainForIp } from "../doq-certs.ts";
import {
  isCryptoError,
  type Quiche,
  type QuicheConfig,
  type QuicheConnection,
  QuicheLink,
} from "../quiche-link.ts";
import { connectUdpSocket } from "../udp.ts";
import { H3_ERROR } from "./frames.ts";

export interface QuicDialOptions {
  name: string;
  host: string;
  port: number;
  servername: string;
  /** Check the certificate for an IP address here, against these roots. */
  ipRoots: readonly import("node:crypto").X509Certificate[] | undefined;
  quiche: Quiche;
  config: QuicheConfig;
  /** A TLS session ticket from an earlier connection. */
  ticket: Uint8Array | undefined;
  timeoutMs: number;
  lookup?: LookupFunction | undefined;
}

export interface DialedStreamHandlers {
  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void;
  onStreamReset(streamId: number, code: number): void;
  onReceived(): void;
  /** The connection is gone (by either side or idle timeout); fires once. */
  onClosed(why: UpstreamError): void;
}

export interface DialedConnection {
  link: QuicheLink;
  conn: QuicheConnection;
  /** Closes the UDP socket once the last packets are out; idempotent. */
  closeSocket(): void;
}

/** Who closed a connection and with what code, for error messages. */
function describeClose(conn: QuicheConnection): string {
  const peer = conn.peerError();
  const error = peer ?? conn.localError();
  if (!error) return "idle timeout";
  const kind = error.isApp ? "application" : "transport";
  return `${peer ? "by the server" : "here"}, ${kind} error 0x${error.errorCode.toString(16)}`;
}

/** A connected UDP socket and the QUIC connection on it, before any packet is sent. */
async function openConnection(options: QuicDialOptions) {
  const { name, quiche } = options;
  const { socket, ready } = connectUdpSocket(options.host, options.port, options.lookup);
  try {
    await ready;
  } catch (error) {
    socket.close();
    throw new UpstreamError("connect", name, `${name}: ${String(error)}`, { cause: error });
  }
  const local = { host: socket.address().address, port: socket.address().port };
  const remote = { host: socket.remoteAddress().address, port: options.port };
  let socketClosed = false;
  const closeSocket = () => {
    if (socketClosed) return;
    socketClosed = true;
    // After the CONNECTION_CLOSE already handed to the socket has gone out.
    setImmediate(() => socket.close());
  };
  const conn = quiche.Connection.connect(
    options.ipRoots ? null : options.servername,
    randomBytes(quiche.MAX_CONN_ID_LEN),
    local,
    remote,
    options.config,
  );
  if (options.ticket) {
    try {
      conn.setSession(options.ticket);
    } catch {
      // A stale ticket: a full handshake instead.
    }
  }
  return { socket, local, conn, closeSocket };
}

/** `handlersFor` is called once, with the link, before any packet is read. */
export async function dialQuic(
  options: QuicDialOptions,
  handlersFor: (link: QuicheLink) => DialedStreamHandlers,
): Promise<DialedConnection> {
  const { name, quiche } = options;
  const { socket, local, conn, closeSocket } = await openConnection(options);
  let settle: (error?: UpstreamError) => void = () => {};
  const handshake = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  let established = false;
  let handlers: DialedStreamHandlers | undefined;
  const link = new QuicheLink(conn, local, quiche.MAX_DATAGRAM_SIZE, (p) => socket.send(p), {
    onEstablished() {
      const chain = conn.peerCertChain() ?? [];
      if (options.ipRoots && !verifyChainForIp(chain, options.ipRoots, options.servername)) {
        // 42: bad_certificate, as a TLS alert inside QUIC (RFC 9001 §4.8).
        conn.close(false, quiche.CRYPTO_ERROR_START + 42, new Uint8Array(0));
        settle(
          new UpstreamError(
            "tls",
            name,
            `${name}: certificate does not name ${options.servername}`,
          ),
        );
        return;
      }
      established = true;
      settle();
    },
    onStreamData: (id, data, fin) => established && handlers?.onStreamData(id, data, fin),
    onStreamReset: (id, code) => established && handlers?.onStreamReset(id, code),
    onReceived: () => established && handlers?.onReceived(),
    onClosed() {
      const tls =
        isCryptoError(quiche, conn.localError()) || isCryptoError(quiche, conn.peerError());
      const why = `${name}: QUIC connection closed (${describeClose(conn)})`;
      closeSocket();
      if (established) handlers?.onClosed(new UpstreamError("read", name, why));
      else settle(new UpstreamError(tls ? "tls" : "connect", name, why));
    },
  });
  handlers = handlersFor(link);
  socket.on("message", (packet, from) =>
    link.receive(packet, { host: from.address, port: from.port }),
  );
  socket.on("error", (error) => {
    const why = new UpstreamError(
      established ? "read" : "connect",
      name,
      `${name}: ${error.message}`,
      {
        cause: error,
      },
    );
    if (!established) settle(why);
    link.close(H3_ERROR.internalError);
  });
  link.flush();
  // QUIC has no connect apart from the handshake: a stall in either is `connect`.
  const timer = setTimeout(() => {
    settle(
      new UpstreamError(
        "connect",
        name,
        `${name}: no QUIC handshake within ${options.timeoutMs} ms`,
      ),
    );
  }, options.timeoutMs);
  try {
    await handshake;
  } catch (error) {
    link.close(H3_ERROR.noError);
    closeSocket();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (link.isEnded) throw new UpstreamError("connect", name, `${name}: QUIC connection closed`);
  return { link, conn, closeSocket };
}
