// DoH (RFC 8484) over a pool of persistent HTTP/2 sessions: at most
// `poolSize` sessions per upstream, many concurrent streams on each, never a
// connection per query. A session that closes, errors or gets GOAWAY leaves
// the pool and a new one is opened on demand; failed connects back off
// exponentially (connect attempts inside the backoff fail fast). A query on
// a session that dies under it is retried on a fresh one (maxRetries).

import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type SecureClientSessionOptions,
} from "node:http2";
import { plainBytes } from "../../../shared/dns/bytes.ts";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { readId, setId, withId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import { unsendable } from "../../../shared/engine/upstream.ts";
import type { LookupFunction } from "./bootstrap.ts";
import type { PooledUpstream } from "./pool-stats.ts";

export interface DohH2UpstreamOptions {
  name: string;
  /** Origin, e.g. "https://dns.example:443". */
  origin: string;
  /** Path plus query, e.g. "/dns-query". */
  path: string;
  method: "POST" | "GET";
  poolSize: number;
  /** Streams per session before another session is opened (up to poolSize). */
  maxInFlight: number;
  connectTimeoutMs: number;
  /** A session with no stream for this long is closed. */
  idleTimeoutMs: number;
  tls?: { servername?: string; ca?: string; cert?: string; key?: string };
  maxBackoffMs?: number;
  /** Retries on a fresh session when a session dies mid-query (default 2). */
  maxRetries?: number;
  /** Host name resolution (the bootstrap servers); the system resolver otherwise. */
  lookup?: LookupFunction | undefined;
}

export type DohH2Upstream = PooledUpstream;

interface PooledSession {
  session: ClientHttp2Session;
  ready: Promise<void>;
  active: number;
  /** Streams opened on this session so far. */
  streams: number;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } =
  constants;
const DNS_MESSAGE = "application/dns-message";

function base64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

export function createDohH2Upstream(options: DohH2UpstreamOptions): DohH2Upstream {
  const { name } = options;
  const sessions: PooledSession[] = [];
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
  /** Sessions lost and not yet replaced: the next opens count as reconnects. */
  let lost = 0;
  let closed = false;
  let failures = 0;
  let nextConnectAt = 0;
  const maxBackoff = options.maxBackoffMs ?? 5000;
  const maxRetries = options.maxRetries ?? 2;

  function drop(entry: PooledSession) {
    const i = sessions.indexOf(entry);
    if (i >= 0) {
      sessions.splice(i, 1);
      lost++;
    }
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
  }

  function open(): PooledSession {
    stats.opened++;
    if (lost > 0) {
      lost--;
      stats.reconnects++;
    }
    const connectOptions: SecureClientSessionOptions = {};
    if (options.tls?.servername) connectOptions.servername = options.tls.servername;
    if (options.tls?.ca) connectOptions.ca = options.tls.ca;
    if (options.tls?.cert) connectOptions.cert = options.tls.cert;
    if (options.tls?.key) connectOptions.key = options.tls.key;
    if (options.lookup) connectOptions.lookup = options.lookup;
    const session = connect(options.origin, connectOptions);
    const entry: PooledSession = {
      session,
      active: 0,
      streams: 0,
      idleTimer: undefined,
      ready: new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new UpstreamError("connect", name, `${name}: connect timeout`));
          session.destroy();
        }, options.connectTimeoutMs);
        session.once("connect", () => {
          clearTimeout(timer);
          failures = 0;
          resolve();
        });
        session.once("error", (error) => {
          clearTimeout(timer);
          const tls = /certificate|SSL|TLS|self.signed/i.test(String(error));
          reject(new UpstreamError(tls ? "tls" : "connect", name, undefined, { cause: error }));
        });
        session.once("close", () => {
          clearTimeout(timer);
          reject(new UpstreamError("connect", name, `${name}: session closed`));
        });
      }),
    };
    entry.ready.catch(() => {
      failures++;
      nextConnectAt = Date.now() + Math.min(maxBackoff, 100 * 2 ** Math.min(failures, 10));
      drop(entry);
    });
    session.on("error", () => drop(entry));
    session.on("close", () => drop(entry));
    session.on("goaway", () => drop(entry));
    sessions.push(entry);
    return entry;
  }

  function pick(): PooledSession {
    for (const entry of [...sessions]) {
      if (entry.session.closed || entry.session.destroyed) drop(entry);
    }
    let best: PooledSession | undefined;
    for (const entry of sessions) {
      if (!best || entry.active < best.active) best = entry;
    }
    if (best && (best.active < options.maxInFlight || sessions.length >= options.poolSize)) {
      return best;
    }
    if (sessions.length < options.poolSize) {
      if (!best && Date.now() < nextConnectAt) {
        throw new UpstreamError("connect", name, `${name}: reconnect backoff`);
      }
      return open();
    }
    if (best) return best;
    throw new UpstreamError("busy", name);
  }

  function request(entry: PooledSession, message: Uint8Array, signal: AbortSignal) {
    return new Promise<Uint8Array>((resolve, reject) => {
      const headers: Record<string, string> = { accept: DNS_MESSAGE };
      let stream: ClientHttp2Stream;
      try {
        if (options.method === "GET") {
          const sep = options.path.includes("?") ? "&" : "?";
          headers[HTTP2_HEADER_METHOD] = "GET";
          // ID 0 so HTTP caches can share answers (RFC 8484 §4.1); the caller's goes back on the answer.
          headers[HTTP2_HEADER_PATH] = `${options.path}${sep}dns=${base64Url(withId(message, 0))}`;
          stream = entry.session.request(headers, { endStream: true });
        } else {
          headers[HTTP2_HEADER_METHOD] = "POST";
          headers[HTTP2_HEADER_PATH] = options.path;
          headers[HTTP2_HEADER_CONTENT_TYPE] = DNS_MESSAGE;
          stream = entry.session.request(headers);
          stream.end(message);
        }
      } catch (error) {
        reject(new UpstreamError("send", name, undefined, { cause: error }));
        return;
      }
      entry.active++;
      if (entry.streams++ > 0) stats.reused++;
      else stats.fresh++;
      if (entry.idleTimer) clearTimeout(entry.idleTimer);
      let status = 0;
      let type = "";
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (error?: UpstreamError, answer?: Uint8Array) => {
        signal.removeEventListener("abort", onAbort);
        entry.active--;
        if (entry.active === 0 && !entry.session.destroyed) {
          entry.idleTimer = setTimeout(() => {
            drop(entry);
            entry.session.close();
          }, options.idleTimeoutMs);
          entry.idleTimer.unref();
        }
        if (error) reject(error);
        else resolve(answer as Uint8Array);
      };
      let settled = false;
      const settle = (error?: UpstreamError, answer?: Uint8Array) => {
        if (settled) return;
        settled = true;
        done(error, answer);
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
        if (status < 200 || status > 299) {
          settle(new UpstreamError("http_status", name, `${name}: HTTP ${status}`, { status }));
          return;
        }
        if (!type.toLowerCase().startsWith(DNS_MESSAGE)) {
          settle(new UpstreamError("malformed_answer", name, `${name}: content-type ${type}`));
          return;
        }
        // Fresh memory from concat, ours alone.
        const answer = plainBytes(Buffer.concat(chunks));
        if (options.method === "GET" && answer.length >= 12) setId(answer, readId(message));
        settle(undefined, answer);
      });
      stream.on("error", (error) =>
        settle(new UpstreamError("read", name, undefined, { cause: error })),
      );
      stream.on("close", () =>
        settle(new UpstreamError("read", name, `${name}: stream closed before the answer`)),
      );
    });
  }

  return {
    name,
    poolStats() {
      let inFlight = 0;
      for (const entry of sessions) inFlight += entry.active;
      return { open: sessions.length, inFlight, ...stats };
    },
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      if (signal.aborted) throw abortedBy(signal, name);
      const bad = unsendable(message, name);
      if (bad) throw bad;
      const padded = padQuery(message);
      // A session that dies under a query (reset, GOAWAY) costs a retry on
      // a fresh session, up to maxRetries; other failures are final.
      for (let attempt = 0; ; attempt++) {
        const entry = pick();
        await entry.ready;
        try {
          return await request(entry, padded, signal);
        } catch (error) {
          const died = entry.session.destroyed || entry.session.closed || !sessions.includes(entry);
          const retry =
            error instanceof UpstreamError &&
            error.code === "read" &&
            died &&
            !signal.aborted &&
            !closed &&
            attempt < maxRetries;
          if (!retry) throw error;
        }
      }
    },
    async close() {
      closed = true;
      for (const entry of [...sessions]) {
        drop(entry);
        entry.session.destroy();
      }
    },
  };
}
