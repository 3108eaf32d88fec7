// Opening an HTTP/2 connection for DoH: TLS with ALPN h2, and the client's
// first bytes (the connection preface, our SETTINGS, and a larger
// connection receive window).

import { isIP } from "node:net";
import { type ConnectionOptions, connect, type TLSSocket } from "node:tls";
import type { DohSessionOptions } from "./doh-session.ts";
import { FRAME, frame, PREFACE, SETTING, uint32 } from "./frames.ts";

/** The initial flow-control window of both a connection and a stream (RFC 9113 §6.9.2). */
export const DEFAULT_WINDOW = 65_535;

export function connectH2Tls(options: DohSessionOptions): TLSSocket {
  const tls: ConnectionOptions = {
    host: options.host,
    port: options.port,
    ALPNProtocols: ["h2"],
    minVersion: "TLSv1.2",
  };
  const servername = options.tls?.servername ?? (isIP(options.host) ? undefined : options.host);
  if (servername) tls.servername = servername;
  if (options.tls?.ca) tls.ca = options.tls.ca;
  if (options.tls?.cert) tls.cert = options.tls.cert;
  if (options.tls?.key) tls.key = options.tls.key;
  if (options.lookup) tls.lookup = options.lookup;
  if (options.tlsSession) tls.session = options.tlsSession;
  const socket = connect(tls);
  socket.setNoDelay(true);
  if (options.onTlsSession) socket.on("session", options.onTlsSession);
  return socket;
}

/** Preface, SETTINGS (no push; `streamWindow` per stream), and WINDOW_UPDATE up to `connectionWindow`. */
export function clientPreface(streamWindow: number, connectionWindow: number): Buffer {
  const settings = Buffer.alloc(12);
  settings.writeUInt16BE(SETTING.ENABLE_PUSH, 0);
  settings.writeUInt32BE(0, 2);
  settings.writeUInt16BE(SETTING.INITIAL_WINDOW_SIZE, 6);
  settings.writeUInt32BE(streamWindow, 8);
  return Buffer.concat([
    PREFACE,
    frame(FRAME.SETTINGS, 0, 0, settings),
    frame(FRAME.WINDOW_UPDATE, 0, 0, uint32(connectionWindow - DEFAULT_WINDOW)),
  ]);
}
