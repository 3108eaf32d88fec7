// The DoH listener: serves the shared Hono DoH app (RFC 8484 + JSON API)
// through Node's HTTP server (see http-front.ts: HTTP/2 with HTTP/1.1 fallback
// over TLS, plain HTTP/1.1 and h2c otherwise). A small adapter turns Node's request into a
// web Request (its signal aborts when the client goes away) and writes the
// web Response back.

import type { ServerResponse } from "node:http";
import type { DohListenerConfig } from "../../../shared/config/schema.ts";
import { createDohApp } from "../../../shared/doh/doh-app.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { QueryHandler } from "../query-handler.ts";
import { type FrontRequest, type FrontResponse, startHttpFront } from "./http-front.ts";
import { createPending } from "./pending.ts";
import type { Listener } from "./udp.ts";

const MAX_BODY = 65535 + 1;
const CLIENT_HEADER = "x-doh-relay-client";

/** Node request → web Request; the client's address goes in a header only we set. */
async function toRequest(
  req: FrontRequest,
  secure: boolean,
  path: string,
  signal: AbortSignal,
): Promise<Request> {
  const host = req.headers[":authority"] ?? req.headers.host ?? "localhost";
  const url = new URL(req.url ?? "/", `${secure ? "https" : "http"}://${host}`);
  // The app serves "/dns-query"; a configured path is mapped onto it.
  if (path !== "/dns-query" && url.pathname === path) url.pathname = "/dns-query";
  const headers = new Headers();
  for (const [key, value] of Object.entries(req.headers)) {
    if (key.startsWith(":") || value === undefined) continue;
    headers.set(key, Array.isArray(value) ? value.join(", ") : value);
  }
  headers.set(CLIENT_HEADER, req.socket?.remoteAddress ?? "");
  const method = req.method ?? "GET";
  const init: RequestInit = { method, headers, signal };
  if (method !== "GET" && method !== "HEAD") {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      chunks.push(chunk as Buffer);
      if (size > MAX_BODY) break; // the app answers 413 for an oversized body
    }
    const body = Buffer.concat(chunks);
    init.body = body.buffer.slice(body.byteOffset, body.byteOffset + body.length) as ArrayBuffer;
  }
  return new Request(url, init);
}

async function writeResponse(res: FrontResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, key) => {
    headers[key] = value;
  });
  const body = new Uint8Array(await response.arrayBuffer());
  headers["content-length"] = String(body.length);
  (res as ServerResponse).writeHead(response.status, headers);
  (res as ServerResponse).end(body);
}

export async function startDohListener(options: {
  config: DohListenerConfig;
  handler: QueryHandler;
  metrics: RelayMetrics;
  logger: Logger;
}): Promise<Listener> {
  const { config, handler, metrics, logger } = options;
  const app = createDohApp({
    async resolve(query, context) {
      const address = context.request.headers.get(CLIENT_HEADER) ?? "";
      const answer = await handler.handle(query, {
        address,
        protocol: "doh",
        signal: context.signal,
      });
      if (!answer) throw new Error("unanswerable query");
      return answer;
    },
    onError: (error) => logger.warn("doh request failed", { error }),
  });
  const secure = config.cert !== undefined && config.key !== undefined;
  const pending = createPending();

  const onRequest = async (req: FrontRequest, res: FrontResponse) => {
    const controller = new AbortController();
    res.on("close", () => controller.abort(new Error("client went away")));
    pending.add();
    try {
      const request = await toRequest(req, secure, config.path, controller.signal);
      const response = await app.fetch(request);
      await writeResponse(res, response);
    } catch (error) {
      logger.warn("doh adapter failed", { error });
      if (!res.headersSent) {
        (res as ServerResponse).writeHead(500);
        (res as ServerResponse).end();
      }
    } finally {
      pending.done();
    }
  };

  const front = await startHttpFront({ name: "doh", config, onRequest, metrics, logger });
  return {
    name: "doh",
    address: front.address,
    port: front.port,
    stop() {
      front.stop();
    },
    async close() {
      await pending.idle();
      await front.close();
    },
  };
}
