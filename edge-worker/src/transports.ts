// The Upstream for each configured upstream, with what a Worker can speak:
// DoH over fetch, DoT over cloudflare:sockets, and anything else through a
// relay's origin endpoint (`via`).

import { formatHostPort } from "../../shared/config/ip.ts";
import type { WorkerUpstreamConfig } from "../../shared/config/schema/sections/worker-upstreams.ts";
import type { WorkerConfig } from "../../shared/config/schema/worker.ts";
import { DOH_PATH } from "../../shared/doh/doh-request.ts";
import type { Upstream } from "../../shared/engine/upstream.ts";
import { DohEdgeError } from "../../shared/errors.ts";
import { createFetchDohUpstream } from "../../shared/transport/doh-fetch.ts";
import { createSocketDotUpstream } from "./dot-socket.ts";
import type { Env } from "./env.ts";

export class SecretMissingError extends DohEdgeError {
  override readonly name = "SecretMissingError";
  readonly code = "secret_missing";
}

export function buildTransports(config: WorkerConfig, env: Env): Map<string, Upstream> {
  const relays = new Map(config.relays.map((r, i) => [r.name, { ...r, index: i }]));
  const out = new Map<string, Upstream>();
  for (const upstream of config.upstreams) {
    out.set(upstream.name, buildTransport(upstream, relays, env));
  }
  return out;
}

function buildTransport(
  upstream: WorkerUpstreamConfig,
  relays: Map<string, WorkerConfig["relays"][number] & { index: number }>,
  env: Env,
): Upstream {
  const { name, url } = upstream;
  if (upstream.via !== undefined) {
    const relay = relays.get(upstream.via)!; // the schema checked the name
    const token = env[relay.token_secret];
    if (typeof token !== "string" || token === "") {
      throw new SecretMissingError(
        `relays[${relay.index}].token_secret: secret ${relay.token_secret} is not set ` +
          `(npx wrangler secret put ${relay.token_secret})`,
      );
    }
    return createFetchDohUpstream({
      name,
      url: `${relay.url}origin/${encodeURIComponent(name)}`,
      headers: { authorization: `Bearer ${token}` },
    });
  }
  switch (url.protocol) {
    case "https":
    case "http":
    case "h3": {
      // Workers' fetch negotiates HTTP/3 itself where the origin offers it.
      const scheme = url.protocol === "http" ? "http" : "https";
      return createFetchDohUpstream({
        name,
        url: `${scheme}://${formatHostPort(url)}${url.path ?? DOH_PATH}`,
        method: upstream.method ?? "POST",
      });
    }
    case "tls":
      return createSocketDotUpstream({
        name,
        host: url.host,
        port: url.port,
        ...(upstream.tls_servername ? { servername: upstream.tls_servername } : {}),
      });
    default:
      // The schema rejects udp/tcp/quic without `via` on the worker.
      throw new Error(`upstreams: ${name}: the edge worker cannot speak ${url.protocol}://`);
  }
}
