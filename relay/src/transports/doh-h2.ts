// DoH (RFC 8484) over a pool of persistent HTTP/2 sessions: at most
// `poolSize` sessions per upstream, many concurrent streams on each, never a
// connection per query. A session that closes, errors or gets GOAWAY leaves
// the pool and a new one is opened on demand; failed connects back off
// exponentially (connect attempts inside the backoff fail fast). A query on
// a session that dies under it is retried on a fresh one (maxRetries).
//
// The HTTP/2 client is a seam (`session`, a DohSessionFactory): the relay's
// own (h2/client-session.ts) by default, Node's http2 module
// (h2/node-session.ts) as the reference.

import { padQuery } from "../../../shared/dns/edns-options.ts";
import { readId, setId, withId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import { unsendable } from "../../../shared/engine/upstream.ts";
import type { LookupFunction } from "./bootstrap.ts";
import { createH2ClientSession } from "./h2/client-session.ts";
import type { DohRequest, DohSession, DohSessionFactory } from "./h2/doh-session.ts";
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
  /** The HTTP/2 client (default: the relay's own, h2/client-session.ts). */
  session?: DohSessionFactory;
}

export type DohH2Upstream = PooledUpstream;

interface PooledSession {
  session: DohSession;
  active: number;
  /** Streams opened on this session so far. */
  streams: number;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

const DNS_MESSAGE = "application/dns-message";

function base64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url");
}

export function createDohH2Upstream(options: DohH2UpstreamOptions): DohH2Upstream {
  const { name } = options;
  const origin = new URL(options.origin);
  const host = origin.hostname.replace(/^\[|\]$/g, "");
  const port = Number(origin.port || 443);
  const makeSession = options.session ?? createH2ClientSession;
  const sessions: PooledSession[] = [];
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };
  /** Sessions lost and not yet replaced: the next opens count as reconnects. */
  let lost = 0;
  let closed = false;
  let failures = 0;
  let nextConnectAt = 0;
  let tlsSession: Buffer | undefined;
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
    const session = makeSession({
      name,
      host,
      port,
      authority: origin.host,
      connectTimeoutMs: options.connectTimeoutMs,
      lookup: options.lookup,
      tlsSession,
      onTlsSession: (ticket) => {
        tlsSession = ticket;
      },
      ...(options.tls ? { tls: options.tls } : {}),
    });
    const entry: PooledSession = { session, active: 0, streams: 0, idleTimer: undefined };
    session.ready.then(
      () => {
        failures = 0;
        if (session.resumed()) stats.resumed++;
      },
      () => {
        failures++;
        nextConnectAt = Date.now() + Math.min(maxBackoff, 100 * 2 ** Math.min(failures, 10));
        drop(entry);
      },
    );
    session.onGone(() => drop(entry));
    sessions.push(entry);
    return entry;
  }

  function pick(): PooledSession {
    for (const entry of [...sessions]) {
      if (!entry.session.usable()) drop(entry);
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

  function dohRequest(message: Uint8Array): DohRequest {
    if (options.method === "POST") return { method: "POST", path: options.path, body: message };
    const sep = options.path.includes("?") ? "&" : "?";
    // ID 0 so HTTP caches can share answers (RFC 8484 §4.1); the caller's goes back on the answer.
    return { method: "GET", path: `${options.path}${sep}dns=${base64Url(withId(message, 0))}` };
  }

  async function request(entry: PooledSession, message: Uint8Array, signal: AbortSignal) {
    entry.active++;
    if (entry.streams++ > 0) stats.reused++;
    else stats.fresh++;
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    try {
      const { status, contentType, body } = await entry.session.request(
        dohRequest(message),
        signal,
      );
      if (status < 200 || status > 299) {
        throw new UpstreamError("http_status", name, `${name}: HTTP ${status}`, { status });
      }
      if (!contentType.toLowerCase().startsWith(DNS_MESSAGE)) {
        throw new UpstreamError("malformed_answer", name, `${name}: content-type ${contentType}`);
      }
      if (options.method === "GET" && body.length >= 12) setId(body, readId(message));
      return body;
    } finally {
      entry.active--;
      if (entry.active === 0 && entry.session.usable()) {
        entry.idleTimer = setTimeout(() => {
          drop(entry);
          entry.session.close();
        }, options.idleTimeoutMs);
        entry.idleTimer.unref();
      }
    }
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
        try {
          await entry.session.ready;
          return await request(entry, padded, signal);
        } catch (error) {
          const died = !entry.session.usable() || !sessions.includes(entry);
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
