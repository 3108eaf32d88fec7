// The origin endpoint for the edge worker (README "Run the relay on a LAN
// host", docs/architecture.md): `POST /origin/<upstream>` with an
// application/dns-message body and `Authorization: Bearer <token>`; the relay
// answers with its own transport for that upstream. A Hono app served through
// @hono/node-server on the relay's HTTP front. The token is compared in
// constant time and never logged.

import { createHash, timingSafeEqual } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Http2Bindings, HttpBindings } from "@hono/node-server";
import { type Context, Hono } from "hono";
import { ConfigError, type OriginListenerConfig } from "../../../shared/config/schema.ts";
import { forUpstream, fromUpstream, padAnswerFor } from "../../../shared/dns/edns-options.ts";
import { isQuery, MAX_MESSAGE_SIZE, readHeader } from "../../../shared/dns/wire.ts";
import { readBoundedBody } from "../../../shared/doh/bounded-body.ts";
import { DNS_MESSAGE } from "../../../shared/doh/doh-request.ts";
import { toUpstreamError, UpstreamError } from "../../../shared/engine/errors.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { rcodeName } from "../query-handler.ts";
import { startHttpFront } from "./http-front.ts";
import type { Listener } from "./udp.ts";

/** The bearer token from `listen.origin.token_env`; a ConfigError naming that key when unset. */
export function readOriginToken(
  config: OriginListenerConfig,
  env: Record<string, string | undefined> = process.env,
): string {
  const token = env[config.token_env];
  if (token === undefined || token === "") {
    throw new ConfigError([
      {
        path: ["listen", "origin", "token_env"],
        message: `environment variable ${config.token_env} is empty or not set; the origin endpoint needs a bearer token`,
      },
    ]);
  }
  return token;
}

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();

/** Compares the presented Authorization header with the token in constant time. */
function createTokenCheck(token: string): (authorization: string | undefined) => boolean {
  const expected = digest(`Bearer ${token}`);
  return (authorization) => {
    // Hashing both sides keeps the comparison length-independent.
    const presented = digest(normalizeBearer(authorization ?? ""));
    return timingSafeEqual(presented, expected);
  };
}

/** "bearer   abc" → "Bearer abc" (the scheme is case-insensitive, RFC 7235). */
function normalizeBearer(value: string): string {
  const match = /^bearer[ \t]+(.*)$/i.exec(value.trim());
  return match ? `Bearer ${match[1]}` : value;
}

type OriginEnv = { Bindings: HttpBindings | Http2Bindings };

const text = (status: number, message: string, headers: Record<string, string> = {}) =>
  new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });

/** Ends an HTTP/1.1 connection after this response (HTTP/2 streams are left alone). */
function closeAfter(c: Context<OriginEnv>): void {
  const outgoing = c.env.outgoing;
  if ("shouldKeepAlive" in outgoing) outgoing.shouldKeepAlive = false;
}

/** The upstream's answer without its hop-by-hop options; a malformed OPT is the upstream's fault. */
function answerFrom(upstream: string, answer: Uint8Array): Uint8Array {
  try {
    return fromUpstream(answer);
  } catch (error) {
    throw new UpstreamError("malformed_answer", upstream, `${upstream}: malformed OPT`, {
      cause: error,
    });
  }
}

/** Why bytes are not a DNS query, or undefined when they are one. */
function notAQuery(body: Uint8Array): string | undefined {
  if (!isQuery(body)) {
    return body.length < 12 ? "shorter than a DNS header" : "not a DNS query (QR bit set)";
  }
  if (readHeader(body).qdcount !== 1) return "not a DNS query: expected one question";
  return undefined;
}

export interface OriginAppOptions {
  config: Pick<OriginListenerConfig, "read_timeout" | "write_timeout">;
  /** The current transports by upstream name (follows reloads). */
  transports: () => ReadonlyMap<string, Upstream>;
  token: string;
  /** True once the listener stops: every request gets 503. */
  stopped: () => boolean;
  metrics: RelayMetrics;
  logger: Logger;
}

/**
 * The origin endpoint's HTTP surface. Checks run in this order, so nothing
 * about the upstreams shows before the token does: 503 when stopping, 401,
 * 404 unknown upstream, 405, 415, 413, 408 stalled body, 400, then 200 or 502.
 */
export function createOriginApp(options: OriginAppOptions): Hono<OriginEnv> {
  const { config, metrics, logger } = options;
  const authorized = createTokenCheck(options.token);
  const app = new Hono<OriginEnv>();
  app.use(async (c, next) => {
    // No Date header: identical requests get byte-identical refusals.
    c.env.outgoing.sendDate = false;
    if (options.stopped()) {
      closeAfter(c);
      return text(503, "shutting down");
    }
    if (!authorized(c.req.header("authorization"))) {
      metrics.refused("origin_unauthorized");
      closeAfter(c);
      return text(401, "unauthorized", { "www-authenticate": "Bearer" });
    }
    await next();
  });
  app.all("/origin/:upstream", async (c) => {
    const upstream = options.transports().get(c.req.param("upstream"));
    if (!upstream) return text(404, "unknown upstream");
    if (c.req.method !== "POST") return text(405, "use POST", { allow: "POST" });
    const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== DNS_MESSAGE) return text(415, `content-type must be ${DNS_MESSAGE}`);
    let body: Uint8Array | "too_large";
    try {
      body = await readBoundedBody(c.req.raw, MAX_MESSAGE_SIZE, bodyDeadline(c, config));
    } catch {
      closeAfter(c);
      return text(408, "request body not received within read_timeout");
    }
    if (body === "too_large") {
      closeAfter(c);
      return text(413, "body larger than 65535 bytes");
    }
    const problem = notAQuery(body);
    if (problem) return text(400, problem);
    return answer(c, upstream, body);
  });
  app.notFound(() => text(404, "unknown upstream"));

  /** Asks the upstream; 502 naming the error code when it fails. */
  async function answer(c: Context<OriginEnv>, upstream: Upstream, body: Uint8Array) {
    // The worker → relay hop ends here: its OPT options go no further (edns-options.ts).
    let query: Uint8Array;
    try {
      query = forUpstream(body);
    } catch {
      return text(400, "not a DNS query: malformed OPT record");
    }
    const client = c.req.raw.signal;
    const budget = AbortSignal.timeout(config.write_timeout);
    const started = performance.now();
    try {
      const answer = await upstream.query(query, AbortSignal.any([client, budget]));
      metrics.query("origin", rcodeName(answer), (performance.now() - started) / 1000);
      const bytes = padAnswerFor(body, answerFrom(upstream.name, answer));
      return new Response(bytes as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": DNS_MESSAGE, "cache-control": "no-store" },
      });
    } catch (error) {
      if (client.aborted) return new Response(null, { status: 499 }); // nobody to tell
      const failure = toUpstreamError(error, upstream.name);
      const code = budget.aborted && failure.code === "aborted" ? "timeout" : failure.code;
      metrics.dropped("origin", "upstream_error");
      logger.info("origin query failed", { upstream: upstream.name, code });
      return text(502, `upstream error: ${code}`);
    }
  }
  return app;
}

/** Aborts when the client goes away or its body has not arrived within read_timeout. */
function bodyDeadline(c: Context<OriginEnv>, config: OriginAppOptions["config"]): AbortSignal {
  return AbortSignal.any([c.req.raw.signal, AbortSignal.timeout(config.read_timeout)]);
}

export async function startOriginListener(
  options: Omit<OriginAppOptions, "stopped" | "config"> & { config: OriginListenerConfig },
): Promise<Listener> {
  const { config, metrics, logger } = options;
  if (options.token === "") {
    throw new ConfigError([
      { path: ["listen", "origin", "token_env"], message: "the bearer token is empty" },
    ]);
  }
  let stopped = false;
  const app = createOriginApp({ ...options, stopped: () => stopped });
  const front = await startHttpFront({ name: "origin", config, fetch: app.fetch, metrics, logger });
  return {
    ...front,
    stop() {
      stopped = true;
      front.stop();
    },
    async close() {
      stopped = true;
      await front.close();
    },
  };
}
