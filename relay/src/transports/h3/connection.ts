// One HTTP/3 connection (RFC 9114) for a client that only sends requests:
// our control stream with SETTINGS (no QPACK dynamic table, no blocked
// streams), the server's control stream read for SETTINGS and GOAWAY, its
// QPACK streams accepted and ignored (nothing can arrive on them with a
// table capacity of 0), and one bidirectional stream per request. A protocol
// violation by the server closes the connection with the RFC's error code.

import { performance } from "node:perf_hooks";
import { UpstreamError } from "../../../../shared/engine/errors.ts";
import type { QuicheLink } from "../quiche-link.ts";
import {
  encodeFrame,
  encodeVarints,
  FrameReader,
  H3_ERROR,
  H3_FRAME,
  H3_SETTING,
  H3_STREAM,
  H3FrameError,
  parseSettings,
  readVarint,
} from "./frames.ts";
import { decodeFieldSection, encodeFieldSection, type HeaderField } from "./qpack.ts";

export interface H3Response {
  status: number;
  /** Final response header fields, lower-case names. */
  fields: HeaderField[];
  body: Uint8Array;
}

interface PendingRequest {
  frames: FrameReader;
  status: number;
  fields: HeaderField[];
  chunks: Uint8Array[];
  size: number;
  resolve(response: H3Response): void;
  reject(error: UpstreamError): void;
}

/** A server-opened unidirectional stream: its type once read, then its frames (control only). */
interface PeerUniStream {
  head: Uint8Array;
  type: number | undefined;
  frames: FrameReader | undefined;
}

/**
 * The cause of a request's failure when the server cannot have processed it
 * (past a GOAWAY's ID, or reset with H3_REQUEST_REJECTED): safe to retry.
 */
export const NOT_PROCESSED = new Error("the server did not process the request");

/** Our control stream: the first client-initiated unidirectional stream (RFC 9000 §2.1). */
const CONTROL_STREAM_ID = 2;
/** The largest body we take: a DNS message. */
const MAX_BODY = 65_535;

/** Frames a server must not send on a request stream, and the connection error for each. */
const NOT_ON_REQUEST = new Map<number, number>([
  [H3_FRAME.cancelPush, H3_ERROR.frameUnexpected],
  [H3_FRAME.settings, H3_ERROR.frameUnexpected],
  [H3_FRAME.goaway, H3_ERROR.frameUnexpected],
  [H3_FRAME.maxPushId, H3_ERROR.frameUnexpected],
  // We never send MAX_PUSH_ID, so no push ID is valid (§7.2.5).
  [H3_FRAME.pushPromise, H3_ERROR.idError],
]);

/** Reserved HTTP/2 frame types that HTTP/3 forbids everywhere (§7.2.8). */
const HTTP2_ONLY = new Set([0x02, 0x06, 0x08, 0x09]);

export class H3Connection {
  readonly name: string;
  readonly link: QuicheLink;
  /** Aborts when the connection is gone; its reason is the UpstreamError. */
  readonly dead = new AbortController();
  /** Set by a GOAWAY: requests on streams from this ID up were not processed. */
  goawayId: number | undefined;
  /** When an answer last arrived (by `now`). */
  lastAnswerAt: number;
  /** Called once on the first GOAWAY. */
  onGoaway: () => void = () => {};
  private readonly requests = new Map<number, PendingRequest>();
  private readonly peerStreams = new Map<number, PeerUniStream>();
  private readonly waiting: (() => void)[] = [];
  private nextStreamId = 0;
  private controlSeen = false;
  private settingsSeen = false;
  private readonly now: () => number;

  /** `now`: the clock answers are timed by (the pool's). */
  constructor(name: string, link: QuicheLink, now: () => number = () => performance.now()) {
    this.name = name;
    this.link = link;
    this.now = now;
    this.lastAnswerAt = now();
  }

  /** Opens our control stream with SETTINGS; call once after the handshake. */
  start(): void {
    const settings = encodeFrame(
      H3_FRAME.settings,
      encodeVarints([H3_SETTING.qpackMaxTableCapacity, 0, H3_SETTING.qpackBlockedStreams, 0]),
    );
    const type = encodeVarints([H3_STREAM.control]);
    const bytes = new Uint8Array(type.length + settings.length);
    bytes.set(type);
    bytes.set(settings, type.length);
    // Never finished: closing a control stream is a connection error (§6.2.1).
    this.link.write(CONTROL_STREAM_ID, bytes, false);
  }

  /** Requests may still be sent here (not dead, no GOAWAY). */
  get usable(): boolean {
    return !this.dead.signal.aborted && this.goawayId === undefined;
  }

  /** Streams the server allows us to open now. */
  get streamCredit(): number {
    return this.link.conn.peerStreamsLeftBidi();
  }

  /** Resolves when stream credit may have grown, or the connection or caller gave up. */
  moreStreams(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", wake);
        resolve();
      };
      this.waiting.push(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  /**
   * Sends one request (HEADERS, then DATA when `body` is given, then FIN) and
   * resolves with the response. Rejects with an UpstreamError; `cancel`
   * abandons the stream with H3_REQUEST_CANCELLED and rejects with `reason`.
   */
  request(
    fields: readonly HeaderField[],
    body: Uint8Array | undefined,
  ): { streamId: number; response: Promise<H3Response>; cancel(reason: UpstreamError): void } {
    const streamId = this.nextStreamId;
    this.nextStreamId += 4;
    const response = new Promise<H3Response>((resolve, reject) => {
      this.requests.set(streamId, {
        frames: new FrameReader(),
        status: 0,
        fields: [],
        chunks: [],
        size: 0,
        resolve,
        reject,
      });
    });
    const headers = encodeFrame(H3_FRAME.headers, encodeFieldSection(fields));
    const data = body ? encodeFrame(H3_FRAME.data, body) : undefined;
    let bytes = headers;
    if (data) {
      bytes = new Uint8Array(headers.length + data.length);
      bytes.set(headers);
      bytes.set(data, headers.length);
    }
    try {
      this.link.write(streamId, bytes, true);
    } catch (error) {
      this.requests.delete(streamId);
      throw new UpstreamError("send", this.name, `${this.name}: cannot write a QUIC stream`, {
        cause: error,
      });
    }
    const cancel = (reason: UpstreamError) => {
      const pending = this.requests.get(streamId);
      if (!pending) return;
      this.requests.delete(streamId);
      this.link.cancelStream(streamId, H3_ERROR.requestCancelled);
      pending.reject(reason);
      this.settled();
    };
    return { streamId, response, cancel };
  }

  /** Closes the connection with an HTTP/3 error code, failing what is still in flight. */
  close(code: number, reason: UpstreamError): void {
    this.fail(reason);
    this.link.close(code);
  }

  /** The QUIC connection is gone: everything in flight fails. */
  fail(reason: UpstreamError): void {
    if (this.dead.signal.aborted) return;
    this.dead.abort(reason);
    for (const pending of this.requests.values()) pending.reject(reason);
    this.requests.clear();
    for (const wake of this.waiting.splice(0)) wake();
  }

  onReceived(): void {
    let credit = this.streamCredit;
    while (credit-- > 0 && this.waiting.length > 0) this.waiting.shift()?.();
  }

  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void {
    try {
      if (streamId % 4 === 0) this.requestData(streamId, data, fin);
      else if (streamId % 4 === 3) this.peerUniData(streamId, data, fin);
    } catch (error) {
      this.protocolError(error);
    }
  }

  onStreamReset(streamId: number, code: number): void {
    if (this.peerStreams.get(streamId)?.type === H3_STREAM.control) {
      this.protocolError(
        new H3FrameError(H3_ERROR.closedCriticalStream, "the server reset its control stream"),
      );
      return;
    }
    const pending = this.requests.get(streamId);
    if (!pending) return;
    this.requests.delete(streamId);
    const rejected = code === H3_ERROR.requestRejected;
    pending.reject(
      new UpstreamError(
        "read",
        this.name,
        `${this.name}: the server ${rejected ? "rejected" : "reset"} the request (code 0x${code.toString(16)})`,
        rejected ? { cause: NOT_PROCESSED } : undefined,
      ),
    );
    this.settled();
  }

  /** A stream left the table: a connection that got GOAWAY closes once it is idle. */
  private settled(): void {
    if (this.goawayId !== undefined && this.requests.size === 0 && !this.dead.signal.aborted) {
      this.close(
        H3_ERROR.noError,
        new UpstreamError("read", this.name, `${this.name}: connection closed after GOAWAY`),
      );
    }
  }

  private protocolError(error: unknown): void {
    const code = error instanceof H3FrameError ? error.code : H3_ERROR.internalError;
    const message = error instanceof Error ? error.message : String(error);
    this.close(
      code,
      new UpstreamError(
        "read",
        this.name,
        `${this.name}: HTTP/3 error 0x${code.toString(16)}: ${message}`,
      ),
    );
  }

  private requestData(streamId: number, data: Uint8Array, fin: boolean): void {
    const pending = this.requests.get(streamId);
    if (!pending) return;
    for (const frame of pending.frames.push(data)) {
      if (!this.requestFrame(pending, frame.type, frame.payload)) {
        this.requests.delete(streamId);
        this.link.cancelStream(streamId, H3_ERROR.requestCancelled);
        this.settled();
        return;
      }
    }
    if (!fin) return;
    this.requests.delete(streamId);
    this.lastAnswerAt = this.now();
    if (pending.frames.pending) {
      throw new H3FrameError(H3_ERROR.frameError, "the response stream ended inside a frame");
    }
    if (pending.status === 0) {
      pending.reject(
        new UpstreamError("read", this.name, `${this.name}: stream ended without a response`),
      );
    } else {
      const body = new Uint8Array(pending.size);
      let at = 0;
      for (const chunk of pending.chunks) {
        body.set(chunk, at);
        at += chunk.length;
      }
      pending.resolve({ status: pending.status, fields: pending.fields, body });
    }
    this.settled();
  }

  /** One frame of a response; false once the request has been settled early. */
  private requestFrame(pending: PendingRequest, type: number, payload: Uint8Array): boolean {
    const forbidden =
      NOT_ON_REQUEST.get(type) ?? (HTTP2_ONLY.has(type) ? H3_ERROR.frameUnexpected : 0);
    if (forbidden)
      throw new H3FrameError(forbidden, `frame type 0x${type.toString(16)} on a request stream`);
    if (type === H3_FRAME.headers) {
      const fields = decodeFieldSection(payload);
      // Trailers after the body are allowed and ignored.
      if (pending.status >= 200) return true;
      const status = Number(fields.find(([name]) => name === ":status")?.[1]);
      if (!Number.isInteger(status) || status < 100 || status > 599) {
        throw new H3FrameError(H3_ERROR.messageError, "a response without a valid :status");
      }
      // Interim (1xx) responses come before the final one.
      if (status >= 200) {
        pending.status = status;
        pending.fields = fields;
      }
    } else if (type === H3_FRAME.data) {
      if (pending.status < 200)
        throw new H3FrameError(H3_ERROR.frameUnexpected, "DATA before HEADERS");
      pending.size += payload.length;
      if (pending.size > MAX_BODY) {
        pending.reject(
          new UpstreamError("malformed_answer", this.name, `${this.name}: answer too large`),
        );
        return false;
      }
      pending.chunks.push(payload);
    }
    return true;
  }

  private peerUniData(streamId: number, data: Uint8Array, fin: boolean): void {
    let stream = this.peerStreams.get(streamId);
    if (!stream) {
      stream = { head: new Uint8Array(0), type: undefined, frames: undefined };
      this.peerStreams.set(streamId, stream);
    }
    let rest = data;
    if (stream.type === undefined) {
      const head = new Uint8Array(stream.head.length + data.length);
      head.set(stream.head);
      head.set(data, stream.head.length);
      const type = readVarint(head, 0);
      if (!type) {
        stream.head = head;
        return;
      }
      stream.type = type[0];
      rest = head.subarray(type[1]);
      this.peerStreamType(streamId, stream);
    }
    if (stream.frames) {
      for (const frame of stream.frames.push(rest)) this.controlFrame(frame.type, frame.payload);
      if (fin)
        throw new H3FrameError(
          H3_ERROR.closedCriticalStream,
          "the server closed its control stream",
        );
    }
  }

  private peerStreamType(streamId: number, stream: PeerUniStream): void {
    switch (stream.type) {
      case H3_STREAM.control:
        if (this.controlSeen) {
          throw new H3FrameError(H3_ERROR.streamCreationError, "a second control stream");
        }
        this.controlSeen = true;
        stream.frames = new FrameReader(16_384);
        return;
      case H3_STREAM.push:
        throw new H3FrameError(H3_ERROR.idError, "a push stream, though we allowed no pushes");
      case H3_STREAM.qpackEncoder:
      case H3_STREAM.qpackDecoder:
        // Read and ignored: with a table capacity of 0 nothing on them matters.
        return;
      default:
        // Unknown and reserved stream types are abandoned, not errors (§6.2).
        this.peerStreams.delete(streamId);
        this.link.cancelStream(streamId, H3_ERROR.streamCreationError);
    }
  }

  private controlFrame(type: number, payload: Uint8Array): void {
    if (!this.settingsSeen) {
      if (type !== H3_FRAME.settings) {
        throw new H3FrameError(
          H3_ERROR.missingSettings,
          "the control stream did not start with SETTINGS",
        );
      }
      this.settingsSeen = true;
      parseSettings(payload);
      return;
    }
    switch (type) {
      case H3_FRAME.goaway:
        this.goaway(payload);
        return;
      case H3_FRAME.settings:
      case H3_FRAME.data:
      case H3_FRAME.headers:
      case H3_FRAME.pushPromise:
      case H3_FRAME.maxPushId:
        throw new H3FrameError(
          H3_ERROR.frameUnexpected,
          `frame type 0x${type.toString(16)} on the control stream`,
        );
      default:
        if (HTTP2_ONLY.has(type)) {
          throw new H3FrameError(
            H3_ERROR.frameUnexpected,
            `HTTP/2 frame type 0x${type.toString(16)}`,
          );
        }
      // CANCEL_PUSH (no pushes exist) and unknown types: ignored.
    }
  }

  /** GOAWAY (§5.2): streams from its ID up were not processed and may be retried elsewhere. */
  private goaway(payload: Uint8Array): void {
    const id = readVarint(payload, 0);
    if (!id || id[1] !== payload.length)
      throw new H3FrameError(H3_ERROR.frameError, "malformed GOAWAY");
    const streamId = id[0];
    if (streamId % 4 !== 0)
      throw new H3FrameError(H3_ERROR.idError, "GOAWAY names no request stream");
    if (this.goawayId !== undefined && streamId > this.goawayId) {
      throw new H3FrameError(H3_ERROR.idError, "GOAWAY with a larger ID than before");
    }
    const first = this.goawayId === undefined;
    this.goawayId = streamId;
    for (const [requestId, pending] of this.requests) {
      if (requestId < streamId) continue;
      this.requests.delete(requestId);
      this.link.cancelStream(requestId, H3_ERROR.requestCancelled);
      pending.reject(
        new UpstreamError(
          "read",
          this.name,
          `${this.name}: GOAWAY before the request was processed`,
          {
            cause: NOT_PROCESSED,
          },
        ),
      );
    }
    for (const wake of this.waiting.splice(0)) wake();
    if (first) this.onGoaway();
    this.settled();
  }
}
