// Pipelined DNS over persistent TCP or TLS connections (RFC 7766 §6.2.1.1,
// RFC 7858): up to `size` connections per upstream, each carrying up to
// `maxInFlight` queries at once, answers matched by a message ID the pool
// assigns (clients' IDs collide; theirs is restored on the way back).
//
// Connections stay open between queries and close after `idleTimeoutMs`
// without traffic, before servers' own idle timers (often ~10 s) fire. A
// connection the server closes or resets is dropped; the queries it carried
// are retried on a fresh one (DNS queries are idempotent), waiting out the
// reconnect backoff if their deadline allows. New queries finding no live
// connection during a backoff fail at once so the route can try elsewhere.
// Writes made in one event-loop turn leave in one segment (cork until the
// check phase). TLS sessions are resumed from the last ticket.

import { randomInt } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from "node:tls";
import { createFrameReader, frameMessage } from "../../../shared/dns/framing.ts";
import { readId, withId } from "../../../shared/dns/wire.ts";
import { UpstreamError } from "../../../shared/engine/errors.ts";
import type { LookupFunction } from "./bootstrap.ts";
import type { PooledUpstream, PoolStats } from "./pool-stats.ts";

export interface StreamPoolTls {
  servername?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

export interface StreamPoolOptions {
  name: string;
  host: string;
  port: number;
  /** DoT when set; plain TCP otherwise. */
  tls?: StreamPoolTls;
  /** Connections kept open at most. */
  size: number;
  /** Queries in flight per connection. */
  maxInFlight: number;
  /** A connection with nothing in flight for this long is closed, ms. */
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  /** Retries on a fresh connection for a query whose connection died. */
  maxRetries: number;
  /** Cap of the reconnect backoff, ms (default 5000). */
  maxBackoffMs?: number;
  /** Host name resolution (the bootstrap servers); the system resolver otherwise. */
  lookup?: LookupFunction | undefined;
}

interface Pending {
  resolve(answer: Uint8Array): void;
  reject(error: UpstreamError): void;
}

interface Connection {
  socket: Socket;
  ready: Promise<void>;
  /** Queries assigned (waiting for the connection or for their answer). */
  load: number;
  pending: Map<number, Pending>;
  sent: number;
  /** False once closing: takes no new queries. */
  usable: boolean;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  corked: boolean;
}

const TLS_ERROR = /certificate|cert_|self.signed|ssl|tls|handshake|verify/i;
const NETWORK_ERRORS = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

export function createStreamPool(options: StreamPoolOptions): PooledUpstream {
  const { name, size, maxInFlight } = options;
  const maxBackoff = options.maxBackoffMs ?? 5000;
  const conns: Connection[] = [];
  /** Closed connections not yet replaced: the next opens count as reconnects. */
  let lost = 0;
  let failures = 0;
  let nextConnectAt = 0;
  let tlsSession: Buffer | undefined;
  let closed = false;
  const slotWaiters = new Set<() => void>();
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };

  function remove(conn: Connection) {
    conn.usable = false;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    const i = conns.indexOf(conn);
    if (i >= 0) {
      conns.splice(i, 1);
      lost++;
      wakeOne();
    }
  }

  /** Ends a connection; its unanswered queries fail with `error` (and may retry). */
  function kill(conn: Connection, error: UpstreamError) {
    remove(conn);
    conn.socket.destroy();
    const waiting = [...conn.pending.values()];
    conn.pending.clear();
    for (const p of waiting) p.reject(error);
  }

  function open(): Connection {
    stats.opened++;
    if (lost > 0) {
      lost--;
      stats.reconnects++;
    }
    let socket: Socket;
    if (options.tls) {
      const tls: ConnectionOptions = {
        host: options.host,
        port: options.port,
        servername: options.tls.servername ?? (isIp(options.host) ? undefined : options.host),
        minVersion: "TLSv1.2",
      };
      if (options.lookup) tls.lookup = options.lookup;
      if (options.tls.ca) tls.ca = options.tls.ca;
      if (options.tls.cert) tls.cert = options.tls.cert;
      if (options.tls.key) tls.key = options.tls.key;
      if (tlsSession) tls.session = tlsSession;
      const tlsSocket = tlsConnect(tls);
      tlsSocket.on("session", (session: Buffer) => {
        tlsSession = session;
      });
      socket = tlsSocket;
    } else {
      socket = netConnect({
        host: options.host,
        port: options.port,
        ...(options.lookup ? { lookup: options.lookup } : {}),
      });
    }
    socket.setNoDelay(true);
    const conn: Connection = {
      socket,
      load: 0,
      pending: new Map(),
      sent: 0,
      usable: true,
      idleTimer: undefined,
      corked: false,
      ready: Promise.resolve(),
    };
    let isReady = false;
    conn.ready = new Promise<void>((resolve, reject) => {
      let stage: "connect" | "tls" = "connect";
      let timer = setTimeout(
        () => fail(new UpstreamError("connect", name, `${name}: connect timeout`)),
        options.connectTimeoutMs,
      );
      const fail = (error: UpstreamError) => {
        clearTimeout(timer);
        reject(error);
        kill(conn, error);
      };
      const ready = () => {
        clearTimeout(timer);
        isReady = true;
        failures = 0;
        attach(conn);
        resolve();
      };
      socket.once("connect", () => {
        if (!options.tls) return ready();
        stage = "tls";
        clearTimeout(timer);
        timer = setTimeout(
          () => fail(new UpstreamError("tls", name, `${name}: TLS handshake timeout`)),
          options.handshakeTimeoutMs,
        );
      });
      socket.once("secureConnect", () => {
        if ((socket as TLSSocket).isSessionReused()) stats.resumed++;
        ready();
      });
      socket.on("error", (error) => {
        if (isReady) {
          kill(conn, new UpstreamError("read", name, undefined, { cause: error }));
          return;
        }
        // A reset or refusal is the network's doing even mid-handshake (a
        // server going down); certificate and protocol failures are TLS's.
        const network = NETWORK_ERRORS.has((error as NodeJS.ErrnoException).code ?? "");
        const code =
          !network && (stage === "tls" || TLS_ERROR.test(String(error))) ? "tls" : "connect";
        fail(new UpstreamError(code, name, undefined, { cause: error }));
      });
      socket.on("close", () => {
        const error = new UpstreamError(isReady ? "read" : "connect", name, `${name}: closed`);
        if (isReady) kill(conn, error);
        else fail(error);
      });
    });
    conn.ready.catch(() => {
      failures++;
      nextConnectAt = Date.now() + Math.min(maxBackoff, 50 * 2 ** Math.min(failures, 10));
    });
    conns.push(conn);
    return conn;
  }

  /** Read side and lifecycle of a connection that finished its handshake. */
  function attach(conn: Connection) {
    const { socket } = conn;
    const reader = createFrameReader();
    socket.on("data", (chunk: Buffer) => {
      const frames = reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      for (const answer of frames) {
        if (answer.length < 12) {
          kill(conn, new UpstreamError("malformed_answer", name, `${name}: short frame`));
          return;
        }
        const id = readId(answer);
        const p = conn.pending.get(id);
        if (!p) continue; // a late answer to an abandoned query
        conn.pending.delete(id);
        // The caller checks the answer (question, format) and classifies a bad one.
        p.resolve(answer);
      }
    });
    socket.on("end", () =>
      kill(conn, new UpstreamError("read", name, `${name}: connection closed by the server`)),
    );
  }

  function release(conn: Connection) {
    conn.load--;
    wakeOne();
    if (conn.load === 0 && conn.usable) {
      if (conn.idleTimer) clearTimeout(conn.idleTimer);
      conn.idleTimer = setTimeout(() => {
        if (conn.load > 0) return;
        remove(conn);
        conn.socket.end();
      }, options.idleTimeoutMs);
      conn.idleTimer.unref();
    }
  }

  function wakeOne() {
    for (const wake of slotWaiters) {
      slotWaiters.delete(wake);
      wake();
      return;
    }
  }

  /** The least loaded usable connection, a new one, or undefined when all are full. */
  function pick(): Connection | undefined {
    let best: Connection | undefined;
    for (const c of conns) if (c.usable && (!best || c.load < best.load)) best = c;
    if (best && best.load === 0) return best;
    if (conns.length < size) {
      if (Date.now() >= nextConnectAt) return open();
      if (!best) throw new UpstreamError("connect", name, `${name}: reconnect backoff`);
    }
    return best && best.load < maxInFlight ? best : undefined;
  }

  async function acquire(signal: AbortSignal): Promise<Connection> {
    for (;;) {
      const conn = pick();
      if (conn) {
        conn.load++;
        if (conn.idleTimer) clearTimeout(conn.idleTimer);
        try {
          await untilSettled(conn.ready, signal, name);
        } catch (error) {
          release(conn);
          throw error;
        }
        return conn;
      }
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          slotWaiters.delete(wake);
          reject(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
        };
        slotWaiters.add(wake);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  function flushSoon(conn: Connection) {
    if (conn.corked) return;
    conn.corked = true;
    conn.socket.cork();
    setImmediate(() => {
      conn.corked = false;
      conn.socket.uncork();
    });
  }

  function exchange(conn: Connection, query: Uint8Array, signal: AbortSignal) {
    return new Promise<Uint8Array>((resolve, reject) => {
      if (!conn.usable) {
        reject(new UpstreamError("read", name, `${name}: connection closed`));
        return;
      }
      let id = randomInt(0x10000);
      while (conn.pending.has(id)) id = (id + 1) & 0xffff;
      const wire = withId(query, id);
      const onAbort = () => {
        conn.pending.delete(id);
        reject(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      conn.pending.set(id, {
        resolve(answer) {
          signal.removeEventListener("abort", onAbort);
          resolve(answer);
        },
        reject(error) {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      });
      if (conn.sent++ > 0) stats.reused++;
      else stats.fresh++;
      flushSoon(conn);
      conn.socket.write(frameMessage(wire));
    });
  }

  return {
    name,
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      if (signal.aborted)
        throw new UpstreamError("aborted", name, undefined, { cause: signal.reason });
      if (message.length < 12 || message.length > 0xffff)
        throw new UpstreamError("bad_query", name);
      // A query whose connection died under it is retried on a fresh one
      // (up to maxRetries), waiting out reconnect failures while its
      // deadline allows: a server restart costs latency, not answers.
      let retries = 0;
      for (;;) {
        let conn: Connection;
        try {
          conn = await acquire(signal);
        } catch (error) {
          const recovering =
            retries > 0 && error instanceof UpstreamError && error.code === "connect";
          if (!recovering || signal.aborted || closed) throw error;
          await sleepUntil(Math.max(nextConnectAt, Date.now() + 10), signal, name);
          continue;
        }
        try {
          const answer = await exchange(conn, message, signal);
          return withId(answer, readId(message));
        } catch (error) {
          const died =
            error instanceof UpstreamError &&
            (error.code === "read" || error.code === "malformed_answer") &&
            !conn.usable;
          if (!died || signal.aborted || closed || retries >= options.maxRetries) throw error;
          retries++;
        } finally {
          release(conn);
        }
      }
    },
    poolStats(): PoolStats {
      let inFlight = 0;
      let open = 0;
      for (const c of conns) {
        inFlight += c.pending.size;
        if (c.sent > 0 || c.usable) open++;
      }
      return { open, inFlight, ...stats };
    },
    async close() {
      closed = true;
      for (const conn of [...conns]) kill(conn, new UpstreamError("closed", name));
    },
  };
}

function isIp(host: string): boolean {
  return host.includes(":") || /^\d+\.\d+\.\d+\.\d+$/.test(host);
}

/** `promise`, or an `aborted` UpstreamError as soon as the signal fires. */
function untilSettled(promise: Promise<void>, signal: AbortSignal, name: string): Promise<void> {
  if (signal.aborted) {
    return Promise.reject(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
  }
  return new Promise((resolve, reject) => {
    const onAbort = () =>
      reject(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** Waits until the wall-clock time `at` (no wait when past), or rejects on abort. */
function sleepUntil(at: number, signal: AbortSignal, name: string): Promise<void> {
  const ms = at - Date.now();
  if (ms <= 0) return Promise.resolve();
  return untilSettled(new Promise((resolve) => setTimeout(resolve, ms)), signal, name);
}
