// The relay's config: the shared sections plus its own (listen, allow,
// rate_limit, bootstrap, ecs, plugins, control, metrics, workers), and
// parseRelayConfig. The edge worker never loads this file.

import * as z from "zod";
import type { Cidr } from "../ip.ts";
import type { HostPort } from "../upstream-url.ts";
import { type CommonConfig, commonShape, finalizeShared } from "./common.ts";
import { type Checker, type ConfigParser, type ParsedConfig, parseWith } from "./parse.ts";
import { type RELAY_ONLY_KEYS, WORKER_ONLY_KEYS } from "./runtime-keys.ts";
import { bootstrapSchema, ecsSchema, finalizeEcs } from "./sections/bootstrap.ts";
import {
  allowSchema,
  finalizeAllow,
  finalizeRateLimit,
  type RateLimitConfig,
  rateLimitSchema,
} from "./sections/clients.ts";
import { type ControlConfig, controlSchema, finalizeControl } from "./sections/control.ts";
import {
  finalizeListen,
  type ListenConfig,
  listenerKeyHint,
  listenSchema,
} from "./sections/listen.ts";
import { finalizeMetrics, type MetricsConfig, metricsSchema } from "./sections/metrics.ts";
import { finalizePlugins, type PluginsConfig, pluginsSchema } from "./sections/plugins.ts";
import {
  finalizeRelayUpstreams,
  type RelayUpstreamConfig,
  relayUpstreamSchema,
  type UpstreamFileEntry,
} from "./sections/relay-upstreams.ts";
import { finalizeRoutes, type RelayRouteConfig } from "./sections/routes.ts";

export interface RelayConfig extends CommonConfig<RelayUpstreamConfig, RelayRouteConfig> {
  listen: ListenConfig;
  /** Exec plugins and Lua scripts asked after rules and block lists, in order; the first non-FORWARD answer wins. */
  plugins: PluginsConfig;
  /** Client allow list (default loopback and private ranges); others get REFUSED. */
  allow: Cidr[];
  rate_limit: RateLimitConfig;
  /** Plain-DNS servers that resolve upstream host names (default none: the system resolver). */
  bootstrap: HostPort[];
  /** EDNS Client Subnet on bootstrap queries: "auto" (local address as /24 or /48), a fixed block, or off. */
  ecs?: "auto" | Cidr;
  control: ControlConfig;
  /** Relay processes sharing the listeners (default 1); "auto" = one per core. */
  workers: number | "auto";
  metrics: MetricsConfig;
  /**
   * resolv.conf entries awaiting expansion. parseRelayConfig validates them and
   * accepts routes naming `<name>-<n>`; loadRelayConfig expands them into udp
   * upstreams and re-validates, so its result always has none left.
   */
  upstream_files: UpstreamFileEntry[];
}

const WORKERS_HINT = 'expected a number of processes from 1 to 256, or "auto" (one per core)';

const relayOnlyShape = {
  listen: listenSchema.optional(),
  workers: z
    .union(
      [
        z.int({ error: WORKERS_HINT }).min(1, WORKERS_HINT).max(256, WORKERS_HINT),
        z.literal("auto"),
      ],
      {
        error: WORKERS_HINT,
      },
    )
    .default(1),
  allow: allowSchema,
  rate_limit: rateLimitSchema,
  bootstrap: bootstrapSchema,
  ecs: ecsSchema,
  control: controlSchema,
  metrics: metricsSchema,
} satisfies Record<(typeof RELAY_ONLY_KEYS)[number], z.ZodType>;

// plugins: both runtimes (the worker takes Lua entries only), not in the common shape.
const relaySchema = z.strictObject({
  ...commonShape(relayUpstreamSchema),
  ...relayOnlyShape,
  plugins: pluginsSchema,
});

/** Whether `name` is `<prefix>-<n>` of a pending resolv.conf entry. */
function pendingName(files: readonly UpstreamFileEntry[], name: string): boolean {
  return files.some(
    (f) => name.startsWith(`${f.name}-`) && /^[1-9]\d*$/.test(name.slice(f.name.length + 1)),
  );
}

function finalizeRelay(raw: z.output<typeof relaySchema>, check: Checker): RelayConfig {
  const { upstreams, files } = finalizeRelayUpstreams(raw.upstreams, check);
  const routes = finalizeRoutes(
    raw.routes,
    {
      upstreams: new Set(upstreams.map((u) => u.name)),
      pending: (name) => pendingName(files, name),
      hasPending: files.length > 0,
    },
    check,
  );
  const shared = finalizeShared(raw, routes, check);
  const listen = finalizeListen(raw.listen, check);
  const allow = finalizeAllow(raw.allow, check);
  const ecs = finalizeEcs(raw.ecs, raw.bootstrap, check);
  const control = finalizeControl(raw.control, check);
  return {
    upstreams,
    routes,
    cache: shared.cache,
    rules: shared.rules,
    blocklists: shared.blocklists,
    allowlist: shared.allowlist,
    log: shared.log,
    listen,
    allow,
    rate_limit: finalizeRateLimit(raw.rate_limit),
    bootstrap: raw.bootstrap,
    ...(ecs !== undefined ? { ecs } : {}),
    control,
    workers: raw.workers,
    plugins: finalizePlugins(raw.plugins, check),
    metrics: finalizeMetrics(raw.metrics),
    upstream_files: files,
  };
}

const relayParser: ConfigParser<typeof relaySchema, RelayConfig> = {
  runtime: "relay",
  schema: relaySchema,
  keyHint(path, key) {
    if (path.length === 0 && key === "relays") {
      return "worker-only setting; the relay does not use it (upstreams on the worker name a relay with via)";
    }
    if (path[0] === "listen" && path.length === 2) return listenerKeyHint(String(path[1]), key);
    return undefined;
  },
  otherKeys: WORKER_ONLY_KEYS,
  finalize: finalizeRelay,
};

/**
 * Validates and normalizes a relay config (the parsed YAML document).
 * Throws ConfigError. resolv.conf (`file:`) entries are left in
 * `upstream_files` for loadRelayConfig to expand.
 */
export function parseRelayConfig(input: unknown): ParsedConfig<RelayConfig> {
  return parseWith(relayParser, input);
}
