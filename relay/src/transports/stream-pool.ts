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
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { createFrameReader, frameMessage } from "../../../shared/dns/framing.ts";
import { readId, setId } from "../../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import { unsendable } from "../../../shared/engine/upstream.ts";
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

/** One query from the caller until it settles: waiting for a slot, queued on a connection still opening, or sent. */
interface Job {
  readonly message: Uint8Array;
  readonly signal: AbortSignal;
  readonly resolve: (answer: Uint8Array) => void;
  readonly reject: (error: UpstreamError) => void;
  readonly onAbort: () => void;
  retries: number;
  conn: Connection | undefined;
  /** The pool's ID on the wire once sent, else -1. */
  id: number;
  /** Waiting out a reconnect backoff. */
  timer: ReturnType<typeof setTimeout> | undefined;
  done: boolean;
}

interface Connection {
  socket: Socket;
  ready: boolean;
  /** Jobs assigned to it (queued, or sent and not yet answered). */
  load: number;
  /** Jobs assigned before the handshake finished. */
  queued: Job[];
  /** Sent jobs by the pool's ID. */
  pending: Map<number, Job>;
  nextId: number;
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
  /** Jobs waiting for a slot, first come first served. */
  const waiting = new Set<Job>();
  /** Jobs waiting out a reconnect backoff. */
  const parked = new Set<Job>();
  const stats = { opened: 0, resumed: 0, reconnects: 0, reused: 0, fresh: 0 };

  function remove(conn: Connection) {
    conn.usable = false;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    const i = conns.indexOf(conn);
    if (i >= 0) {
      conns.splice(i, 1);
      lost++;
      pump();
    }
  }

  /**
   * Ends a connection. Its queued jobs fail as a failed connect would; its
   * sent jobs as a dead connection (both may retry).
   */
  function kill(conn: Connection, error: UpstreamError) {
    remove(conn);
    conn.socket.destroy();
    const queued = conn.queued;
    const sent = [...conn.pending.values()];
    conn.queued = [];
    conn.pending.clear();
    for (const job of queued) {
      detach(job);
      acquireFailed(job, error);
    }
    for (const job of sent) {
      detach(job);
      exchangeFailed(job, error);
    }
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
      ready: false,
      load: 0,
      queued: [],
      pending: new Map(),
      nextId: randomInt(0x10000),
      sent: 0,
      usable: true,
      idleTimer: undefined,
      corked: false,
    };
    let stage: "connect" | "tls" = "connect";
    let timer = setTimeout(
      () => fail(new UpstreamError("connect", name, `${name}: connect timeout`)),
      options.connectTimeoutMs,
    );
    let failed = false;
    const fail = (error: UpstreamError) => {
      clearTimeout(timer);
      if (failed) return;
      failed = true;
      failures++;
      nextConnectAt = Date.now() + Math.min(maxBackoff, 50 * 2 ** Math.min(failures, 10));
      kill(conn, error);
    };
    const ready = () => {
      clearTimeout(timer);
      conn.ready = true;
      failures = 0;
      attach(conn);
      const queued = conn.queued;
      conn.queued = [];
      for (const job of queued) send(conn, job);
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
      if (conn.ready) {
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
      if (conn.ready) kill(conn, new UpstreamError("read", name, `${name}: closed`));
      else fail(new UpstreamError("connect", name, `${name}: closed`));
    });
    conns.push(conn);
    return conn;
  }

  /** Read side and lifecycle of a connection that finished its handshake. */
  function attach(conn: Connection) {
    const { socket } = conn;
    const reader = createFrameReader();
    socket.on("data", (chunk: Buffer) => {
      const frames = reader.push(chunk);
      for (const answer of frames) {
        if (answer.length < 12) {
          kill(conn, new UpstreamError("malformed_answer", name, `${name}: short frame`));
          return;
        }
        const job = conn.pending.get(readId(answer));
        if (!job) continue; // a late answer to an abandoned query
        conn.pending.delete(job.id);
        detach(job);
        settle(job);
        // The frame is ours alone (a plain view of this chunk): the caller's ID goes back in place.
        setId(answer, readId(job.message));
        // The caller checks the answer (question, format) and classifies a bad one.
        job.resolve(answer);
      }
    });
    socket.on("end", () =>
      kill(conn, new UpstreamError("read", name, `${name}: connection closed by the server`)),
    );
  }

  /** Frees the job's place on its connection. */
  function detach(job: Job) {
    const conn = job.conn;
    if (!conn) return;
    job.conn = undefined;
    job.id = -1;
    conn.load--;
    pump();
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

  function settle(job: Job) {
    job.done = true;
    job.signal.removeEventListener("abort", job.onAbort);
  }

  function rejectJob(job: Job, error: UpstreamError) {
    if (job.done) return;
    settle(job);
    job.reject(error);
  }

  /** Hands waiting jobs to connections with room, in arrival order. */
  function pump() {
    for (const job of waiting) {
      let conn: Connection | undefined;
      try {
        conn = pick();
      } catch (error) {
        waiting.delete(job);
        acquireFailed(job, error as UpstreamError);
        continue;
      }
      if (!conn) return;
      waiting.delete(job);
      assign(conn, job);
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

  function dispatch(job: Job) {
    if (closed) return rejectJob(job, new UpstreamError("closed", name));
    let conn: Connection | undefined;
    try {
      conn = waiting.size > 0 ? undefined : pick();
    } catch (error) {
      return acquireFailed(job, error as UpstreamError);
    }
    if (conn) assign(conn, job);
    else waiting.add(job);
  }

  function assign(conn: Connection, job: Job) {
    conn.load++;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    job.conn = conn;
    if (conn.ready) send(conn, job);
    else conn.queued.push(job);
  }

  function send(conn: Connection, job: Job) {
    let id = conn.nextId;
    while (conn.pending.has(id)) id = (id + 1) & 0xffff;
    conn.nextId = (id + 1) & 0xffff;
    conn.pending.set(id, job);
    job.id = id;
    if (conn.sent++ > 0) stats.reused++;
    else stats.fresh++;
    flushSoon(conn);
    conn.socket.write(frameMessage(job.message, id, Buffer.allocUnsafe));
  }

  /**
   * No connection for the job. A retry after a dead connection waits out
   * reconnect failures while its deadline allows: a server restart costs
   * latency, not answers. Otherwise the error is the caller's.
   */
  function acquireFailed(job: Job, error: UpstreamError) {
    const recovering = job.retries > 0 && error.code === "connect";
    if (!recovering || job.signal.aborted || closed) return rejectJob(job, error);
    job.timer = setTimeout(
      () => {
        job.timer = undefined;
        parked.delete(job);
        dispatch(job);
      },
      Math.max(nextConnectAt - Date.now(), 10),
    );
    parked.add(job);
  }

  /** The job's connection died under it: a fresh one takes it (queries are idempotent). */
  function exchangeFailed(job: Job, error: UpstreamError) {
    const died = error.code === "read" || error.code === "malformed_answer";
    if (!died || job.signal.aborted || closed || job.retries >= options.maxRetries) {
      return rejectJob(job, error);
    }
    job.retries++;
    dispatch(job);
  }

  function abort(job: Job) {
    if (job.done) return;
    waiting.delete(job);
    parked.delete(job);
    if (job.timer) clearTimeout(job.timer);
    const conn = job.conn;
    if (conn) {
      if (job.id >= 0) conn.pending.delete(job.id);
      else {
        const i = conn.queued.indexOf(job);
        if (i >= 0) conn.queued.splice(i, 1);
      }
      detach(job);
    }
    rejectJob(job, abortedBy(job.signal, name));
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

  return {
    name,
    query(message, signal) {
      if (closed) return Promise.reject(new UpstreamError("closed", name));
      if (signal.aborted) return Promise.reject(abortedBy(signal, name));
      const bad = unsendable(message, name);
      if (bad) return Promise.reject(bad);
      const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
      const job: Job = {
        message: options.tls ? padQuery(message) : message,
        signal,
        resolve,
        reject,
        onAbort: () => abort(job),
        retries: 0,
        conn: undefined,
        id: -1,
        timer: undefined,
        done: false,
      };
      signal.addEventListener("abort", job.onAbort, { once: true });
      dispatch(job);
      return promise;
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
      for (const job of [...waiting, ...parked]) {
        if (job.timer) clearTimeout(job.timer);
        rejectJob(job, new UpstreamError("closed", name));
      }
      waiting.clear();
      parked.clear();
    },
  };
}

function isIp(host: string): boolean {
  return host.includes(":") || /^\d+\.\d+\.\d+\.\d+$/.test(host);
}
