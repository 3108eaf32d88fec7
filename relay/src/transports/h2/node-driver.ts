// The HTTP/2 DoH driver over Node's http2 module: the relay's client before
// its own (client-session.ts), kept as the reference the contract suite and
// `npm run bench:profile` compare the relay's own client with. Plug it in
// with `createDohH2Upstream(options, createNodeH2Driver(options))`.

import { Buffer } from "node:buffer";
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type SecureClientSessionOptions,
} from "node:http2";
import { plainBytes } from "../../../../shared/dns/bytes.ts";
import { padQuery } from "../../../../shared/dns/edns-options.ts";
import { MAX_MESSAGE_SIZE } from "../../../../shared/dns/wire.ts";
import { dohAnswer, dohRequest } from "../../../../shared/doh/doh-exchange.ts";
import type { Clock } from "../../../../shared/engine/clock.ts";
import { abortedBy, toUpstreamError, UpstreamError } from "../../../../shared/engine/errors.ts";
import type { OpenContext, PoolConnection, PoolDriver } from "../../../../shared/pool/driver.ts";
import { createOpening } from "../../../../shared/pool/opening.ts";
import type { DohH2UpstreamOptions } from "../doh-h2.ts";
import { relayClock } from "../relay-clock.ts";
import { openErrorCode, tlsConnectOptions } from "../tls-options.ts";

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } =
  constants;

/** Sessions from node:http2. */
export function createNodeH2Driver(options: DohH2UpstreamOptions): PoolDriver {
  const { name } = options;
  const clock = options.clock ?? relayClock;
  const url = new URL(options.origin);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 443);
  return {
    prepare: padQuery,
    async open(context) {
      const settings: SecureClientSessionOptions = tlsConnectOptions(
        host,
        port,
        options.tls ?? {},
        {
          lookup: options.lookup,
        },
      );
      const session = connect(options.origin, settings);
      try {
        await sessionReady(session, name, clock, options.connectTimeoutMs, context.signal);
      } catch (error) {
        session.destroy();
        throw error;
      }
      return h2Connection(session, options, context);
    },
  };
}

/** Resolves once the session is up; rejects with `connect` or `tls` (or `closed`). */
function sessionReady(
  session: ClientHttp2Session,
  name: string,
  clock: Clock,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const opening = createOpening(name, clock, signal);
  opening.deadline(timeoutMs, () => {
    return new UpstreamError("connect", name, `${name}: connect timeout`);
  });
  session.once("connect", () => opening.finish());
  // Stays (inert once finished) until the session's own listeners take over.
  session.on("error", (error) => {
    const code = openErrorCode(error, false);
    opening.finish(new UpstreamError(code, name, undefined, { cause: error }));
  });
  session.once("close", () => {
    opening.finish(new UpstreamError("connect", name, `${name}: session closed`));
  });
  return opening.done;
}

function h2Connection(
  session: ClientHttp2Session,
  options: DohH2UpstreamOptions,
  context: OpenContext,
): PoolConnection {
  const { name } = options;
  const lost = (why: string) => () =>
    context.lost(new UpstreamError("read", name, `${name}: ${why}`));
  session.on("error", lost("session error"));
  session.on("close", lost("session closed"));
  session.on("goaway", lost("GOAWAY"));
  return {
    resumed: false,
    exchange(wire, _message, signal) {
      if (session.closed || session.destroyed) {
        return Promise.reject(new UpstreamError("send", name, `${name}: session closed`));
      }
      const request = dohRequest(options.method, options.path, wire);
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(
          {
            ...request.headers,
            [HTTP2_HEADER_METHOD]: request.method,
            [HTTP2_HEADER_PATH]: request.path,
          },
          { endStream: request.body === undefined },
        );
        if (request.body) stream.end(request.body);
      } catch (error) {
        return Promise.reject(new UpstreamError("send", name, undefined, { cause: error }));
      }
      return streamAnswer(stream, options, wire, signal);
    },
    close(graceful) {
      if (graceful) session.close();
      else session.destroy();
    },
  };
}

/** The answer on one request stream; the stream is cancelled if the caller gives up. */
function streamAnswer(
  stream: ClientHttp2Stream,
  options: DohH2UpstreamOptions,
  query: Uint8Array,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const { name } = options;
  return new Promise<Uint8Array>((resolve, reject) => {
    let status = 0;
    let contentType = "";
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (error?: UpstreamError, answer?: Uint8Array) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      if (error) reject(error);
      else resolve(answer as Uint8Array);
    };
    const onAbort = () => {
      stream.close(constants.NGHTTP2_CANCEL);
      settle(abortedBy(signal, name));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    stream.on("response", (headers) => {
      status = Number(headers[HTTP2_HEADER_STATUS]);
      contentType = String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? "");
    });
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_MESSAGE_SIZE) {
        stream.close(constants.NGHTTP2_CANCEL);
        settle(new UpstreamError("malformed_answer", name, `${name}: answer too large`));
        return;
      }
      chunks.push(chunk);
    });
    stream.on("end", () => {
      try {
        // Fresh memory from concat, ours alone.
        const body = plainBytes(Buffer.concat(chunks));
        settle(undefined, dohAnswer(name, { status, contentType, body }, options.method, query));
      } catch (error) {
        settle(toUpstreamError(error, name));
      }
    });
    stream.on("error", (error) =>
      settle(new UpstreamError("read", name, undefined, { cause: error })),
    );
    stream.on("close", () =>
      settle(new UpstreamError("read", name, `${name}: stream closed before the answer`)),
    );
  });
}
