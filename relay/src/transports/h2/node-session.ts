// The DohSession over Node's http2 module: the relay's DoH client before
// the purpose-built one (client-session.ts), kept as the reference the
// contract suite and the bench compare it with.

import {
  type ClientHttp2Stream,
  connect,
  constants,
  type SecureClientSessionOptions,
} from "node:http2";
import type { TLSSocket } from "node:tls";
import { abortedBy, UpstreamError } from "../../../../shared/engine/errors.ts";
import type { DohResponse, DohSession, DohSessionOptions } from "./doh-session.ts";

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } =
  constants;
const DNS_MESSAGE = "application/dns-message";
const TLS_ERROR = /certificate|SSL|TLS|self.signed/i;

export function createNodeH2Session(options: DohSessionOptions): DohSession {
  const { name } = options;
  const connectOptions: SecureClientSessionOptions = {};
  if (options.tls?.servername) connectOptions.servername = options.tls.servername;
  if (options.tls?.ca) connectOptions.ca = options.tls.ca;
  if (options.tls?.cert) connectOptions.cert = options.tls.cert;
  if (options.tls?.key) connectOptions.key = options.tls.key;
  if (options.lookup) connectOptions.lookup = options.lookup;
  if (options.tlsSession) connectOptions.session = options.tlsSession;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const session = connect(`https://${host}:${options.port}`, connectOptions);
  let gone = false;
  const listeners: (() => void)[] = [];
  const markGone = () => {
    if (gone) return;
    gone = true;
    for (const listener of listeners.splice(0)) listener();
  };
  session.on("error", markGone);
  session.on("close", markGone);
  session.on("goaway", markGone);
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new UpstreamError("connect", name, `${name}: connect timeout`));
      session.destroy();
    }, options.connectTimeoutMs);
    session.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    session.once("error", (error) => {
      clearTimeout(timer);
      const code = TLS_ERROR.test(String(error)) ? "tls" : "connect";
      reject(new UpstreamError(code, name, undefined, { cause: error }));
    });
    session.once("close", () => {
      clearTimeout(timer);
      reject(new UpstreamError("connect", name, `${name}: session closed`));
    });
  });
  ready.catch(() => {});

  function request(
    req: { method: "GET" | "POST"; path: string; body?: Uint8Array },
    signal: AbortSignal,
  ) {
    return new Promise<DohResponse>((resolve, reject) => {
      const headers: Record<string, string> = {
        accept: DNS_MESSAGE,
        [HTTP2_HEADER_METHOD]: req.method,
        [HTTP2_HEADER_PATH]: req.path,
      };
      if (req.method === "POST") headers[HTTP2_HEADER_CONTENT_TYPE] = DNS_MESSAGE;
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: req.method === "GET" });
        if (req.method === "POST") stream.end(req.body);
      } catch (error) {
        reject(new UpstreamError("send", name, undefined, { cause: error }));
        return;
      }
      let status = 0;
      let type = "";
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const settle = (error?: UpstreamError, response?: DohResponse) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        if (error) reject(error);
        else resolve(response as DohResponse);
      };
      const onAbort = () => {
        stream.close(constants.NGHTTP2_CANCEL);
        settle(abortedBy(signal, name));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      stream.on("response", (h) => {
        status = Number(h[HTTP2_HEADER_STATUS]);
        type = String(h[HTTP2_HEADER_CONTENT_TYPE] ?? "");
      });
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > 65535) {
          stream.close(constants.NGHTTP2_CANCEL);
          settle(new UpstreamError("malformed_answer", name, `${name}: answer too large`));
          return;
        }
        chunks.push(chunk);
      });
      stream.on("end", () => {
        if (status === 0) {
          settle(new UpstreamError("read", name, `${name}: stream ended without a response`));
          return;
        }
        // Fresh memory from concat, ours alone.
        const body = new Uint8Array(Buffer.concat(chunks));
        settle(undefined, { status, contentType: type, body });
      });
      stream.on("error", (error) =>
        settle(new UpstreamError("read", name, undefined, { cause: error })),
      );
      // After "end" this is a no-op; built lazily, since an Error's stack costs.
      stream.on("close", () => {
        if (!settled) {
          settle(new UpstreamError("read", name, `${name}: stream closed before the answer`));
        }
      });
    });
  }

  return {
    ready,
    usable: () => !gone && !session.closed && !session.destroyed,
    resumed: () => (session.socket as TLSSocket | undefined)?.isSessionReused() ?? false,
    request: (req, signal) =>
      signal.aborted ? Promise.reject(abortedBy(signal, name)) : request(req, signal),
    close: () => session.close(),
    destroy: () => session.destroy(),
    onGone(listener) {
      if (gone) queueMicrotask(listener);
      else listeners.push(listener);
    },
  };
}
