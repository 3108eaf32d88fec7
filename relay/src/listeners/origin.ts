// The origin endpoint for the edge worker (SPEC §6): `POST /origin/<upstream>`
// with an application/dns-message body and `Authorization: Bearer <token>`;
// the relay answers with its own transport for that upstream. The token is
// compared in constant time and never logged.

import { createHash, timingSafeEqual } from "node:crypto";
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import { ConfigError, type OriginListenerConfig } from "../../../shared/config/schema.ts";
import { forUpstream, fromUpstream, padAnswerFor } from "../../../shared/dns/edns-options.ts";
import { isQuery, MAX_MESSAGE_SIZE, readHeader } from "../../../shared/dns/wire.ts";
import { DNS_MESSAGE } from "../../../shared/doh/doh-request.ts";
import { toUpstreamError, UpstreamError } from "../../../shared/engine/errors.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import { rcodeName } from "../query-handler.ts";
import { type FrontRequest, type FrontResponse, startHttpFront } from "./http-front.ts";
import { createPending } from "./pending.ts";
import type { Listener } from "./udp.ts";

const PATH_PREFIX = "/origin/";

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

type Reply = { status: number; headers?: OutgoingHttpHeaders; body?: Uint8Array | string };

const text = (status: number, message: string, headers: OutgoingHttpHeaders = {}): Reply => ({
  status,
  headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  body: `${message}\n`,
});

const UNAUTHORIZED = text(401, "unauthorized", { "www-authenticate": "Bearer" });

function send(res: FrontResponse, reply: Reply, close = false): void {
  if (res.headersSent || res.destroyed) return;
  const body =
    typeof reply.body === "string" ? Buffer.from(reply.body) : (reply.body ?? new Uint8Array());
  // No Date header: identical requests get byte-identical refusals.
  res.sendDate = false;
  const headers: OutgoingHttpHeaders = { ...reply.headers, "content-length": String(body.length) };
  if (close && "shouldKeepAlive" in res) res.shouldKeepAlive = false;
  (res as ServerResponse).writeHead(reply.status, headers);
  (res as ServerResponse).end(body);
}

/** Reads at most MAX_MESSAGE_SIZE bytes; "too_large" as soon as there are more. */
function readBody(req: FrontRequest, deadlineMs: number): Promise<Uint8Array | "too_large"> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      cleanup();
      req.destroy();
      reject(new Error("request body not received within read_timeout"));
    }, deadlineMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_MESSAGE_SIZE) {
        cleanup();
        req.pause();
        resolve("too_large");
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(new Uint8Array(Buffer.concat(chunks)));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onAborted = () => onError(new Error("client went away"));
    const cleanup = () => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  });
}

function upstreamName(url: string | undefined): string | undefined {
  const path = (url ?? "").split("?")[0] ?? "";
  if (!path.startsWith(PATH_PREFIX)) return undefined;
  const encoded = path.slice(PATH_PREFIX.length);
  if (encoded === "" || encoded.includes("/")) return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
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

export async function startOriginListener(options: {
  config: OriginListenerConfig;
  /** The current transports by upstream name (follows reloads). */
  transports: () => ReadonlyMap<string, Upstream>;
  token: string;
  metrics: RelayMetrics;
  logger: Logger;
}): Promise<Listener> {
  const { config, metrics, logger } = options;
  if (options.token === "") {
    throw new ConfigError([
      { path: ["listen", "origin", "token_env"], message: "the bearer token is empty" },
    ]);
  }
  const authorized = createTokenCheck(options.token);
  const pending = createPending();
  let stopped = false;

  async function serve(req: FrontRequest, res: FrontResponse): Promise<void> {
    if (stopped) return send(res, text(503, "shutting down"), true);
    const header = req.headers.authorization;
    if (!authorized(typeof header === "string" ? header : undefined)) {
      metrics.refused("origin_unauthorized");
      return send(res, UNAUTHORIZED, true);
    }
    const name = upstreamName(req.url);
    const upstream = name === undefined ? undefined : options.transports().get(name);
    if (!upstream) return send(res, text(404, "unknown upstream"));
    if (req.method !== "POST") return send(res, text(405, "use POST", { allow: "POST" }));
    const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== DNS_MESSAGE) return send(res, text(415, `content-type must be ${DNS_MESSAGE}`));
    const tooLarge = text(413, "body larger than 65535 bytes");
    if (Number(req.headers["content-length"] ?? "0") > MAX_MESSAGE_SIZE) {
      return send(res, tooLarge, true);
    }
    const body = await readBody(req, config.read_timeout);
    if (body === "too_large") return send(res, tooLarge, true);
    const problem = notAQuery(body);
    if (problem) return send(res, text(400, problem));

    const client = new AbortController();
    res.once("close", () => client.abort(new Error("client went away")));
    const budget = AbortSignal.timeout(config.write_timeout);
    const started = performance.now();
    // The worker → relay hop ends here: its OPT options go no further (edns-options.ts).
    let query: Uint8Array;
    try {
      query = forUpstream(body);
    } catch {
      return send(res, text(400, "not a DNS query: malformed OPT record"));
    }
    try {
      const answer = await upstream.query(query, AbortSignal.any([client.signal, budget]));
      metrics.query("origin", rcodeName(answer), (performance.now() - started) / 1000);
      send(res, {
        status: 200,
        headers: { "content-type": DNS_MESSAGE, "cache-control": "no-store" },
        body: padAnswerFor(body, answerFrom(upstream.name, answer)),
      });
    } catch (error) {
      if (client.signal.aborted) return;
      const failure = toUpstreamError(error, upstream.name);
      const code = budget.aborted && failure.code === "aborted" ? "timeout" : failure.code;
      metrics.dropped("origin", "upstream_error");
      logger.info("origin query failed", { upstream: upstream.name, code });
      send(res, text(502, `upstream error: ${code}`));
    }
  }

  const front = await startHttpFront({
    name: "origin",
    config,
    metrics,
    logger,
    async onRequest(req, res) {
      pending.add();
      try {
        await serve(req, res);
      } finally {
        pending.done();
      }
    },
  });
  return {
    name: "origin",
    address: front.address,
    port: front.port,
    stop() {
      stopped = true;
      front.stop();
    },
    async close() {
      stopped = true;
      await pending.idle();
      await front.close();
    },
  };
}
