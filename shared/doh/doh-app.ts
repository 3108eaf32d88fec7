// The DoH HTTP surface (RFC 8484 + JSON API), as a Hono app both fronts
// serve: the edge worker directly, the relay's DoH listener through
// @hono/node-server. What differs per runtime comes in as a port: how to
// learn the client's address (Hono's GetConnInfo).

import { type Context, Hono } from "hono";
import type { GetConnInfo } from "hono/conninfo";
import { padAnswerFor } from "../dns/edns-options.ts";
import { buildErrorResponse, EdeCode, minTtl, Rcode, readRcode } from "../dns/wire.ts";
import { DNS_JSON, DNS_MESSAGE, DOH_PATH, readDohRequest, readJsonQuery } from "./doh-request.ts";
import { toJsonAnswer } from "./json-answer.ts";

export interface DohResolveContext {
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  request: Request;
  /** The client's IP address, when the runtime's getConnInfo knows it. */
  clientAddress: string | undefined;
}

export interface DohAppOptions {
  /** Answers a query. Never rejects for DNS failures: those are DNS answers. */
  resolve(query: Uint8Array, context: DohResolveContext): Promise<Uint8Array>;
  /** Reports an unexpected error (the client still gets SERVFAIL). */
  onError?(error: unknown, request: Request): void;
  /** Where wire-format DoH is served; DOH_PATH ("/dns-query") by default. */
  path?: string;
  /** The runtime's connection info (the relay's: @hono/node-server/conninfo). */
  getConnInfo?: GetConnInfo;
  /** How long a POST body may take to arrive (408 after); unbounded when unset. */
  bodyTimeoutMs?: number;
}

/**
 * CORS, so that pages may ask from any origin: on every response, set where
 * the response is made (a middleware that sets headers around the handler
 * makes Hono build every response twice).
 */
const CORS = {
  "access-control-allow-origin": "*",
  "access-control-expose-headers": "content-type,cache-control",
} as const;

/** A preflight's answer: what a cross-origin DoH or JSON request may use, cached a day. */
const PREFLIGHT = {
  ...CORS,
  "access-control-allow-methods": "GET,POST,OPTIONS",
  "access-control-allow-headers": "content-type,accept",
  "access-control-max-age": "86400",
};

const text = (body: string, status: number) =>
  new Response(`${body}\n`, {
    status,
    headers: { ...CORS, "content-type": "text/plain; charset=utf-8" },
  });

/** RFC 8484 §5.1: freshness no longer than the smallest TTL; failures not at all. */
function cacheLifetime(response: Uint8Array): number {
  try {
    return readRcode(response) === Rcode.SERVFAIL ? 0 : (minTtl(response) ?? 0);
  } catch {
    return 0;
  }
}

export function createDohApp(options: DohAppOptions): Hono {
  const app = new Hono();
  app.options("*", () => new Response(null, { status: 204, headers: PREFLIGHT }));

  const path = options.path ?? DOH_PATH;
  const answer = async (query: Uint8Array, c: Context): Promise<Uint8Array> => {
    const request = c.req.raw;
    try {
      const clientAddress = options.getConnInfo?.(c).remote.address;
      return await options.resolve(query, { signal: request.signal, request, clientAddress });
    } catch (error) {
      options.onError?.(error, request);
      return buildErrorResponse(query, Rcode.SERVFAIL, {
        ede: { code: EdeCode.OTHER, text: "internal error" },
      });
    }
  };

  const respond = async (c: Context, parsed: Awaited<ReturnType<typeof readDohRequest>>) => {
    if (!parsed.ok) return text(parsed.message, parsed.status);
    const response = await answer(parsed.value.query, c);
    const ttl = cacheLifetime(response);
    const headers = { ...CORS, "cache-control": `max-age=${ttl}` };
    if (parsed.value.format === "json") {
      return new Response(JSON.stringify(toJsonAnswer(response)), {
        headers: { ...headers, "content-type": DNS_JSON },
      });
    }
    // RFC 8467 §4.1: a client that pads its query gets a padded answer.
    const body = padAnswerFor(parsed.value.query, response);
    return new Response(body as Uint8Array<ArrayBuffer>, {
      headers: { ...headers, "content-type": DNS_MESSAGE },
    });
  };

  app.on(["GET", "POST"], path, async (c) =>
    respond(c, await readDohRequest(c.req.raw, options.bodyTimeoutMs)),
  );
  app.all(path, () => text("method not allowed: use GET or POST", 405));
  app.get("/resolve", async (c) => respond(c, readJsonQuery(new URL(c.req.url))));
  app.all("/resolve", () => text("method not allowed: use GET", 405));
  app.get("/healthz", () => text("ok", 200));
  app.notFound(() => text(`not found: DoH is served at ${path}`, 404));
  return app;
}
