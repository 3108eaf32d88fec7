// A purpose-built HTTP/2 client session for DoH (RFC 8484 over RFC 9113):
// one TLS socket, requests as a fixed HPACK block plus one DATA frame, every
// frame of an event-loop turn in one socket write. It keeps the parts of
// HTTP/2 a client must: SETTINGS (the peer's concurrent-stream limit,
// initial window and frame size), flow control both ways (WINDOW_UPDATE),
// PING, RST_STREAM (REFUSED_STREAM ones are sent again on this session),
// GOAWAY (streams above the last id fail as `read` on a session that is
// gone, which the pool retries on another; the rest finish), CONTINUATION,
// padding, and a full HPACK decoder. The pool core (shared/pool/pool.ts,
// through ../doh-h2.ts) decides when sessions open, idle out and retry.
// Node's http2 module cost the relay ~2.7× the CPU per query of its DoT
// path (stream objects, events, nghttp2 round trips): bench/profiles.md.

import { Buffer } from "node:buffer";
import type { TLSSocket } from "node:tls";
import type { DohRequest, DohResponse } from "../../../../shared/doh/doh-exchange.ts";
import { abortedBy, UpstreamError } from "../../../../shared/engine/errors.ts";
import { createOpening, type Opening } from "../../../../shared/pool/opening.ts";
import { clientPreface, connectH2Tls, type H2SessionOptions, watchOpening } from "./connect.ts";
import {
  createFrameReader,
  DEFAULT_MAX_FRAME,
  FLAG,
  FRAME,
  frame,
  H2_ERROR,
  HEADER_SIZE,
  headerFrames,
  readUint32,
  requestFrames,
  SETTING,
  uint32,
  unpadded,
  writeFrameHeader,
} from "./frames.ts";
import { createHpackDecoder, HpackError } from "./hpack.ts";
import { createRequestEncoder } from "./request-block.ts";
import { newStream, type Stream, streamBody } from "./stream.ts";

/** Our per-stream receive window: an answer (≤ 65,535 bytes) plus padding never waits on us. */
const STREAM_WINDOW = 1 << 20;
/** Our connection receive window, topped up by WINDOW_UPDATE once half is used. */
const CONNECTION_WINDOW = 1 << 24;
const MAX_ANSWER = 65_535;
const MAX_STREAM_ID = 0x7fffffff;
const PREFACE = clientPreface(STREAM_WINDOW, CONNECTION_WINDOW);

export class H2ClientSession {
  /** Settles once the server's first SETTINGS arrived; rejects with `connect` or `tls` (`closed` when the pool closes first). */
  readonly ready: Promise<void>;
  private readonly name: string;
  private readonly socket: TLSSocket;
  private readonly opening: Opening;
  private readonly encode: (request: DohRequest) => Buffer;
  private readonly decoder = createHpackDecoder();
  private readonly reader: (chunk: Buffer) => void;
  private readonly streams = new Map<number, Stream>();
  /** Requests not started yet: before the server's SETTINGS, or over its stream limit. */
  private readonly waiting: Stream[] = [];
  private goneListener: (() => void) | undefined;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private nextId = 1;
  private peer = { maxStreams: 100, window: 65_535, maxFrame: DEFAULT_MAX_FRAME };
  private sendWindow = 65_535;
  private received = 0;
  /** The stream whose header block continues in CONTINUATION frames, and the block so far. */
  private continuing: { id: number; endStream: boolean; parts: Uint8Array[] } | undefined;
  private gone = false;
  private closing = false;
  private dead = false;
  /** TLS is up with ALPN h2 and our preface is out (set by watchOpening). */
  private readonly link = { connected: false };
  /** The server's first SETTINGS arrived: its limits are known, streams may start. */
  private peerSettled = false;

  constructor(options: H2SessionOptions) {
    this.name = options.name;
    this.encode = createRequestEncoder(options.authority);
    this.reader = createFrameReader(DEFAULT_MAX_FRAME, (type, flags, id, payload) =>
      this.onFrame(type, flags, id, payload),
    );
    this.socket = connectH2Tls(options);
    this.opening = createOpening(this.name, options.clock, options.signal);
    this.ready = this.opening.done;
    this.ready.catch((error: UpstreamError) => this.die(error));
    this.watch(options.connectTimeoutMs);
  }

  /** Whether TLS resumed a session from a ticket. */
  get resumed(): boolean {
    return this.socket.isSessionReused();
  }

  /** `listener` runs once, when the session stops taking streams (GOAWAY, close, error). */
  onGone(listener: () => void): void {
    if (this.gone) queueMicrotask(listener);
    else this.goneListener = listener;
  }

  /**
   * One exchange. Rejects with an UpstreamError: `read` when the stream or
   * the session fails before the answer, `send` on a session already gone,
   * `malformed_answer` for a body over 65,535 bytes, the signal's reason
   * (abortedBy) on abort.
   */
  request(request: DohRequest, signal: AbortSignal): Promise<DohResponse> {
    const { name } = this;
    if (signal.aborted) return Promise.reject(abortedBy(signal, name));
    if (this.gone || this.dead) {
      return Promise.reject(new UpstreamError("send", name, `${name}: session closed`));
    }
    const { promise, resolve, reject } = Promise.withResolvers<DohResponse>();
    const stream = newStream(request, signal, { resolve, reject });
    stream.onAbort = () => {
      const error = abortedBy(signal, name);
      if (stream.id !== 0 && this.streams.get(stream.id) === stream) this.cancel(stream, error);
      else {
        const i = this.waiting.indexOf(stream);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(error);
      }
    };
    signal.addEventListener("abort", stream.onAbort, { once: true });
    if (!this.peerSettled || this.streams.size >= this.peer.maxStreams) this.waiting.push(stream);
    else this.start(stream);
    return promise;
  }

  /** `graceful`: closes once the streams in flight are done, no new ones; otherwise at once. */
  close(graceful: boolean): void {
    if (!graceful) {
      this.die(new UpstreamError("closed", this.name, `${this.name}: session closed`));
      return;
    }
    this.closing = true;
    this.markGone();
    if (this.streams.size === 0) this.die(new UpstreamError("closed", this.name));
  }

  private watch(timeoutMs: number) {
    const { socket, name } = this;
    watchOpening(socket, this.opening, this.link, { name, timeoutMs, preface: PREFACE });
    // Failures while opening are the opening's (connect, tls); later ones the streams'.
    socket.on("error", (cause) => this.die(new UpstreamError("read", name, undefined, { cause })));
    socket.on("close", () => this.die(new UpstreamError("read", name, `${name}: session closed`)));
    socket.on("data", (chunk: Buffer) => {
      try {
        this.reader(chunk);
      } catch (error) {
        this.protocolError((error as Error).message, H2_ERROR.FRAME_SIZE_ERROR);
      }
    });
  }

  private markGone() {
    if (this.gone) return;
    this.gone = true;
    const listener = this.goneListener;
    this.goneListener = undefined;
    listener?.();
  }

  private queue(bytes: Buffer) {
    this.out.push(bytes);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush() {
    this.flushScheduled = false;
    const { out, socket } = this;
    if (out.length === 0 || socket.destroyed) return;
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
    this.out = [];
    socket.write(bytes);
  }

  /** Fails every stream and waiting request, and closes the socket. */
  private die(error: UpstreamError, code: number = H2_ERROR.NO_ERROR) {
    if (this.dead) return;
    this.dead = true;
    this.markGone();
    this.opening.finish(error);
    for (const stream of [...this.streams.values(), ...this.waiting]) {
      detach(stream);
      stream.reject(error);
    }
    this.streams.clear();
    this.waiting.length = 0;
    if (this.link.connected && !this.socket.destroyed) {
      // GOAWAY says which streams we saw (none are the server's) and why.
      this.out.push(frame(FRAME.GOAWAY, 0, 0, Buffer.concat([uint32(0), uint32(code)])));
      this.flush();
      this.socket.destroySoon();
    } else {
      this.socket.destroy();
    }
  }

  private protocolError(message: string, code: number = H2_ERROR.PROTOCOL_ERROR) {
    this.die(new UpstreamError("read", this.name, `${this.name}: HTTP/2 ${message}`), code);
  }

  /** A stream leaves: the next waiting request may start, and a closing session may end. */
  private release(stream: Stream) {
    this.streams.delete(stream.id);
    detach(stream);
    this.startWaiting();
    if ((this.gone || this.closing) && this.streams.size === 0) {
      this.die(new UpstreamError("closed", this.name));
    }
  }

  private startWaiting() {
    const { waiting, streams } = this;
    while (this.peerSettled && waiting.length > 0 && streams.size < this.peer.maxStreams) {
      if (this.gone) return;
      this.start(waiting.shift()!);
    }
  }

  private start(stream: Stream) {
    const { request } = stream;
    if (this.nextId > MAX_STREAM_ID) {
      // Stream ids used up: this session takes no more; the pool opens another.
      this.markGone();
      detach(stream);
      stream.reject(
        new UpstreamError("read", this.name, `${this.name}: HTTP/2 stream ids used up`),
      );
      return;
    }
    stream.id = this.nextId;
    this.nextId += 2;
    stream.sendWindow = this.peer.window;
    this.streams.set(stream.id, stream);
    const block = this.encode(request);
    const body = request.method === "POST" ? request.body : undefined;
    const { maxFrame } = this.peer;
    const room = Math.min(this.sendWindow, stream.sendWindow, maxFrame);
    if (body && block.length <= maxFrame && body.length > 0 && body.length <= room) {
      // The common case: HEADERS and the whole body as one DATA frame, in one buffer.
      this.queue(requestFrames(stream.id, block, body));
      this.sendWindow -= body.length;
      stream.sendWindow -= body.length;
      return;
    }
    stream.pending = body;
    for (const bytes of headerFrames(stream.id, block, !body, maxFrame)) this.queue(bytes);
    if (stream.pending) this.sendBody(stream);
  }

  /** As much of the body as both windows and the frame size allow; the rest waits for WINDOW_UPDATE. */
  private sendBody(stream: Stream) {
    let body = stream.pending;
    while (body && body.length > 0) {
      const n = Math.min(body.length, this.sendWindow, stream.sendWindow, this.peer.maxFrame);
      if (n <= 0) break;
      const last = n === body.length;
      const bytes = Buffer.allocUnsafe(HEADER_SIZE + n);
      writeFrameHeader(bytes, 0, n, FRAME.DATA, last ? FLAG.END_STREAM : 0, stream.id);
      bytes.set(body.subarray(0, n), HEADER_SIZE);
      this.queue(bytes);
      this.sendWindow -= n;
      stream.sendWindow -= n;
      body = last ? undefined : body.subarray(n);
    }
    stream.pending = body;
  }

  private sendBlocked() {
    for (const stream of this.streams.values()) {
      if (stream.pending) this.sendBody(stream);
      if (this.sendWindow <= 0) return;
    }
  }

  private finish(stream: Stream) {
    this.release(stream);
    if (stream.status === 0) {
      const why = `${this.name}: stream ended without a response`;
      stream.reject(new UpstreamError("read", this.name, why));
      return;
    }
    const { status, contentType } = stream;
    stream.resolve({ status, contentType, body: streamBody(stream) });
  }

  private cancel(stream: Stream, error: UpstreamError) {
    this.queue(frame(FRAME.RST_STREAM, 0, stream.id, uint32(H2_ERROR.CANCEL)));
    this.release(stream);
    stream.reject(error);
  }

  private onFrame(type: number, flags: number, id: number, payload: Uint8Array) {
    if (this.dead) return;
    if (this.continuing && type !== FRAME.CONTINUATION) {
      return this.protocolError("header block interrupted");
    }
    switch (type) {
      case FRAME.DATA:
        return this.onData(flags, id, payload);
      case FRAME.HEADERS:
        return this.onHeaders(flags, id, payload);
      case FRAME.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      case FRAME.RST_STREAM:
        return this.onRstStream(id, payload);
      case FRAME.SETTINGS:
        return this.onSettings(flags, payload);
      case FRAME.PING:
        if ((flags & FLAG.ACK) === 0) this.queue(frame(FRAME.PING, FLAG.ACK, 0, payload));
        return;
      case FRAME.GOAWAY:
        return this.onGoaway(payload);
      case FRAME.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case FRAME.PUSH_PROMISE:
        return this.protocolError("PUSH_PROMISE with push disabled");
      default:
        // PRIORITY and unknown types are ignored (RFC 9113 §4.1, §5.5).
        return;
    }
  }

  private onData(flags: number, id: number, payload: Uint8Array) {
    if (id === 0) return this.protocolError("DATA on stream 0");
    // Flow control counts the whole payload, padding included, stream known or not.
    this.received += payload.length;
    if (this.received >= CONNECTION_WINDOW / 2) {
      this.queue(frame(FRAME.WINDOW_UPDATE, 0, 0, uint32(this.received)));
      this.received = 0;
    }
    const stream = this.streams.get(id);
    if (!stream) return;
    const data = unpadded(flags, payload);
    if (!data) return this.protocolError("bad padding");
    if (stream.status === 0) return this.protocolError("DATA before HEADERS");
    stream.size += data.length;
    if (stream.size > MAX_ANSWER) {
      const error = new UpstreamError(
        "malformed_answer",
        this.name,
        `${this.name}: answer too large`,
      );
      this.cancel(stream, error);
      return;
    }
    if (data.length > 0) stream.chunks.push(data);
    if (flags & FLAG.END_STREAM) this.finish(stream);
  }

  private onHeaders(flags: number, id: number, payload: Uint8Array) {
    if (id === 0) return this.protocolError("HEADERS on stream 0");
    const block = unpadded(flags, payload, flags & FLAG.PRIORITY ? 5 : 0);
    if (!block) return this.protocolError("bad padding");
    const endStream = (flags & FLAG.END_STREAM) !== 0;
    if (flags & FLAG.END_HEADERS) this.headerBlock(id, endStream, block);
    else this.continuing = { id, endStream, parts: [block] };
  }

  private onContinuation(flags: number, id: number, payload: Uint8Array) {
    const { continuing } = this;
    if (!continuing || continuing.id !== id) return this.protocolError("unexpected CONTINUATION");
    continuing.parts.push(payload);
    if ((flags & FLAG.END_HEADERS) === 0) return;
    this.continuing = undefined;
    this.headerBlock(id, continuing.endStream, Buffer.concat(continuing.parts));
  }

  /** A whole header block: decoded always (the HPACK table), applied if the stream is ours. */
  private headerBlock(id: number, endStream: boolean, block: Uint8Array) {
    let fields: { status: number; contentType: string };
    try {
      fields = this.decoder.decode(block);
    } catch (error) {
      if (error instanceof HpackError) {
        return this.protocolError(error.message, H2_ERROR.COMPRESSION_ERROR);
      }
      throw error;
    }
    const stream = this.streams.get(id);
    if (!stream) return;
    // 1xx heads come before the response; a second head is trailers.
    if (stream.status === 0 && !(fields.status >= 100 && fields.status < 200)) {
      stream.status = fields.status;
      stream.contentType = fields.contentType;
    }
    if (endStream) this.finish(stream);
  }

  private onRstStream(id: number, payload: Uint8Array) {
    const stream = this.streams.get(id);
    if (!stream) return;
    const code = payload.length >= 4 ? readUint32(payload, 0) : 0;
    if (code === H2_ERROR.REFUSED_STREAM && !this.gone) {
      // Refused before any processing (RFC 9113 §8.7): safe to send again, after the others.
      this.streams.delete(id);
      stream.id = 0;
      stream.chunks = [];
      stream.size = 0;
      this.waiting.push(stream);
      this.startWaiting();
      return;
    }
    this.release(stream);
    const why = `${this.name}: stream reset by the server (HTTP/2 error ${code})`;
    stream.reject(new UpstreamError("read", this.name, why));
  }

  private onSettings(flags: number, payload: Uint8Array) {
    if (flags & FLAG.ACK) return;
    if (payload.length % 6 !== 0) {
      return this.protocolError("bad SETTINGS", H2_ERROR.FRAME_SIZE_ERROR);
    }
    for (let at = 0; at < payload.length; at += 6) {
      const key = (payload[at]! << 8) | payload[at + 1]!;
      if (!this.applySetting(key, readUint32(payload, at + 2))) return;
    }
    this.queue(frame(FRAME.SETTINGS, FLAG.ACK, 0, new Uint8Array(0)));
    if (!this.peerSettled) {
      this.peerSettled = true;
      this.opening.finish();
    }
    this.sendBlocked();
    this.startWaiting();
  }

  /** One SETTINGS parameter; false after a protocol error. */
  private applySetting(key: number, value: number): boolean {
    const { peer } = this;
    if (key === SETTING.MAX_CONCURRENT_STREAMS) this.peer = { ...peer, maxStreams: value };
    else if (key === SETTING.MAX_FRAME_SIZE) {
      if (value < DEFAULT_MAX_FRAME || value > 0xffffff) {
        this.protocolError("bad MAX_FRAME_SIZE");
        return false;
      }
      this.peer = { ...peer, maxFrame: value };
    } else if (key === SETTING.INITIAL_WINDOW_SIZE) {
      if (value > MAX_STREAM_ID) {
        this.protocolError("bad INITIAL_WINDOW_SIZE", H2_ERROR.FLOW_CONTROL_ERROR);
        return false;
      }
      // The change applies to every open stream's window (RFC 9113 §6.9.2).
      for (const stream of this.streams.values()) stream.sendWindow += value - peer.window;
      this.peer = { ...peer, window: value };
    }
    return true;
  }

  private onGoaway(payload: Uint8Array) {
    if (payload.length < 8) return this.protocolError("bad GOAWAY", H2_ERROR.FRAME_SIZE_ERROR);
    const last = readUint32(payload, 0) & MAX_STREAM_ID;
    // Gone first, so the pool has let the session go before the rejections below reach it.
    this.markGone();
    // Streams above `last` were not processed: they fail as `read` on a
    // session that is gone, which the pool retries on another.
    const why = `${this.name}: GOAWAY before the server took the stream`;
    const error = new UpstreamError("read", this.name, why);
    for (const stream of [...this.streams.values()]) {
      if (stream.id > last) {
        this.streams.delete(stream.id);
        detach(stream);
        stream.reject(error);
      }
    }
    for (const waiter of this.waiting.splice(0)) {
      detach(waiter);
      waiter.reject(error);
    }
    if (this.streams.size === 0) this.die(new UpstreamError("closed", this.name));
  }

  private onWindowUpdate(id: number, payload: Uint8Array) {
    if (payload.length !== 4) {
      return this.protocolError("bad WINDOW_UPDATE", H2_ERROR.FRAME_SIZE_ERROR);
    }
    const increment = readUint32(payload, 0) & MAX_STREAM_ID;
    if (id === 0) this.sendWindow += increment;
    else {
      const stream = this.streams.get(id);
      if (!stream) return;
      stream.sendWindow += increment;
    }
    this.sendBlocked();
  }
}

function detach(stream: Stream) {
  stream.signal.removeEventListener("abort", stream.onAbort);
}
