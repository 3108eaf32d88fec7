// The DoH listener: the shared Hono DoH app (RFC 8484 + JSON API) served
// through @hono/node-server's request listener on the relay's HTTP front
// (http-front.ts: HTTP/2 with HTTP/1.1 fallback over TLS, plain HTTP/1.1 and
// h2c otherwise). The client's address comes from the connection
// (getConnInfo); a request's signal aborts when its client goes away.

import { getConnInfo } from "@hono/node-server/conninfo";
import type { DohListenerConfig } from "../../../shared/config/schema.ts";
import { createDohApp } from "../../../shared/doh/doh-app.ts";
import type { Logger } from "../log.ts";
import type { RelayMetrics } from "../metrics.ts";
import type { QueryHandler } from "../query-handler.ts";
import { startHttpFront } from "./http-front.ts";
import type { Listener } from "./udp.ts";

export function startDohListener(options: {
  config: DohListenerConfig;
  handler: QueryHandler;
  metrics: RelayMetrics;
  logger: Logger;
}): Promise<Listener> {
  const { config, handler, metrics, logger } = options;
  const app = createDohApp({
    path: config.path,
    getConnInfo,
    bodyTimeoutMs: config.read_timeout,
    async resolve(query, context) {
      const answer = await handler.handle(query, {
        address: context.clientAddress ?? "",
        protocol: "doh",
        signal: context.signal,
      });
      // Never for the app's queries: it turns short and QR=1 messages away
      // with 400 before asking (doh-request.ts).
      if (!answer) throw new Error("unanswerable query");
      return answer;
    },
    onError: (error) => logger.warn("doh request failed", { error }),
  });
  return startHttpFront({ name: "doh", config, fetch: app.fetch, metrics, logger });
}
