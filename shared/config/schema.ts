// The config schema (README, "Configuration"), split by concern under schema/:
// one set of sections for both runtimes (upstreams, routes, cache, rules,
// blocklists, allowlist, log) plus each runtime's own (the relay's listen/
// allow/rate_limit/bootstrap/ecs/control/metrics/plugins/workers in
// schema/relay.ts, the worker's relays in schema/worker.ts). Input keys are
// snake_case and strict; durations are strings. This file is the relay's
// and the tests' entry point; the edge worker imports schema/worker.ts so
// that the relay's sections stay out of its bundle.
//
// The output is NORMALIZED, and consumers rely on it:
// - every duration becomes a whole number of MILLISECONDS under the same key
//   (`timeout: "5s"` → `timeout: 5000`);
// - every default is filled in;
// - zone, except, allowlist and rule names are lower-case FQDNs with a
//   trailing dot ("Corp.Example" → "corp.example.");
// - upstream URLs are parsed (UpstreamUrl), CIDRs are parsed (Cidr),
//   addresses are parsed (HostPort), query types are numbers.
//
// Errors: ConfigError, code "invalid_config", a one-line message naming the
// key path (`routes[0].upstreams[1]: unknown upstream "quad8"`), plus
// " (and N more problems)" when there are more; every problem is in
// `.problems`. Warnings (config that works but is probably unwise) come back
// beside the config.

export type { CommonConfig, LogConfig } from "./schema/common.ts";
export {
  ConfigError,
  type ConfigPathSegment,
  type ConfigProblem,
  formatConfigPath,
  formatProblem,
} from "./schema/errors.ts";
export type { ParsedConfig } from "./schema/parse.ts";
export { parseRelayConfig, type RelayConfig } from "./schema/relay.ts";
export type { BlocklistConfig } from "./schema/sections/blocklists.ts";
export type { CacheConfig } from "./schema/sections/cache.ts";
export type { RateLimitConfig } from "./schema/sections/clients.ts";
export type { ControlConfig } from "./schema/sections/control.ts";
export type { HealthCheckConfig } from "./schema/sections/health-check.ts";
export type {
  DohListenerConfig,
  DotListenerConfig,
  ListenConfig,
  OriginListenerConfig,
  StreamListenerConfig,
  UdpListenerConfig,
} from "./schema/sections/listen.ts";
export type { MetricsConfig, StatsdConfig } from "./schema/sections/metrics.ts";
export type {
  ExecPluginEntryConfig,
  LuaPluginEntryConfig,
  PluginEntryConfig,
  PluginsConfig,
} from "./schema/sections/plugins.ts";
export type {
  PoolConfig,
  RelayUpstreamConfig,
  UpstreamFileEntry,
} from "./schema/sections/relay-upstreams.ts";
export type { RelayEndpointConfig } from "./schema/sections/relays.ts";
export {
  POLICIES,
  type Policy,
  type RelayRouteConfig,
  type RouteConfig,
} from "./schema/sections/routes.ts";
export type { RuleConfig, RuleMatch } from "./schema/sections/rules.ts";
export type { UpstreamConfig } from "./schema/sections/upstreams.ts";
export type { WorkerUpstreamConfig } from "./schema/sections/worker-upstreams.ts";
export { parseWorkerConfig, WORKER_MAX_CONNECTIONS, type WorkerConfig } from "./schema/worker.ts";
