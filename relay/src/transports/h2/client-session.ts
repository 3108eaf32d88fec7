// A purpose-built HTTP/2 client session for DoH (RFC 8484 over RFC 9113):
// one TLS socket, requests as a fixed HPACK block plus one DATA frame, every
// frame of an event-loop turn in one socket write. It keeps the parts of
// HTTP/2 a client must: SETTINGS (the peer's concurrent-stream limit,
// initial window and frame size), flow control both ways (WINDOW_UPDATE),
// PING, RST_STREAM, GOAWAY (streams above the last id fail as unprocessed,
// the rest finish), CONTINUATION, padding, and a full HPACK decoder. Node's
// http2 module cost the relay ~2.7× the CPU per query of its DoT path here
// (stream objects, events, nghttp2 round trips): bench/profiles.md.

import { abortedBy, UpstreamError } from "../../../../shared/engine/errors.ts";
import { clientPreface, connectH2Tls } from "./connect.ts";
import type { DohRequest, DohResponse, DohSession, DohSessionOptions } from "./doh-session.ts";
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
const TLS_ERROR = /certificate|SSL|TLS|self.signed|alert|handshake/i;

export function createH2ClientSession(options: DohSessionOptions): DohSession {
  const { name } = options;
  const encode = createRequestEncoder(options.authority);
  const decoder = createHpackDecoder();
  const streams = new Map<number, Stream>();
  /** Requests not started yet: before the server's SETTINGS, or over its stream limit. */
  const waiting: Stream[] = [];
  const goneListeners: (() => void)[] = [];
  let out: Buffer[] = [];
  let flushScheduled = false;
  let nextId = 1;
  let peer = { maxStreams: 100, window: 65_535, maxFrame: DEFAULT_MAX_FRAME };
  let sendWindow = 65_535;
  let received = 0;
  /** The stream whose header block continues in CONTINUATION frames, and the block so far. */
  let continuing: { id: number; endStream: boolean; parts: Uint8Array[] } | undefined;
  let gone = false;
  let closing = false;
  let dead = false;
  let connected = false;
  /** The server's first SETTINGS arrived: its limits are known, streams may start. */
  let peerSettled = false;
  let settleReady: () => void = () => {};
  let failReady: (error: UpstreamError) => void = () => {};

  const socket = connectH2Tls(options);

  function markGone() {
    if (gone) return;
    gone = true;
    for (const listener of goneListeners.splice(0)) listener();
  }

  function queue(bytes: Buffer) {
    out.push(bytes);
    if (flushScheduled) return;
    flushScheduled = true;
    setImmediate(flush);
  }

  function flush() {
    flushScheduled = false;
    if (out.length === 0 || socket.destroyed) return;
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
    out = [];
    socket.write(bytes);
  }

  /** Fails every stream and waiting request, and closes the socket. */
  function die(error: UpstreamError, code: number = H2_ERROR.NO_ERROR) {
    if (dead) return;
    dead = true;
    markGone();
    failReady(error);
    for (const stream of [...streams.values(), ...waiting]) {
      detach(stream);
      stream.reject(error);
    }
    streams.clear();
    waiting.length = 0;
    if (connected && !socket.destroyed) {
      // GOAWAY says which streams we saw (none are the server's) and why.
      out.push(frame(FRAME.GOAWAY, 0, 0, Buffer.concat([uint32(0), uint32(code)])));
      flush();
      socket.destroySoon();
    } else {
      socket.destroy();
    }
  }

  function detach(stream: Stream) {
    stream.signal.removeEventListener("abort", stream.onAbort);
  }

  function protocolError(message: string, code: number = H2_ERROR.PROTOCOL_ERROR) {
    die(new UpstreamError("read", name, `${name}: HTTP/2 ${message}`), code);
  }

  /** A stream leaves: the next waiting request may start, and a closing session may end. */
  function release(stream: Stream) {
    streams.delete(stream.id);
    detach(stream);
    startWaiting();
    if ((gone || closing) && streams.size === 0) die(new UpstreamError("closed", name));
  }

  function startWaiting() {
    while (peerSettled && waiting.length > 0 && streams.size < peer.maxStreams && !gone) {
      start(waiting.shift()!);
    }
  }

  function start(stream: Stream) {
    const { request } = stream;
    if (nextId > MAX_STREAM_ID) {
      // Stream ids used up: this session takes no more; the pool opens another.
      markGone();
      stream.reject(new UpstreamError("read", name, `${name}: HTTP/2 stream ids used up`));
      detach(stream);
      return;
    }
    stream.id = nextId;
    nextId += 2;
    stream.sendWindow = peer.window;
    streams.set(stream.id, stream);
    const block = encode(request);
    const body = request.method === "POST" ? request.body : undefined;
    const room = Math.min(sendWindow, stream.sendWindow, peer.maxFrame);
    if (body && block.length <= peer.maxFrame && body.length > 0 && body.length <= room) {
      // The common case: HEADERS and the whole body as one DATA frame, in one buffer.
      queue(requestFrames(stream.id, block, body));
      sendWindow -= body.length;
      stream.sendWindow -= body.length;
      return;
    }
    stream.pending = body;
    for (const bytes of headerFrames(stream.id, block, !body, peer.maxFrame)) queue(bytes);
    if (stream.pending) sendBody(stream);
  }

  /** As much of the body as both windows and the frame size allow; the rest waits for WINDOW_UPDATE. */
  function sendBody(stream: Stream) {
    let body = stream.pending;
    while (body && body.length > 0) {
      const n = Math.min(body.length, sendWindow, stream.sendWindow, peer.maxFrame);
      if (n <= 0) break;
      const last = n === body.length;
      const bytes = Buffer.allocUnsafe(HEADER_SIZE + n);
      writeFrameHeader(bytes, 0, n, FRAME.DATA, last ? FLAG.END_STREAM : 0, stream.id);
      bytes.set(body.subarray(0, n), HEADER_SIZE);
      queue(bytes);
      sendWindow -= n;
      stream.sendWindow -= n;
      body = last ? undefined : body.subarray(n);
    }
    stream.pending = body;
  }

  function sendBlocked() {
    for (const stream of streams.values()) {
      if (stream.pending) sendBody(stream);
      if (sendWindow <= 0) return;
    }
  }

  function finish(stream: Stream) {
    release(stream);
    if (stream.status === 0) {
      stream.reject(new UpstreamError("read", name, `${name}: stream ended without a response`));
      return;
    }
    stream.resolve({
      status: stream.status,
      contentType: stream.contentType,
      body: streamBody(stream),
    });
  }

  function cancel(stream: Stream, error: UpstreamError) {
    queue(frame(FRAME.RST_STREAM, 0, stream.id, uint32(H2_ERROR.CANCEL)));
    release(stream);
    stream.reject(error);
  }

  function onData(flags: number, id: number, payload: Uint8Array) {
    if (id === 0) return protocolError("DATA on stream 0");
    // Flow control counts the whole payload, padding included, stream known or not.
    received += payload.length;
    if (received >= CONNECTION_WINDOW / 2) {
      queue(frame(FRAME.WINDOW_UPDATE, 0, 0, uint32(received)));
      received = 0;
    }
    const stream = streams.get(id);
    if (!stream) return;
    const data = unpadded(flags, payload);
    if (!data) return protocolError("bad padding");
    if (stream.status === 0) return protocolError("DATA before HEADERS");
    stream.size += data.length;
    if (stream.size > MAX_ANSWER) {
      cancel(stream, new UpstreamError("malformed_answer", name, `${name}: answer too large`));
      return;
    }
    if (data.length > 0) stream.chunks.push(data);
    if (flags & FLAG.END_STREAM) finish(stream);
  }

  function onHeaders(flags: number, id: number, payload: Uint8Array) {
    if (id === 0) return protocolError("HEADERS on stream 0");
    const block = unpadded(flags, payload, flags & FLAG.PRIORITY ? 5 : 0);
    if (!block) return protocolError("bad padding");
    const endStream = (flags & FLAG.END_STREAM) !== 0;
    if (flags & FLAG.END_HEADERS) headerBlock(id, endStream, block);
    else continuing = { id, endStream, parts: [block] };
  }

  function onContinuation(flags: number, id: number, payload: Uint8Array) {
    if (!continuing || continuing.id !== id) return protocolError("unexpected CONTINUATION");
    continuing.parts.push(payload);
    if ((flags & FLAG.END_HEADERS) === 0) return;
    const { endStream, parts } = continuing;
    continuing = undefined;
    headerBlock(id, endStream, Buffer.concat(parts));
  }

  /** A whole header block: decoded always (the HPACK table), applied if the stream is ours. */
  function headerBlock(id: number, endStream: boolean, block: Uint8Array) {
    let fields: { status: number; contentType: string };
    try {
      fields = decoder.decode(block);
    } catch (error) {
      if (error instanceof HpackError)
        return protocolError(error.message, H2_ERROR.COMPRESSION_ERROR);
      throw error;
    }
    const stream = streams.get(id);
    if (!stream) return;
    // 1xx heads come before the response; a second head is trailers.
    if (stream.status === 0 && !(fields.status >= 100 && fields.status < 200)) {
      stream.status = fields.status;
      stream.contentType = fields.contentType;
    }
    if (endStream) finish(stream);
  }

  function onRstStream(id: number, payload: Uint8Array) {
    const stream = streams.get(id);
    if (!stream) return;
    const code = payload.length >= 4 ? readUint32(payload, 0) : 0;
    if (code === H2_ERROR.REFUSED_STREAM && !gone) {
      // Refused before any processing (RFC 9113 §8.7): safe to send again, after the others.
      streams.delete(id);
      stream.id = 0;
      stream.chunks = [];
      stream.size = 0;
      waiting.push(stream);
      startWaiting();
      return;
    }
    release(stream);
    stream.reject(
      new UpstreamError("read", name, `${name}: stream reset by the server (HTTP/2 error ${code})`),
    );
  }

  function onSettings(flags: number, payload: Uint8Array) {
    if (flags & FLAG.ACK) return;
    if (payload.length % 6 !== 0) return protocolError("bad SETTINGS", H2_ERROR.FRAME_SIZE_ERROR);
    for (let at = 0; at < payload.length; at += 6) {
      const key = (payload[at]! << 8) | payload[at + 1]!;
      const value = readUint32(payload, at + 2);
      if (key === SETTING.MAX_CONCURRENT_STREAMS) peer = { ...peer, maxStreams: value };
      else if (key === SETTING.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 0xffffff)
          return protocolError("bad MAX_FRAME_SIZE");
        peer = { ...peer, maxFrame: value };
      } else if (key === SETTING.INITIAL_WINDOW_SIZE) {
        if (value > MAX_STREAM_ID)
          return protocolError("bad INITIAL_WINDOW_SIZE", H2_ERROR.FLOW_CONTROL_ERROR);
        // The change applies to every open stream's window (RFC 9113 §6.9.2).
        for (const stream of streams.values()) stream.sendWindow += value - peer.window;
        peer = { ...peer, window: value };
      }
    }
    queue(frame(FRAME.SETTINGS, FLAG.ACK, 0, new Uint8Array(0)));
    if (!peerSettled) {
      peerSettled = true;
      settleReady();
    }
    sendBlocked();
    startWaiting();
  }

  function onGoaway(payload: Uint8Array) {
    if (payload.length < 8) return protocolError("bad GOAWAY", H2_ERROR.FRAME_SIZE_ERROR);
    const last = readUint32(payload, 0) & MAX_STREAM_ID;
    markGone();
    // Streams above `last` were not processed: they fail as "read" on a
    // session that is gone, which the pool retries on another.
    const error = new UpstreamError(
      "read",
      name,
      `${name}: GOAWAY before the server took the stream`,
    );
    for (const stream of [...streams.values()]) {
      if (stream.id > last) {
        streams.delete(stream.id);
        detach(stream);
        stream.reject(error);
      }
    }
    for (const waiter of waiting.splice(0)) {
      detach(waiter);
      waiter.reject(error);
    }
    if (streams.size === 0) die(new UpstreamError("closed", name));
  }

  function onWindowUpdate(id: number, payload: Uint8Array) {
    if (payload.length !== 4) return protocolError("bad WINDOW_UPDATE", H2_ERROR.FRAME_SIZE_ERROR);
    const increment = readUint32(payload, 0) & MAX_STREAM_ID;
    if (id === 0) sendWindow += increment;
    else {
      const stream = streams.get(id);
      if (!stream) return;
      stream.sendWindow += increment;
    }
    sendBlocked();
  }

  function onFrame(type: number, flags: number, id: number, payload: Uint8Array) {
    if (dead) return;
    if (continuing && type !== FRAME.CONTINUATION) return protocolError("header block interrupted");
    switch (type) {
      case FRAME.DATA:
        return onData(flags, id, payload);
      case FRAME.HEADERS:
        return onHeaders(flags, id, payload);
      case FRAME.CONTINUATION:
        return onContinuation(flags, id, payload);
      case FRAME.RST_STREAM:
        return onRstStream(id, payload);
      case FRAME.SETTINGS:
        return onSettings(flags, payload);
      case FRAME.PING:
        if ((flags & FLAG.ACK) === 0) queue(frame(FRAME.PING, FLAG.ACK, 0, payload));
        return;
      case FRAME.GOAWAY:
        return onGoaway(payload);
      case FRAME.WINDOW_UPDATE:
        return onWindowUpdate(id, payload);
      case FRAME.PUSH_PROMISE:
        return protocolError("PUSH_PROMISE with push disabled");
      default:
        // PRIORITY and unknown types are ignored (RFC 9113 §4.1, §5.5).
        return;
    }
  }

  const reader = createFrameReader(DEFAULT_MAX_FRAME, onFrame);
  const ready = new Promise<void>((resolve, reject) => {
    failReady = reject;
    settleReady = () => {
      clearTimeout(timer);
      resolve();
    };
    let stage: "connect" | "tls" | "h2" = "connect";
    const timer = setTimeout(() => {
      const error = new UpstreamError(
        stage === "tls" ? "tls" : "connect",
        name,
        stage === "h2" ? `${name}: no HTTP/2 SETTINGS from the server` : `${name}: connect timeout`,
      );
      reject(error);
      die(error);
    }, options.connectTimeoutMs);
    socket.once("connect", () => {
      stage = "tls";
    });
    socket.once("secureConnect", () => {
      stage = "h2";
      if (socket.alpnProtocol !== "h2") {
        const error = new UpstreamError(
          "tls",
          name,
          `${name}: the server did not offer HTTP/2 (ALPN h2)`,
        );
        reject(error);
        die(error);
        return;
      }
      connected = true;
      socket.write(clientPreface(STREAM_WINDOW, CONNECTION_WINDOW));
    });
    socket.on("error", (cause) => {
      clearTimeout(timer);
      const code = connected
        ? "read"
        : stage === "tls" || TLS_ERROR.test(String(cause))
          ? "tls"
          : "connect";
      const error = new UpstreamError(code, name, undefined, { cause });
      reject(error);
      die(error);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      const error = new UpstreamError(
        connected ? "read" : "connect",
        name,
        `${name}: session closed`,
      );
      reject(error);
      die(error);
    });
  });
  ready.catch(() => {});

  socket.on("data", (chunk: Buffer) => {
    try {
      reader(chunk);
    } catch (error) {
      protocolError((error as Error).message, H2_ERROR.FRAME_SIZE_ERROR);
    }
  });

  return {
    ready,
    usable: () => !gone && !dead,
    resumed: () => socket.isSessionReused(),
    request(request, signal) {
      if (signal.aborted) return Promise.reject(abortedBy(signal, name));
      if (gone || dead)
        return Promise.reject(new UpstreamError("read", name, `${name}: session closed`));
      const { promise, resolve, reject } = Promise.withResolvers<DohResponse>();
      const stream = newStream(request, signal, { resolve, reject });
      stream.onAbort = () => {
        const error = abortedBy(signal, name);
        if (stream.id !== 0 && streams.get(stream.id) === stream) cancel(stream, error);
        else {
          const i = waiting.indexOf(stream);
          if (i >= 0) waiting.splice(i, 1);
          reject(error);
        }
      };
      signal.addEventListener("abort", stream.onAbort, { once: true });
      if (!peerSettled || streams.size >= peer.maxStreams) waiting.push(stream);
      else start(stream);
      return promise;
    },
    close() {
      closing = true;
      markGone();
      if (streams.size === 0) die(new UpstreamError("closed", name));
    },
    destroy() {
      die(new UpstreamError("closed", name, `${name}: session closed`));
    },
    onGone(listener) {
      if (gone) queueMicrotask(listener);
      else goneListeners.push(listener);
    },
  };
}
