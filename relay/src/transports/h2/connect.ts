// Opening an HTTP/2 connection for DoH: TLS with ALPN h2 (the upstream's
// TLS settings through tls-options.ts, as DoT), and the client's first
// bytes (the connection preface, our SETTINGS, and a larger connection
// receive window).

import { Buffer } from "node:buffer";
import { connect, type TLSSocket } from "node:tls";
import type { Clock } from "../../../../shared/engine/clock.ts";
import { UpstreamError } from "../../../../shared/engine/errors.ts";
import type { Opening } from "../../../../shared/pool/opening.ts";
import type { LookupFunction } from "../bootstrap.ts";
import { openErrorCode, type TlsSettings, tlsConnectOptions } from "../tls-options.ts";
import { FRAME, frame, PREFACE, SETTING, uint32 } from "./frames.ts";

/** The initial flow-control window of both a connection and a stream (RFC 9113 §6.9.2). */
export const DEFAULT_WINDOW = 65_535;

export interface H2SessionOptions {
  /** The upstream's name, for errors. */
  name: string;
  host: string;
  port: number;
  /** Sent as :authority, e.g. "dns.example" or "dns.example:8443". */
  authority: string;
  tls?: TlsSettings | undefined;
  /** Connect, TLS handshake and the server's first SETTINGS, ms. */
  connectTimeoutMs: number;
  lookup?: LookupFunction | undefined;
  /** A TLS session ticket to resume. */
  tlsSession?: Buffer | undefined;
  /** Called with each new TLS session ticket. */
  onTlsSession?: (ticket: Buffer) => void;
  clock: Clock;
  /** Aborts when the pool closes while the session is still opening. */
  signal: AbortSignal;
}

export function connectH2Tls(options: H2SessionOptions): TLSSocket {
  const socket = connect({
    ...tlsConnectOptions(options.host, options.port, options.tls ?? {}, {
      lookup: options.lookup,
      session: options.tlsSession,
    }),
    ALPNProtocols: ["h2"],
  });
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

/**
 * Watches `socket` open within `timeoutMs`: connect, then TLS with ALPN h2,
 * then our `preface` goes out and `link.connected` is set. Failures until
 * then finish `opening` as `connect` or `tls`; the session finishes it on
 * the server's first SETTINGS.
 */
export function watchOpening(
  socket: TLSSocket,
  opening: Opening,
  link: { connected: boolean },
  { name, timeoutMs, preface }: { name: string; timeoutMs: number; preface: Buffer },
): void {
  let stage: "connect" | "tls" | "h2" = "connect";
  opening.deadline(timeoutMs, () => {
    const message =
      stage === "h2" ? `${name}: no HTTP/2 SETTINGS from the server` : `${name}: connect timeout`;
    return new UpstreamError(stage === "tls" ? "tls" : "connect", name, message);
  });
  socket.once("connect", () => {
    stage = "tls";
  });
  socket.once("secureConnect", () => {
    stage = "h2";
    if (socket.alpnProtocol !== "h2") {
      const why = `${name}: the server did not offer HTTP/2 (ALPN h2)`;
      opening.finish(new UpstreamError("tls", name, why));
      return;
    }
    link.connected = true;
    socket.write(preface);
  });
  socket.on("error", (cause) => {
    if (link.connected) return;
    const code = openErrorCode(cause, stage === "tls");
    opening.finish(new UpstreamError(code, name, undefined, { cause }));
  });
  socket.once("close", () => {
    opening.finish(new UpstreamError("connect", name, `${name}: session closed`));
  });
}
