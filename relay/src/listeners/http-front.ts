// The HTTP server under the relay's DoH and origin listeners. It serves a
// Fetch handler (a Hono app's fetch) through @hono/node-server's request
// listener: HTTP/2 with HTTP/1.1 fallback (ALPN) over TLS when cert/key are
// set; plain HTTP/1.1 otherwise, plus h2c with prior knowledge (the
// connection preface is sniffed). It applies the stream-listener tuning:
// max_connections; read_timeout for the TLS handshake, for the first
// request's headers (and every request's on plain HTTP/1.1); idle_timeout on
// a connection with no request in flight; max_queries_per_connection. The
// apps bound how long a body may take (408).

import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import {
  createServer as createHttp1Server,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import {
  createServer as createH2cServer,
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { getRequestListener, RequestError } from "@hono/node-server";
import type { StreamListenerConfig } from "../../../shared/config/schema.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { listenOn } from "./bind.ts";
import { createPending } from "./pending.ts";
import type { Listener } from "./udp.ts";

type FrontRequest = IncomingMessage | Http2ServerRequest;
type FrontResponse = ServerResponse | Http2ServerResponse;
type Handle = (req: FrontRequest, res: FrontResponse) => void;
type FrontConfig = StreamListenerConfig & { cert?: string; key?: string };

export interface HttpFrontOptions {
  /** Listener name: connection metrics and log lines. */
  name: string;
  config: FrontConfig;
  /** The handler (a Hono app's fetch); its env holds Node's request and response. */
  fetch: Parameters<typeof getRequestListener>[0];
  metrics: RelayMetrics;
  logger: Logger;
}

/** One client connection: an HTTP/1.1 socket or an HTTP/2 session. */
interface Connection {
  inFlight: number;
  served: number;
  /** Closes the connection (gracefully for HTTP/2). */
  end(): void;
  /** Restarts the idle clock. */
  rearm(): void;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Starts the server; `close()` waits for the requests in flight, then drops
 * every connection.
 */
export async function startHttpFront(options: HttpFrontOptions): Promise<Listener> {
  const { config, metrics, logger, name } = options;
  const pending = createPending();
  const serve = getRequestListener(options.fetch, {
    // The relay's own fetch calls keep the platform's Request and Response.
    overrideGlobalObjects: false,
    errorHandler(error) {
      // A request no URL can be made of (a bad Host header, say) is the client's fault.
      if (error instanceof RequestError) return new Response("bad request\n", { status: 400 });
      logger.warn(`${name} request failed`, { error });
      return new Response(null, { status: 500 });
    },
  });
  const tracker = createConnectionTracker(config);
  const handle: Handle = (req, res) => {
    pending.add();
    res.once("close", () => pending.done());
    tracker.onRequest(req, res);
    serve(req, res).catch((error) => {
      logger.warn(`${name} request failed`, { error });
      res.destroy();
    });
  };
  const { server, closeExtra } =
    config.cert !== undefined && config.key !== undefined
      ? secureServer(config, handle, tracker)
      : plainServer(config, handle, tracker);
  const sockets = new Set<Socket>();
  server.maxConnections = config.max_connections;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    metrics.connection(name, 1);
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      sockets.delete(socket);
      metrics.connection(name, -1);
    });
  });
  server.on("error", (error) => logger.error(`${name} listener error`, { error }));
  const bound = await listenOn(server, config.addr, config.reuse_port);
  return {
    name,
    address: bound.address,
    port: bound.port,
    stop() {
      server.close();
    },
    async close() {
      await pending.idle();
      closeExtra();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}

type Tracker = ReturnType<typeof createConnectionTracker>;

/** Idle timeouts and max_queries_per_connection for sockets and HTTP/2 sessions. */
function createConnectionTracker(config: FrontConfig) {
  const connections = new WeakMap<object, Connection>();
  const track = (
    key: object,
    end: () => void,
    arm: (onIdle: () => void) => void,
    rearm: () => void,
  ) => {
    const connection: Connection = { inFlight: 0, served: 0, end, rearm };
    connections.set(key, connection);
    const onIdle = () => {
      if (connection.inFlight === 0) end();
      else arm(onIdle); // look again one idle period later
    };
    arm(onIdle);
  };
  return {
    socket: (socket: Socket) =>
      track(
        socket,
        () => socket.destroy(),
        (onIdle) => {
          socket.setTimeout(config.idle_timeout);
          socket.once("timeout", onIdle);
        },
        () => socket.setTimeout(config.idle_timeout),
      ),
    session: (session: Http2Session) =>
      track(
        session,
        () => session.close(),
        (onIdle) => session.setTimeout(config.idle_timeout, onIdle),
        () => session.setTimeout(config.idle_timeout),
      ),
    /** Counts a request on its connection; the last one allowed closes it when answered. */
    onRequest(req: FrontRequest, res: FrontResponse) {
      const key = "stream" in req ? req.stream.session : req.socket;
      const connection = key ? connections.get(key) : undefined;
      if (!connection) return;
      connection.inFlight++;
      connection.served++;
      const limit = config.max_queries_per_connection;
      const last = limit > 0 && connection.served >= limit;
      if (last && !("stream" in req)) (res as ServerResponse).shouldKeepAlive = false;
      res.once("close", () => {
        connection.inFlight--;
        if (connection.inFlight > 0) return;
        if (last) connection.end();
        else connection.rearm(); // after Node's own keep-alive timer, which runs longer
      });
    },
  };
}

/**
 * HTTP/2 with HTTP/1.1 fallback over TLS. Node's HTTP/1.1 header deadline
 * does not reach this server, so a connection whose first request's headers
 * have not arrived within read_timeout of the handshake is dropped here.
 */
function secureServer(config: FrontConfig, handle: Handle, tracker: Tracker) {
  const awaitingHeaders = new WeakMap<Socket, () => void>();
  const h2 = createSecureServer(
    {
      allowHTTP1: true,
      cert: readFileSync(config.cert as string),
      key: readFileSync(config.key as string),
      handshakeTimeout: config.read_timeout,
    },
    (req, res) => {
      // The HTTP/1.1 fallback's requests are Node's IncomingMessage, on the TLS socket.
      if (req.httpVersionMajor === 1) awaitingHeaders.get(req.socket)?.();
      handle(req, res);
    },
  );
  const headerDeadline = (drop: () => void) => {
    const timer = setTimeout(drop, config.read_timeout);
    return () => clearTimeout(timer);
  };
  h2.on("secureConnection", (socket: TLSSocket) => {
    // HTTP/2 connections are tracked by their session instead.
    if (socket.alpnProtocol === "h2") return;
    tracker.socket(socket);
    const clear = headerDeadline(() => socket.destroy());
    awaitingHeaders.set(socket, clear);
    socket.once("close", clear);
  });
  h2.on("session", (session: Http2Session) => {
    tracker.session(session);
    const clear = headerDeadline(() => session.destroy());
    session.once("stream", clear);
    session.once("close", clear);
  });
  return { server: h2 as Server, closeExtra: () => {} };
}

/** Plain HTTP/1.1, and h2c for connections that open with the HTTP/2 preface. */
function plainServer(config: FrontConfig, handle: Handle, tracker: Tracker) {
  const http1 = createHttp1Server(
    {
      headersTimeout: config.read_timeout,
      requestTimeout: config.read_timeout,
      connectionsCheckingInterval: Math.min(1000, config.read_timeout),
      keepAliveTimeout: config.idle_timeout,
    },
    handle,
  );
  // It never listens itself (connections come from the sniffer below), but
  // its header and request deadlines are checked from "listening" on.
  http1.emit("listening");
  const h2c = createH2cServer(handle);
  h2c.on("session", tracker.session);
  const dispatch = (socket: Socket) => {
    let seen = Buffer.alloc(0);
    const deadline = setTimeout(() => socket.destroy(), config.read_timeout);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const h2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (h2 && n < H2_PREFACE.length) return; // not sure yet
      clearTimeout(deadline);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.pause();
      socket.unshift(seen);
      if (h2) {
        // The session takes the sniffed bytes from the socket's buffer.
        h2c.emit("connection", socket);
      } else {
        tracker.socket(socket);
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    const onClose = () => clearTimeout(deadline);
    socket.on("data", onData);
    socket.on("close", onClose);
  };
  return { server: createNetServer(dispatch), closeExtra: () => http1.close(() => {}) };
}
