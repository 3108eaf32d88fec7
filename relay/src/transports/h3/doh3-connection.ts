// One HTTP/3 connection as a pool connection (shared/pool/driver.ts): the
// HTTP/3 session (connection.ts) started once the QUIC handshake is done,
// one request stream per query (waiting for stream credit while the
// server's limit is used up), the answer checked and put under the caller's
// ID. A GOAWAY takes the connection out of the pool (goingAway) while the
// requests it accepted finish; those it did not accept fail as not
// processed, which the driver calls retryable. A query given up on with the
// connection silent since it went out retires the connection (as DoQ does).

import { readId, setId } from "../../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../../shared/engine/errors.ts";
import type { OpenContext, PoolConnection } from "../../../../shared/pool/driver.ts";
import type { DialedLink, QuicStreamHandlers } from "../quic-dial.ts";
import { H3Connection, type H3Response, NOT_PROCESSED } from "./connection.ts";
import { H3_ERROR } from "./frames.ts";
import type { HeaderField } from "./qpack.ts";

export const DNS_MESSAGE = "application/dns-message";

/** The HTTP request carrying one query. */
export interface DohRequest {
  fields: HeaderField[];
  body?: Uint8Array | undefined;
}

export interface Doh3ConnectionOptions extends DialedLink {
  context: OpenContext;
  /** The request for one query's wire bytes. */
  request(wire: Uint8Array): DohRequest;
}

/** The answer in a response, under the caller's ID; throws an UpstreamError otherwise. */
export function answerOf(name: string, response: H3Response, id: number): Uint8Array {
  if (response.status < 200 || response.status > 299) {
    throw new UpstreamError("http_status", name, `${name}: HTTP ${response.status}`, {
      status: response.status,
    });
  }
  const type = response.fields.find(([field]) => field === "content-type")?.[1] ?? "";
  if (!type.toLowerCase().startsWith(DNS_MESSAGE)) {
    throw new UpstreamError("malformed_answer", name, `${name}: content-type ${type}`);
  }
  if (response.body.length < 12) {
    throw new UpstreamError("malformed_answer", name, `${name}: short DoH answer`);
  }
  // The body is fresh memory, ours alone: the caller's ID goes back in place.
  setId(response.body, id);
  return response.body;
}

export class Doh3Connection implements PoolConnection, QuicStreamHandlers {
  private readonly options: Doh3ConnectionOptions;
  private readonly name: string;
  private readonly h3: H3Connection;

  constructor(options: Doh3ConnectionOptions) {
    const { name, link, clock, context } = options;
    this.options = options;
    this.name = name;
    this.h3 = new H3Connection(name, link, () => clock.now());
    this.h3.onGoaway = () => context.goingAway();
    const { dead } = this.h3;
    const gone = () => {
      options.keepTicket(link.conn.session());
      context.lost(dead.signal.reason as UpstreamError);
    };
    dead.signal.addEventListener("abort", gone, { once: true });
  }

  /** Read once the handshake is done (the pool reads it then). */
  get resumed(): boolean {
    return this.options.link.conn.isResumed();
  }

  /** Opens our control stream with SETTINGS; once, after the handshake. */
  start(): void {
    this.h3.start();
  }

  async exchange(wire: Uint8Array, message: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    const response = await this.send(wire, signal);
    return answerOf(this.name, response, readId(message));
  }

  close(): void {
    this.h3.close(H3_ERROR.noError, new UpstreamError("closed", this.name));
  }

  onStreamData(streamId: number, data: Uint8Array, fin: boolean): void {
    this.h3.onStreamData(streamId, data, fin);
  }

  onStreamReset(streamId: number, code: number): void {
    this.h3.onStreamReset(streamId, code);
  }

  onReceived(): void {
    this.h3.onReceived();
  }

  onClosed(why: UpstreamError): void {
    this.h3.fail(why);
  }

  /** One request on its own stream; rejects with an UpstreamError (`aborted` when the caller gave up). */
  private async send(wire: Uint8Array, signal: AbortSignal): Promise<H3Response> {
    const { h3, name } = this;
    // Waits while the server's stream limit is used up; no await between this check and the write.
    for (;;) {
      if (signal.aborted) throw abortedBy(signal, name);
      if (!h3.usable) throw this.unusable();
      if (h3.streamCredit > 0) break;
      await h3.moreStreams(signal);
    }
    const { fields, body } = this.options.request(wire);
    const sentAt = this.options.clock.now();
    let sent: ReturnType<H3Connection["request"]>;
    try {
      sent = h3.request(fields, body);
    } catch (error) {
      // quiche refused the write: the connection is no use any more.
      h3.close(H3_ERROR.internalError, error as UpstreamError);
      throw error;
    }
    const onAbort = () => {
      const reason = abortedBy(signal, name);
      sent.cancel(reason);
      if (!this.silentSince(sentAt)) return;
      // Queries still on it see a dead connection (`read`): the pool retries them.
      const silent = `${name}: no answer for ${this.options.silenceMs} ms, connection dropped`;
      h3.close(H3_ERROR.noError, new UpstreamError("read", name, silent, { cause: reason }));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await sent.response;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** Why a request cannot go out here: the connection died, or went away before it was sent. */
  private unusable(): UpstreamError {
    const { h3, name } = this;
    if (h3.dead.signal.aborted) {
      const cause = h3.dead.signal.reason;
      return new UpstreamError("send", name, `${name}: QUIC connection closed`, { cause });
    }
    const why = `${name}: GOAWAY before the request was sent`;
    return new UpstreamError("read", name, why, { cause: NOT_PROCESSED });
  }

  /**
   * UDP gives no sign of a peer that forgot the connection: a query given up
   * on `silenceMs` after it was sent, with no answer since, means the
   * connection is dead, so the next query opens a fresh one.
   */
  private silentSince(sentAt: number): boolean {
    const elapsed = this.options.clock.now() - sentAt;
    return this.h3.lastAnswerAt < sentAt && elapsed >= this.options.silenceMs;
  }
}
