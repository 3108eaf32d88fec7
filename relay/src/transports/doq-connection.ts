// One established DoQ connection as a pool connection (RFC 9250): one
// bidirectional stream per query carrying a 2-byte length prefix, message
// ID 0 on the wire, the caller's restored on the answer. Queries wait for
// stream credit when the peer's stream limit is used up.

import { createFrameReader, type FrameReader } from "../../../shared/dns/framing.ts";
import { readId, setId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import type { OpenContext, PoolConnection } from "../../../shared/pool/driver.ts";
import type { DialedLink, QuicStreamHandlers } from "./quic-dial.ts";
import type { QuicheLink } from "./quiche-link.ts";

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

interface PendingAnswer {
  frames: FrameReader;
  resolve(answer: Uint8Array): void;
  reject(error: UpstreamError): void;
}

export interface DoqConnectionOptions extends DialedLink {
  context: OpenContext;
}

/** The connection plus the link events it handles once established. */
export interface DoqConnection extends PoolConnection, QuicStreamHandlers {
  /** Takes the connection out of use and closes it (once) with a DoQ error code. */
  drop(reason: UpstreamError, errorCode?: DoqErrorCode): void;
}

export function createDoqConnection(options: DoqConnectionOptions): DoqConnection {
  return new DoqStreamConnection(options);
}

class DoqStreamConnection implements DoqConnection {
  private readonly options: DoqConnectionOptions;
  private readonly name: string;
  private readonly link: QuicheLink;
  private readonly streams = new Map<number, PendingAnswer>();
  /** Queries waiting for the peer to allow another stream. */
  private readonly waiting: (() => void)[] = [];
  private readonly dead = new AbortController();
  private nextStreamId = 0;
  private lastAnswerAt: number;

  constructor(options: DoqConnectionOptions) {
    this.options = options;
    this.name = options.name;
    this.link = options.link;
    this.lastAnswerAt = options.clock.now();
  }

  async exchange(framed: Uint8Array, message: Uint8Array, signal: AbortSignal) {
    const answer = this.checked(await this.send(framed, signal));
    // The answer is ours alone (a plain copy of the stream's bytes): the caller's ID goes back in place.
    setId(answer, readId(message));
    return answer;
  }

  /** Read once the handshake is done (the pool reads it then). */
  get resumed(): boolean {
    return this.link.conn.isResumed();
  }

  close(): void {
    this.drop(new UpstreamError("closed", this.name));
  }

  onClosed(why: UpstreamError): void {
    this.drop(why);
  }

  drop(reason: UpstreamError, errorCode: DoqErrorCode = DOQ_ERROR.noError): void {
    if (this.dead.signal.aborted) return;
    this.dead.abort(reason);
    this.options.keepTicket(this.link.conn.session());
    this.link.close(errorCode);
    for (const pending of this.streams.values()) {
      const closed = `${this.name}: QUIC connection closed`;
      pending.reject(new UpstreamError("read", this.name, closed, { cause: reason }));
    }
    this.streams.clear();
    for (const wake of this.waiting.splice(0)) wake();
    this.options.context.lost(reason);
  }

  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void {
    const pending = this.streams.get(streamId);
    if (!pending) return;
    this.lastAnswerAt = this.options.clock.now();
    const [answer] = pending.frames.push(data);
    if (answer) pending.resolve(answer);
    else if (fin) {
      const ended = `${this.name}: stream ended before the answer`;
      pending.reject(new UpstreamError("read", this.name, ended));
    }
  }

  onStreamReset(streamId: number, code: number): void {
    const reset = `${this.name}: the server reset the stream (code ${code})`;
    this.streams.get(streamId)?.reject(new UpstreamError("read", this.name, reset));
  }

  onReceived(): void {
    let credit = this.link.conn.peerStreamsLeftBidi();
    while (credit-- > 0 && this.waiting.length > 0) this.waiting.shift()?.();
  }

  /**
   * UDP gives no sign of a peer that restarted and forgot the connection: it
   * just stops answering until the idle timeout. A query given up on after
   * `silenceMs` with no answer on the connection since it was sent means
   * the connection is dead. (Races cancel losers much sooner; slow answers still count.)
   */
  private silentSince(sentAt: number): boolean {
    const { clock, silenceMs } = this.options;
    return this.lastAnswerAt < sentAt && clock.now() - sentAt >= silenceMs;
  }

  /** Waits while the peer's stream limit (raised as streams finish) is used up. */
  private async streamCredit(signal: AbortSignal): Promise<void> {
    for (;;) {
      if (this.dead.signal.aborted) {
        throw new UpstreamError("send", this.name, `${this.name}: QUIC connection closed`);
      }
      if (signal.aborted) throw abortedBy(signal, this.name);
      if (this.link.conn.peerStreamsLeftBidi() > 0) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.waiting.push(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }

  /** One query on one stream; rejects with an UpstreamError (`aborted` when the caller gave up). */
  private async send(framed: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    const { link, name } = this;
    // Queries that found credit go on without a pause; no await between the check and the write.
    while (link.conn.peerStreamsLeftBidi() === 0 || this.dead.signal.aborted) {
      await this.streamCredit(signal);
    }
    const streamId = this.nextStreamId;
    this.nextStreamId += 4;
    const sentAt = this.options.clock.now();
    const { promise: answer, resolve, reject } = Promise.withResolvers<Uint8Array>();
    this.streams.set(streamId, { frames: createFrameReader(), resolve, reject });
    const onAbort = () => {
      link.cancelStream(streamId, DOQ_ERROR.requestCancelled);
      if (this.silentSince(sentAt)) this.drop(abortedBy(signal, name));
      reject(abortedBy(signal, name));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      try {
        link.write(streamId, framed, true);
      } catch (error) {
        const failed = new UpstreamError("send", name, `${name}: cannot write a QUIC stream`, {
          cause: error,
        });
        this.streams.delete(streamId); // its answer promise stays unsettled, never awaited
        this.drop(failed);
        throw failed;
      }
      return await answer;
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.streams.delete(streamId);
    }
  }

  /** RFC 9250 §4.3: a peer that breaks the protocol loses the connection. */
  private checked(answer: Uint8Array): Uint8Array {
    const { name } = this;
    const protocolError = new UpstreamError("read", name, `${name}: DoQ protocol error`);
    if (answer.length < 12) {
      this.drop(protocolError, DOQ_ERROR.protocolError);
      throw new UpstreamError("malformed_answer", name, `${name}: short DoQ answer`);
    }
    if (readId(answer) !== 0) {
      this.drop(protocolError, DOQ_ERROR.protocolError);
      throw new UpstreamError("id_mismatch", name, `${name}: DoQ answer with a non-zero ID`);
    }
    return answer;
  }
}
