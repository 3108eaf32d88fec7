// One established DoQ connection as a pool connection (RFC 9250): one
// bidirectional stream per query carrying a 2-byte length prefix, message
// ID 0 on the wire, the caller's restored on the answer. Queries wait for
// stream credit when the peer's stream limit is used up.

import { createFrameReader, type FrameReader } from "../../../shared/dns/framing.ts";
import { readId, setId } from "../../../shared/dns/wire.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import type { OpenContext, PoolConnection } from "../../../shared/pool/driver.ts";
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

export interface DoqConnectionOptions {
  name: string;
  link: QuicheLink;
  clock: Clock;
  context: OpenContext;
  /**
   * A query given up on this long after it was sent, with no answer on the
   * connection since, marks the connection dead (see silentSince).
   */
  silenceMs: number;
  /** Closes the UDP socket (after the CONNECTION_CLOSE has gone out). */
  closeSocket(): void;
  /** Keeps the connection's TLS session ticket for the next one. */
  keepTicket(ticket: Uint8Array | null): void;
}

/** The connection plus the link events it handles once established. */
export interface DoqConnection extends PoolConnection {
  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void;
  onStreamReset(streamId: number, code: number): void;
  onReceived(): void;
  /** Takes the connection out of use and closes it (once) with a DoQ error code. */
  drop(reason: UpstreamError, errorCode?: DoqErrorCode): void;
}

export function createDoqConnection(options: DoqConnectionOptions): DoqConnection {
  const { name, link, clock } = options;
  const streams = new Map<number, PendingAnswer>();
  /** Queries waiting for the peer to allow another stream. */
  const waiting: (() => void)[] = [];
  const dead = new AbortController();
  let nextStreamId = 0;
  let lastAnswerAt = clock.now();

  function drop(reason: UpstreamError, errorCode: DoqErrorCode = DOQ_ERROR.noError) {
    if (dead.signal.aborted) return;
    dead.abort(reason);
    options.keepTicket(link.conn.session());
    link.close(errorCode);
    for (const pending of streams.values()) {
      pending.reject(
        new UpstreamError("read", name, `${name}: QUIC connection closed`, { cause: reason }),
      );
    }
    streams.clear();
    for (const wake of waiting.splice(0)) wake();
    options.closeSocket();
    options.context.lost(reason);
  }

  /**
   * UDP gives no sign of a peer that restarted and forgot the connection: it
   * just stops answering until the idle timeout. A query given up on after
   * `silenceMs` with no answer on the connection since it was sent means
   * the connection is dead. (Races cancel losers much sooner; slow answers still count.)
   */
  const silentSince = (sentAt: number) =>
    lastAnswerAt < sentAt && clock.now() - sentAt >= options.silenceMs;

  /** Resolves once the peer may have granted more streams (or the connection or caller gave up). */
  function moreStreams(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", wake);
        resolve();
      };
      waiting.push(wake);
      signal.addEventListener("abort", wake, { once: true });
    });
  }

  /** Waits while the peer's stream limit (raised as streams finish) is used up. */
  async function streamCredit(signal: AbortSignal): Promise<void> {
    for (;;) {
      if (dead.signal.aborted) {
        throw new UpstreamError("send", name, `${name}: QUIC connection closed`);
      }
      if (signal.aborted) throw abortedBy(signal, name);
      if (link.conn.peerStreamsLeftBidi() > 0) return;
      await moreStreams(signal);
    }
  }

  /** One query on one stream; rejects with an UpstreamError (`aborted` when the caller gave up). */
  async function exchange(framed: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    // Queries that found credit go on without a pause; no await between the check and the write.
    while (link.conn.peerStreamsLeftBidi() === 0 || dead.signal.aborted) await streamCredit(signal);
    const streamId = nextStreamId;
    nextStreamId += 4;
    const sentAt = clock.now();
    let onAbort: () => void = () => {};
    const answer = new Promise<Uint8Array>((resolve, reject) => {
      streams.set(streamId, { frames: createFrameReader(), resolve, reject });
      onAbort = () => {
        link.cancelStream(streamId, DOQ_ERROR.requestCancelled);
        if (silentSince(sentAt)) drop(abortedBy(signal, name));
        reject(abortedBy(signal, name));
      };
    });
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      try {
        link.write(streamId, framed, true);
      } catch (error) {
        const failed = new UpstreamError("send", name, `${name}: cannot write a QUIC stream`, {
          cause: error,
        });
        drop(failed);
        throw failed;
      }
      return await answer;
    } finally {
      signal.removeEventListener("abort", onAbort);
      streams.delete(streamId);
    }
  }

  /** RFC 9250 §4.3: a peer that breaks the protocol loses the connection. */
  function checked(answer: Uint8Array): Uint8Array {
    const protocolError = new UpstreamError("read", name, `${name}: DoQ protocol error`);
    if (answer.length < 12) {
      drop(protocolError, DOQ_ERROR.protocolError);
      throw new UpstreamError("malformed_answer", name, `${name}: short DoQ answer`);
    }
    if (readId(answer) !== 0) {
      drop(protocolError, DOQ_ERROR.protocolError);
      throw new UpstreamError("id_mismatch", name, `${name}: DoQ answer with a non-zero ID`);
    }
    return answer;
  }

  return {
    resumed: link.conn.isResumed(),
    async exchange(framed, message, signal) {
      const answer = checked(await exchange(framed, signal));
      // The answer is ours alone (a plain copy of the stream's bytes): the caller's ID goes back in place.
      setId(answer, readId(message));
      return answer;
    },
    close: () => drop(new UpstreamError("closed", name)),
    drop,
    onStreamData(streamId, data, fin) {
      const pending = streams.get(streamId);
      if (!pending) return;
      lastAnswerAt = clock.now();
      const [answer] = pending.frames.push(data);
      if (answer) pending.resolve(answer);
      else if (fin) {
        pending.reject(new UpstreamError("read", name, `${name}: stream ended before the answer`));
      }
    },
    onStreamReset(streamId, code) {
      streams
        .get(streamId)
        ?.reject(
          new UpstreamError("read", name, `${name}: the server reset the stream (code ${code})`),
        );
    },
    onReceived() {
      let credit = link.conn.peerStreamsLeftBidi();
      while (credit-- > 0 && waiting.length > 0) waiting.shift()?.();
    },
  };
}
