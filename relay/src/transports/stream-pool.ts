// Pipelined DNS over persistent TCP or TLS connections (RFC 7766 §6.2.1.1,
// RFC 7858): the pool core (shared/pool/pool.ts) with a stream driver. Each
// connection carries many queries at once, answers matched by a message ID
// the connection assigns (clients' IDs collide; theirs is restored on the
// way back). Writes made in one event-loop turn leave in one segment (cork
// until the check phase). TLS sessions are resumed from the last ticket.

import { Buffer } from "node:buffer";
import { randomInt } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { padQuery } from "../../../shared/dns/edns-options.ts";
import { createFrameReader, frameMessage } from "../../../shared/dns/framing.ts";
import { readId, setId } from "../../../shared/dns/wire.ts";
import type { Clock } from "../../../shared/engine/clock.ts";
import { abortedBy, UpstreamError } from "../../../shared/engine/errors.ts";
import type { OpenContext, PoolConnection, PoolDriver } from "../../../shared/pool/driver.ts";
import { createOpening } from "../../../shared/pool/opening.ts";
import { createPool, type Pool } from "../../../shared/pool/pool.ts";
import type { LookupFunction } from "./bootstrap.ts";
import { relayClock } from "./relay-clock.ts";
import { openErrorCode, type TlsSettings, tlsConnectOptions } from "./tls-options.ts";

export type StreamPoolTls = TlsSettings;

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
  clock?: Clock;
}

interface Pending {
  resolve(answer: Uint8Array): void;
  reject(error: UpstreamError): void;
  /** The caller's message ID, put back on the answer. */
  callerId: number;
  signal: AbortSignal;
  /** On `signal`, removed once the query settles otherwise. */
  onAbort(): void;
}

export function createStreamPool(options: StreamPoolOptions): Pool {
  const clock = options.clock ?? relayClock;
  return createPool(createStreamDriver({ ...options, clock }), {
    name: options.name,
    size: options.size,
    maxInFlight: options.maxInFlight,
    idleTimeoutMs: options.idleTimeoutMs,
    maxRetries: options.maxRetries,
    ...(options.maxBackoffMs !== undefined ? { maxBackoffMs: options.maxBackoffMs } : {}),
    clock,
  });
}

/** Opens TCP or TLS connections, each pipelining queries by its own message IDs. */
export function createStreamDriver(options: StreamPoolOptions & { clock: Clock }): PoolDriver {
  let tlsSession: Buffer | undefined;
  return {
    prepare: (message) => (options.tls ? padQuery(message) : message),
    async open(context) {
      const socket = options.tls
        ? tlsConnect(
            tlsConnectOptions(options.host, options.port, options.tls, {
              lookup: options.lookup,
              session: tlsSession,
            }),
          )
        : netConnect({
            host: options.host,
            port: options.port,
            ...(options.lookup ? { lookup: options.lookup } : {}),
          });
      socket.on("session", (session: Buffer) => {
        tlsSession = session;
      });
      socket.setNoDelay(true);
      try {
        await opened(socket, options, context.signal);
      } catch (error) {
        socket.destroy();
        throw error;
      }
      return streamConnection(socket, options.name, context);
    },
  };
}

/**
 * Resolves once `socket` is connected (and its TLS handshake done), within
 * connectTimeoutMs and then handshakeTimeoutMs; rejects with `connect` or `tls`.
 */
function opened(
  socket: Socket,
  options: StreamPoolOptions & { clock: Clock },
  signal: AbortSignal,
): Promise<void> {
  const { name } = options;
  const opening = createOpening(name, options.clock, signal);
  let handshaking = false;
  opening.deadline(options.connectTimeoutMs, () => {
    return new UpstreamError("connect", name, `${name}: connect timeout`);
  });
  socket.once("connect", () => {
    if (!options.tls) return opening.finish();
    handshaking = true;
    opening.deadline(options.handshakeTimeoutMs, () => {
      return new UpstreamError("tls", name, `${name}: TLS handshake timeout`);
    });
  });
  socket.once("secureConnect", () => opening.finish());
  // These stay (inert once finished) so no error goes unheard before the
  // connection's own listeners take over.
  socket.on("error", (error) => {
    const code = openErrorCode(error, handshaking);
    opening.finish(new UpstreamError(code, name, undefined, { cause: error }));
  });
  socket.on("close", () => opening.finish(new UpstreamError("connect", name, `${name}: closed`)));
  return opening.done;
}

/** Settles the query an answer is for; a late answer to an abandoned query is dropped. */
function deliver(pending: Map<number, Pending>, answer: Uint8Array) {
  const wanted = pending.get(readId(answer));
  if (!wanted) return;
  pending.delete(readId(answer));
  wanted.signal.removeEventListener("abort", wanted.onAbort);
  // The frame is ours alone (a plain view of this chunk): the caller's ID goes back in place.
  setId(answer, wanted.callerId);
  // The caller checks the answer (question, format) and classifies a bad one.
  wanted.resolve(answer);
}

/** A connected socket as a pool connection: frames out, answers matched back by ID. */
function streamConnection(socket: Socket, name: string, context: OpenContext): PoolConnection {
  const pending = new Map<number, Pending>();
  const reader = createFrameReader();
  let nextId = randomInt(0x10000);
  let corked = false;
  let gone = false;

  /** Fails everything on the connection and leaves the pool (once). */
  const fail = (error: UpstreamError) => {
    if (gone) return;
    gone = true;
    socket.destroy();
    context.lost(error);
    const waiting = [...pending.values()];
    pending.clear();
    for (const p of waiting) {
      p.signal.removeEventListener("abort", p.onAbort);
      p.reject(error);
    }
  };
  socket.on("data", (chunk: Buffer) => {
    for (const answer of reader.push(chunk)) {
      if (answer.length < 12) {
        return fail(new UpstreamError("read", name, `${name}: a frame too short for DNS`));
      }
      deliver(pending, answer);
    }
  });
  socket.on("error", (error) => fail(new UpstreamError("read", name, undefined, { cause: error })));
  socket.on("end", () =>
    fail(new UpstreamError("read", name, `${name}: connection closed by the server`)),
  );
  socket.on("close", () => fail(new UpstreamError("read", name, `${name}: closed`)));

  const flushSoon = () => {
    if (corked) return;
    corked = true;
    socket.cork();
    setImmediate(() => {
      corked = false;
      socket.uncork();
    });
  };

  return {
    resumed: (socket as Partial<TLSSocket>).isSessionReused?.() ?? false,
    exchange(wire, _message, signal) {
      if (gone) return Promise.reject(new UpstreamError("send", name, `${name}: closed`));
      let id = nextId;
      while (pending.has(id)) id = (id + 1) & 0xffff;
      nextId = (id + 1) & 0xffff;
      const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
      const entry: Pending = {
        resolve,
        reject,
        callerId: readId(wire),
        signal,
        onAbort: () => {
          if (pending.get(id) !== entry) return;
          pending.delete(id);
          reject(abortedBy(signal, name));
        },
      };
      pending.set(id, entry);
      signal.addEventListener("abort", entry.onAbort, { once: true });
      flushSoon();
      socket.write(frameMessage(wire, id, Buffer.allocUnsafe));
      return promise;
    },
    close(graceful) {
      if (gone) return;
      if (graceful) {
        gone = true;
        socket.end();
      } else fail(new UpstreamError("closed", name));
    },
  };
}
