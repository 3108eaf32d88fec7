// The normalized relay config written back as a YAML config file, for
// `doh-relay --check`: every default filled in, durations as strings, URLs,
// addresses and CIDRs as text. Reading the output with --config gives the
// same normalized config (test/relay/print-config.test.ts checks the round
// trip), so a user can start from what --check prints.

import { stringify } from "yaml";
import { formatCidr } from "../../../shared/config/ip.ts";
import type {
  HealthCheckConfig,
  RelayConfig,
  RelayRouteConfig,
  RuleConfig,
} from "../../../shared/config/schema.ts";
import { formatHostPort } from "../../../shared/config/upstream-url.ts";
import { rrTypeName } from "../../../shared/dns/codes.ts";

/** Keys whose numbers are durations in ms, wherever they appear. */
const DURATION_KEYS = new Set([
  "timeout",
  "idle_timeout",
  "connect_timeout",
  "handshake_timeout",
  "read_timeout",
  "write_timeout",
  "interval",
  "hedge_delay",
  "fail_timeout",
  "min_ttl",
  "max_ttl",
  "negative_ttl",
  "servfail_ttl",
  "restart_backoff",
  "restart_max_backoff",
  "min_stable_run",
]);

const UNITS: readonly [string, number][] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
];

/** 90000 → "90s", 7200000 → "2h", 1500 → "1500ms": the largest unit that divides it. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const [unit, size] of UNITS) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** Durations and structured values (URLs, addresses, CIDRs) as the text a config file holds. */
function asText(key: string, value: unknown): unknown {
  if (typeof value === "number" && DURATION_KEYS.has(key)) return formatDuration(value);
  if (value === null || typeof value !== "object") return value;
  if ("href" in value && typeof value.href === "string") return value.href;
  if ("prefix" in value && "bytes" in value) return formatCidr(value as never);
  if ("hostKind" in value && "port" in value) return formatHostPort(value as never);
  if (Array.isArray(value)) return value.map((item) => asText("", item));
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, asText(k, v)]),
  );
}

function healthCheckInput(check: HealthCheckConfig) {
  const { kind, ...rest } = check;
  if (kind === "http") {
    return {
      interval: rest.interval,
      timeout: rest.timeout,
      http: { path: check.path, port: check.port },
    };
  }
  return {
    interval: rest.interval,
    timeout: rest.timeout,
    query: `${check.query.name} ${rrTypeName(check.query.qtype)}`,
  };
}

function routeInput(route: RelayRouteConfig) {
  const { server_count, health_check, ...rest } = route;
  return {
    ...rest,
    // Written only where the parser takes it (weighted_random); elsewhere it is derived.
    ...(route.policy === "weighted_random" ? { server_count } : {}),
    ...(health_check ? { health_check: healthCheckInput(health_check) } : {}),
  };
}

function ruleInput(rule: RuleConfig) {
  const match = {
    ...(rule.match.name.length > 0 ? { name: rule.match.name } : {}),
    ...(rule.match.suffix.length > 0 ? { suffix: rule.match.suffix } : {}),
    ...(rule.match.qtype.length > 0 ? { qtype: rule.match.qtype.map(rrTypeName) } : {}),
  };
  if (rule.action === "rewrite" && rule.rewrite_type !== undefined) {
    return { ...rule, match, rewrite_type: rrTypeName(rule.rewrite_type) };
  }
  return { ...rule, match };
}

/** `config` as YAML that `--config` reads back into the same config. */
export function printRelayConfig(config: RelayConfig): string {
  const input = {
    listen: config.listen,
    allow: config.allow,
    rate_limit: config.rate_limit,
    bootstrap: config.bootstrap,
    ...(config.ecs === undefined ? {} : { ecs: config.ecs === "auto" ? true : config.ecs }),
    upstreams: config.upstreams,
    routes: config.routes.map(routeInput),
    cache: config.cache,
    rules: config.rules.map(ruleInput),
    blocklists: config.blocklists,
    allowlist: config.allowlist,
    plugins: config.plugins,
    control: config.control,
    ...(config.metrics.statsd ? { metrics: config.metrics } : {}),
    log: config.log,
    // upstream_files: none left once loadRelayConfig has expanded them into upstreams.
  };
  return stringify(asText("", input), { lineWidth: 0 });
}
