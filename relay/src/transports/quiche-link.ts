// One QUIC connection driven straight on quiche, the native binding inside
// @matrixai/quic: datagrams in, datagrams out, one timer, stream bytes handed
// to the owner. The library's own client spends about 2 ms of CPU per query
// on events, locks and error objects built per call (profiled); the DoQ
// upstream on this driver spends 0.07–0.26 ms (bench/doq.ts). Used by the DoQ
// and DoH3 upstreams (both opened by quic-dial.ts) and the test DoQ server.

import { Buffer } from "node:buffer";
import { performance } from "node:perf_hooks";
import type * as Native from "@matrixai/quic/dist/native/index.js";
import { copyBytes } from "../../../shared/dns/bytes.ts";

export type Quiche = typeof Native.quiche;
export type QuicheConfig = Native.Config;
export type QuicheConnection = Native.Connection;
export type HostPort = Native.Host;

let loading: Promise<Quiche> | undefined;

/**
 * The native addon loads on first use, not at startup: a relay without
 * quic:// upstreams never loads it. Node's ESM loader may hand the CommonJS
 * exports over wrapped in `default`.
 */
export function loadQuiche(): Promise<Quiche> {
  loading ??= import("@matrixai/quic/dist/native/index.js").then((module) => {
    const exports = module as typeof Native & { default?: typeof Native };
    return exports.quiche ?? (exports.default as typeof Native).quiche;
  });
  return loading;
}

/** BoringSSL's signature algorithms that quiche accepts (it lacks the rsa_pss_pss_* and ed448). */
const SIGALGS = [
  "ecdsa_secp256r1_sha256",
  "ecdsa_secp384r1_sha384",
  "ecdsa_secp521r1_sha512",
  "ed25519",
  "rsa_pss_rsae_sha256",
  "rsa_pss_rsae_sha384",
  "rsa_pss_rsae_sha512",
  "rsa_pkcs1_sha256",
  "rsa_pkcs1_sha384",
  "rsa_pkcs1_sha512",
].join(":");

export interface QuicheConfigOptions {
  /** Check the peer's certificate against `ca`. */
  verifyPeer: boolean;
  /** Complete the handshake even if that check fails (the caller checks the chain itself). */
  verifyAllowFail?: boolean;
  /** Trusted CAs, PEM. */
  ca?: string | undefined;
  /** Own certificate chain and key, PEM. */
  cert?: string | undefined;
  key?: string | undefined;
  alpn: string[];
  /** ms; 0 keeps the connection until closed. */
  maxIdleTimeoutMs: number;
  /** Streams the peer may open towards us at once. */
  peerBidiStreams: number;
  /** Unidirectional streams the peer may open (HTTP/3 control and QPACK streams); default 0. */
  peerUniStreams?: number;
}

export function buildQuicheConfig(quiche: Quiche, options: QuicheConfigOptions): QuicheConfig {
  const encode = (pem: string) => new TextEncoder().encode(pem);
  const config = quiche.Config.withBoringSslCtx(
    options.verifyPeer,
    options.verifyAllowFail ?? false,
    options.ca ? encode(options.ca) : null,
    options.key ? [encode(options.key)] : null,
    options.cert ? [encode(options.cert)] : null,
    SIGALGS,
  );
  config.setApplicationProtos(options.alpn);
  config.setMaxIdleTimeout(options.maxIdleTimeoutMs);
  config.setMaxRecvUdpPayloadSize(quiche.MAX_DATAGRAM_SIZE);
  config.setMaxSendUdpPayloadSize(quiche.MAX_DATAGRAM_SIZE);
  config.setInitialMaxData(4 * 1024 * 1024);
  config.setInitialMaxStreamDataBidiLocal(256 * 1024);
  config.setInitialMaxStreamDataBidiRemote(256 * 1024);
  const peerUni = options.peerUniStreams ?? 0;
  config.setInitialMaxStreamDataUni(peerUni > 0 ? 64 * 1024 : 0);
  config.setInitialMaxStreamsBidi(options.peerBidiStreams);
  config.setInitialMaxStreamsUni(peerUni);
  config.setDisableActiveMigration(true);
  return config;
}

export interface LinkHandlers {
  /** Bytes that arrived on a stream (a copy), and whether the peer's FIN came with them. */
  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void;
  /** The peer reset the stream (RESET_STREAM) with this application error code. */
  onStreamReset(streamId: number, code: number): void;
  /** After every batch of incoming packets: stream credit may have grown. */
  onReceived?(): void;
  onEstablished?(): void;
  /** The connection is draining or closed, by either side or by idle timeout. Fires once. */
  onClosed(): void;
}

const STREAM_RESET = /StreamReset\((\d+)\)/;

/** Stream bytes are read into this one buffer, then copied out for the handlers. */
const scratch = new Uint8Array(4096);

export class QuicheLink {
  readonly conn: QuicheConnection;
  private readonly local: HostPort;
  private readonly sendPacket: (packet: Uint8Array, to: HostPort) => void;
  private readonly handlers: LinkHandlers;
  private readonly maxPacket: number;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private flushQueued = false;
  private received = false;
  private established = false;
  private ended = false;
  /** Stream writes that flow control cut short, resumed as credit arrives. */
  private readonly unsent = new Map<number, { data: Uint8Array; fin: boolean }>();

  constructor(
    conn: QuicheConnection,
    local: HostPort,
    maxPacket: number,
    sendPacket: (packet: Uint8Array, to: HostPort) => void,
    handlers: LinkHandlers,
  ) {
    this.conn = conn;
    this.local = local;
    this.maxPacket = maxPacket;
    this.sendPacket = sendPacket;
    this.handlers = handlers;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * Takes one datagram. Streams are read and the reply packets (ACKs riding
   * on answers) sent once per event-loop turn, for all datagrams of the turn.
   */
  receive(packet: Uint8Array, from: HostPort): void {
    if (this.ended) return;
    try {
      this.conn.recv(packet, { to: this.local, from });
    } catch {
      // A packet quiche refuses; a fatal one (a TLS failure) shows as closed on flush.
    }
    this.received = true;
    this.scheduleFlush();
  }

  /**
   * Queues bytes on a stream (FIN after them when `fin`); sent by the next
   * flush. Throws for a stream the peer stopped or quiche has retired.
   */
  write(streamId: number, data: Uint8Array, fin: boolean): void {
    const written = this.conn.streamSend(streamId, data, fin) ?? 0;
    if (written < data.length) {
      // Out of flow-control credit, or gone: streamCapacity throws for the latter.
      this.conn.streamCapacity(streamId);
      this.unsent.set(streamId, { data: data.subarray(written), fin });
    }
    this.scheduleFlush();
  }

  /** Abandons a stream both ways with an application error code (RFC 9000 §19.4, §19.5). */
  cancelStream(streamId: number, code: number): void {
    this.unsent.delete(streamId);
    for (const direction of [0, 1]) {
      try {
        this.conn.streamShutdown(streamId, direction, code);
      } catch {
        // Already finished that way.
      }
    }
    this.scheduleFlush();
  }

  /** Sends CONNECTION_CLOSE with an application error code. */
  close(code: number): void {
    if (this.ended) return;
    try {
      this.conn.close(true, code, new Uint8Array(0));
    } catch {
      // Already closing.
    }
    // Straight out: nothing received but unread matters any more.
    this.received = false;
    this.flush();
    this.end();
  }

  /** One flush per event-loop turn however many streams were written in it: they share packets. */
  scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  flush(): void {
    if (this.ended) return;
    if (this.received) {
      this.received = false;
      if (!this.established && this.conn.isEstablished()) {
        this.established = true;
        this.handlers.onEstablished?.();
      }
      const delivered = this.readStreams();
      this.handlers.onReceived?.();
      if (this.ended) return;
      // Send on the next turn: queries the answers set off go out with the ACKs.
      if (delivered) {
        this.scheduleFlush();
        return;
      }
    }
    if (this.unsent.size > 0) this.resumeWrites();
    for (;;) {
      const packet = Buffer.allocUnsafe(this.maxPacket);
      let sent: ReturnType<QuicheConnection["send"]>;
      try {
        sent = this.conn.send(packet);
      } catch {
        break;
      }
      if (sent === null) break;
      try {
        this.sendPacket(packet.subarray(0, sent[0]), sent[1].to);
      } catch {
        // The socket is closed: the connection is going away with it.
        break;
      }
    }
    if (this.conn.isClosed() || this.conn.isDraining()) {
      this.end();
      return;
    }
    this.armTimer();
  }

  private resumeWrites() {
    for (const [streamId, pending] of this.unsent) {
      let written = 0;
      try {
        written = this.conn.streamSend(streamId, pending.data, pending.fin) ?? 0;
        if (written === 0) this.conn.streamCapacity(streamId);
      } catch {
        this.unsent.delete(streamId);
        continue;
      }
      if (written === pending.data.length) this.unsent.delete(streamId);
      else pending.data = pending.data.subarray(written);
    }
  }

  /** Whether any stream bytes were handed over. */
  private readStreams(): boolean {
    let delivered = false;
    // readable() costs ~40 µs a call in the binding; isReadable() ~1 µs.
    if (!this.conn.isReadable()) return false;
    for (const streamId of this.conn.readable()) {
      for (;;) {
        let result: [number, boolean] | null;
        try {
          result = this.conn.streamRecv(streamId, scratch);
        } catch (error) {
          const reset = STREAM_RESET.exec(String((error as Error)?.message));
          if (reset) this.handlers.onStreamReset(streamId, Number(reset[1]));
          break;
        }
        if (result === null) break;
        const [length, fin] = result;
        delivered = true;
        this.handlers.onStreamData(streamId, copyBytes(scratch.subarray(0, length)), fin);
        if (fin) break;
      }
    }
    return delivered;
  }

  private armTimer() {
    const delay = this.conn.timeout();
    if (delay === null) {
      clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    // quiche's clock can run a hair ahead of Node's: one extra ms.
    const at = performance.now() + delay + 1;
    if (this.timer && Math.abs(at - this.timerAt) < 1) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.ended) return;
      this.conn.onTimeout();
      this.flush();
    }, delay + 1);
  }

  private end() {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.unsent.clear();
    this.handlers.onClosed();
  }
}

/** The TLS alert codes QUIC carries as transport errors 0x100–0x1ff (RFC 9001 §4.8). */
export function isCryptoError(quiche: Quiche, error: Native.ConnectionError | null): boolean {
  return (
    error !== null &&
    !error.isApp &&
    error.errorCode >= quiche.CRYPTO_ERROR_START &&
    error.errorCode <= quiche.CRYPTO_ERROR_STOP
  );
}
