// The TCP listener (and DoT: the same over TLS). RFC 7766: framed queries
// are read continuously and each answer is written as soon as it is ready
// (out of order). A connection closes after idle_timeout with nothing in
// flight, after max_queries_per_connection queries (once they are answered),
// or on a zero-length frame. max_connections caps open connections. DoT
// answers are padded for clients whose queries are (RFC 8467).

import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import type { StreamListenerConfig } from "../../../shared/config/schema.ts";
import { padAnswerFor } from "../../../shared/dns/edns-options.ts";
import { createFrameReader, frameMessage } from "../../../shared/dns/framing.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { QueryHandler } from "../query-handler.ts";
import { listenOn } from "./bind.ts";
import { createPending, type Pending } from "./pending.ts";
import type { Listener } from "./udp.ts";

export interface StreamListenerOptions {
  protocol: "tcp" | "dot";
  config: StreamListenerConfig;
  tls?: { cert: string; key: string };
  handler: QueryHandler;
  metrics: RelayMetrics;
  logger: Logger;
}

export async function startStreamListener(options: StreamListenerOptions): Promise<Listener> {
  const { config, logger, protocol } = options;
  const sockets = new Set<Socket>();
  let stopped = false;
  const context: ConnectionContext = {
    ...options,
    // RFC 8467: DoT answers are padded for clients that pad; plain TCP never.
    encrypted: protocol === "dot",
    pending: createPending(),
    stopped: () => stopped,
  };
  const onConnection = (socket: Socket) => {
    sockets.add(socket);
    options.metrics.connection(protocol, 1);
    socket.on("close", () => {
      sockets.delete(socket);
      options.metrics.connection(protocol, -1);
    });
    serveConnection(socket, context);
  };
  const server: Server = options.tls
    ? createTlsServer(
        {
          cert: readFileSync(options.tls.cert),
          key: readFileSync(options.tls.key),
          handshakeTimeout: config.read_timeout,
        },
        onConnection,
      )
    : createServer(onConnection);
  server.maxConnections = config.max_connections;
  server.on("error", (error) => logger.error(`${protocol} listener error`, { error }));
  const bound = await listenOn(server, config.addr, config.reuse_port);
  return {
    name: protocol,
    address: bound.address,
    port: bound.port,
    stop() {
      stopped = true;
      server.close();
    },
    async close() {
      stopped = true;
      await context.pending.idle();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Let written answers flush, then make sure nothing lingers.
        for (const socket of sockets) {
          socket.end();
          setTimeout(() => socket.destroy(), 500).unref();
        }
      });
    },
  };
}

interface ConnectionContext extends StreamListenerOptions {
  encrypted: boolean;
  pending: Pending;
  stopped(): boolean;
}

/** Reads framed queries from one connection and writes each answer when it is ready. */
function serveConnection(socket: Socket, context: ConnectionContext): void {
  const { config } = context;
  const client = new AbortController();
  const reader = createFrameReader();
  let inFlight = 0;
  let received = 0;
  let ending = false;
  let partialTimer: ReturnType<typeof setTimeout> | undefined;
  const limit = config.max_queries_per_connection;
  socket.setNoDelay(true);
  socket.setTimeout(config.idle_timeout);
  socket.on("timeout", () => {
    if (inFlight === 0) socket.destroy();
  });
  const maybeEnd = () => {
    if (ending && inFlight === 0) socket.end();
  };
  const onAnswered = () => {
    inFlight--;
    maybeEnd();
  };
  socket.on("data", (chunk) => {
    if (ending) return;
    let messages: Uint8Array[];
    try {
      messages = reader.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    } catch {
      socket.destroy();
      return;
    }
    for (const query of messages) {
      if (query.length === 0 || context.stopped()) {
        ending = true;
        break;
      }
      received++;
      inFlight++;
      answer(socket, query, client.signal, context).finally(onAnswered);
      if (limit > 0 && received >= limit) {
        ending = true;
        break;
      }
    }
    // A query that has started must arrive whole within read_timeout.
    if (reader.buffered > 0 && !partialTimer) {
      partialTimer = setTimeout(() => socket.destroy(), config.read_timeout);
    } else if (reader.buffered === 0 && partialTimer) {
      clearTimeout(partialTimer);
      partialTimer = undefined;
    }
    maybeEnd();
  });
  socket.on("error", () => socket.destroy());
  socket.on("close", () => {
    if (partialTimer) clearTimeout(partialTimer);
    client.abort(new Error("client closed the connection"));
  });
}

/** Answers one query on its connection, if that is still open; never rejects. */
async function answer(
  socket: Socket,
  query: Uint8Array,
  signal: AbortSignal,
  context: ConnectionContext,
): Promise<void> {
  const { handler, metrics, logger, protocol, encrypted, pending } = context;
  pending.add();
  try {
    const address = socket.remoteAddress ?? "";
    const answer = await handler.handle(query, { address, protocol, signal });
    if (answer && !socket.destroyed && socket.writable) {
      socket.write(frameMessage(encrypted ? padAnswerFor(query, answer) : answer));
    } else if (!answer) metrics.dropped(protocol, "unanswerable");
  } catch (error) {
    logger.error(`${protocol} query failed`, { error });
  } finally {
    pending.done();
  }
}
