// The config schema (SPEC §2–§4, §6, §8): one set of sections for both
// runtimes (upstreams, routes, cache, rules, blocklists, allowlist, log) plus
// each runtime's own (the relay's listen/allow/rate_limit/bootstrap/ecs/
// control/metrics, the worker's relays). Input keys are snake_case and
// strict; durations are strings.
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

import * as z from "zod";
import { rrTypeFromName } from "../dns/codes.ts";
import { POLICY_NAMES, type PolicyName } from "../engine/policies.ts";
import { parseDuration } from "./duration.ts";
import { DomainNameError, normalizeDomainName, tryNormalizeDomainName } from "./except.ts";
import {
  type Cidr,
  cidrContains,
  formatIp,
  LOOPBACK_AND_PRIVATE_CIDRS,
  parseCidr,
  parseIp,
} from "./ip.ts";
import {
  type HostPort,
  isDohProtocol,
  isPrivateHost,
  isTlsProtocol,
  parseHostPort,
  parseUpstreamUrl,
  plainHttpWarning,
  type UpstreamProtocol,
  type UpstreamUrl,
} from "./upstream-url.ts";

// ---------------------------------------------------------------- constants

/** The engine's selection policies are the config's `policy` values. */
export const POLICIES = POLICY_NAMES;
export type Policy = PolicyName;

/**
 * A Worker may hold at most 6 simultaneous outgoing connections per request;
 * more attempts at once would queue behind each other, not run in parallel.
 */
export const WORKER_MAX_CONNECTIONS = 6;

/**
 * What the edge worker reaches by itself: DoH with fetch (h3:// is fetched as
 * https://, the platform picks the HTTP version) and DoT with
 * cloudflare:sockets, one connection per query. The rest needs `via: <relay>`.
 */
const WORKER_DIRECT_PROTOCOLS: readonly UpstreamProtocol[] = ["https", "http", "h3", "tls"];

// ------------------------------------------------------------------- errors

export type ConfigPathSegment = string | number;

export interface ConfigProblem {
  readonly path: readonly ConfigPathSegment[];
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = "invalid_config";
  /** Key path of the first problem, e.g. ["routes", 0, "upstreams", 1]. */
  readonly path: ConfigPathSegment[];
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    const [first, ...rest] = problems;
    if (first === undefined) throw new TypeError("ConfigError needs at least one problem");
    const more =
      rest.length === 0 ? "" : ` (and ${rest.length} more problem${rest.length === 1 ? "" : "s"})`;
    super(`${formatProblem(first)}${more}`);
    this.path = [...first.path];
    this.problems = problems;
  }
}

/** `routes[0].upstreams[1]`; keys that are not identifiers are quoted: `a["x y"]`. */
export function formatConfigPath(path: readonly ConfigPathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** "path: message", or just the message for the top level. */
export function formatProblem(problem: ConfigProblem): string {
  const where = formatConfigPath(problem.path);
  return where === "" ? problem.message : `${where}: ${problem.message}`;
}

// ------------------------------------------------------- normalized types

/** Connection pool of one relay upstream. Durations in ms. */
export interface PoolConfig {
  /** Persistent connections kept open (default 2). */
  size: number;
  /** Queries in flight per connection (default 100). */
  max_in_flight: number;
  /** A connection idle this long is replaced (the stale timeout; default 8000). */
  idle_timeout: number;
  /** TCP/QUIC connect (default 2000). */
  connect_timeout: number;
  /** TLS handshake (default 3000). */
  handshake_timeout: number;
  /** Retries on a fresh connection when one dies mid-query (default 2). */
  max_retries: number;
}

export interface UpstreamConfig {
  /** Unique; letters, digits, ".", "_", "-". Used in /origin/<name>, metrics, logs. */
  name: string;
  url: UpstreamUrl;
  /** Load factor 1–100 for weighted_random (default 100). */
  weight: number;
  /** DoH upstreams only: "POST" unless set to "GET"; undefined for other protocols. */
  method?: "POST" | "GET";
  /** Per attempt, ms; undefined = bounded by the route's timeout only. */
  timeout?: number;
  /** TLS upstreams only (tls, https, h3, quic). ca/cert/key: file paths or PEM text. */
  tls_servername?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

export interface RelayUpstreamConfig extends UpstreamConfig {
  pool: PoolConfig;
}

export interface WorkerUpstreamConfig extends UpstreamConfig {
  /** The relay (a `relays[].name`) whose origin endpoint reaches this upstream. */
  via?: string;
}

/**
 * Active health probe per upstream of a route. Input shape:
 *   health_check: { interval: 4s, timeout: 2s, query: ". NS" }      # DNS probe (default)
 *   health_check: { interval: 4s, http: { path: /health, port: 8080 } }
 * The HTTP form probes http://<upstream host>:<port><path> (CoreDNS proxy's
 * `health_check PATH:PORT`); status 200–399 means healthy.
 */
export type HealthCheckConfig =
  | { kind: "dns"; interval: number; timeout: number; query: { name: string; qtype: number } }
  | { kind: "http"; interval: number; timeout: number; path: string; port: number };

export interface RouteConfig {
  /** Optional; lets a `forward` rule name the route. */
  name?: string;
  /** Lower-case FQDNs with trailing dot (default ["."]). */
  zones: string[];
  /** Upstream names, in order. */
  upstreams: string[];
  /** Default "sequential". */
  policy: Policy;
  /** Upstreams picked per query: set for weighted_random, else the number of upstreams. */
  server_count: number;
  /** Upstreams queried at once (default 1). */
  worker_count: number;
  /** ms between staggered attempts, "auto" (recent p95), or undefined = off. */
  hedge_delay?: number | "auto";
  /** First valid DNS message wins (default false). */
  race: boolean;
  /** With race: only NOERROR/NXDOMAIN end the race (default false). */
  race_continue_on_error: boolean;
  /** Whole-query budget, ms (default 5000). */
  timeout: number;
  /** Failures that mark an upstream down; 0 = never (default 3). */
  attempt_count: number;
  /** How long a down upstream stays down, ms (default 2000). */
  fail_timeout: number;
  health_check?: HealthCheckConfig;
  /** Names that skip this route (normalized); the relay loader adds except_file's names. */
  except: string[];
  /** Log each defective upstream attempt (default false). */
  debug: boolean;
}

export interface RelayRouteConfig extends RouteConfig {
  /** Path of a file of names to except (read by loadRelayConfig, merged into `except`). */
  except_file?: string;
}

export interface CacheConfig {
  /** Entries; 0 disables the cache (default 10000). */
  size: number;
  /** Optional byte budget for cached messages. */
  max_bytes?: number;
  /** TTL clamp, ms, whole seconds (defaults 0 and 86400000 = 1d). */
  min_ttl: number;
  max_ttl: number;
  /** Cap for NXDOMAIN/NODATA TTLs, ms (default 3600000 = 1h). */
  negative_ttl: number;
  /** How long a SERVFAIL is cached, ms; 0 = not at all (default 5000). */
  servfail_ttl: number;
  /** Serve an expired entry when every upstream fails (default false). */
  serve_stale: boolean;
}

/**
 * A rule matches when the name is one of `name`, or under one of `suffix`
 * (either, when both are given; any name when neither is), and the qtype is
 * in `qtype` (any when empty).
 */
export interface RuleMatch {
  name: string[];
  suffix: string[];
  qtype: number[];
}

/**
 * Rules run before the cache, first match wins.
 * - block: NXDOMAIN, or `block_with: null_ip` (0.0.0.0 / ::).
 * - local_data: answers from `ips` (A/AAAA), `txt`, or a `cname`, with `ttl`
 *   seconds (default 60).
 * - rewrite: asks for `rewrite_domain` and/or `rewrite_type` instead.
 * - forward: sends the query to the route named `route`, skipping zone lookup.
 */
export type RuleConfig =
  | { match: RuleMatch; action: "block"; block_with: "nxdomain" | "null_ip" }
  | {
      match: RuleMatch;
      action: "local_data";
      ips: string[];
      txt: string[];
      cname?: string;
      ttl: number;
    }
  | { match: RuleMatch; action: "rewrite"; rewrite_domain?: string; rewrite_type?: number }
  | { match: RuleMatch; action: "forward"; route: string };

/**
 * A block list, text or compiled: a file (relay only), an http(s) URL, or a
 * path among the worker's static assets (worker only, its ASSETS binding).
 */
export type BlocklistConfig = { path: string } | { url: string } | { asset: string };

export interface LogConfig {
  level: "debug" | "info" | "warn" | "error";
}

interface CommonConfig<U, R> {
  upstreams: U[];
  /** Default: one route for "." over every upstream. */
  routes: R[];
  cache: CacheConfig;
  rules: RuleConfig[];
  blocklists: BlocklistConfig[];
  /** Names never blocked by blocklists. */
  allowlist: string[];
  log: LogConfig;
}

export interface UdpListenerConfig {
  addr: HostPort;
  reuse_port: boolean;
  /** SO_RCVBUF/SO_SNDBUF bytes; undefined = the OS default. */
  udp_buffer_size?: number;
}

/** TCP-like listeners. Durations in ms. */
export interface StreamListenerConfig {
  addr: HostPort;
  reuse_port: boolean;
  /** A started query must arrive within this (default 5000). */
  read_timeout: number;
  /** An answer must be written within this (default 5000). */
  write_timeout: number;
  /** A connection with nothing in flight closes after this (default 10000). */
  idle_timeout: number;
  /** Open connections at once (default 1000). */
  max_connections: number;
  /** Then the connection closes; 0 = unlimited (default 0). */
  max_queries_per_connection: number;
}

export interface DotListenerConfig extends StreamListenerConfig {
  cert: string;
  key: string;
}

export interface DohListenerConfig extends StreamListenerConfig {
  /** Without cert/key the listener speaks plain HTTP (for a TLS-terminating proxy). */
  cert?: string;
  key?: string;
  /** Default "/dns-query". */
  path: string;
}

export interface OriginListenerConfig extends StreamListenerConfig {
  /** Environment variable holding the bearer token (default "RELAY_TOKEN"). */
  token_env: string;
  cert?: string;
  key?: string;
}

/** Only the listeners written exist; with no `listen` at all: udp and tcp on 127.0.0.1:5053. */
export interface ListenConfig {
  udp?: UdpListenerConfig;
  tcp?: StreamListenerConfig;
  dot?: DotListenerConfig;
  doh?: DohListenerConfig;
  origin?: OriginListenerConfig;
  /** /metrics /healthz /readyz /statusz */
  metrics?: { addr: HostPort };
}

/** Per client address; 0 = unlimited. */
export interface RateLimitConfig {
  /** Sustained queries per second (default 500). */
  qps: number;
  /** Bucket size (default 2 × qps). */
  burst: number;
  /** Queries in flight at once (default 200). */
  max_in_flight: number;
}

/** Supervision of listeners and pools (BalanceDNS's control plane). Durations in ms. */
export interface ControlConfig {
  /** First restart delay, doubling per failure (default 200). */
  restart_backoff: number;
  /** Cap of the delay (default 5000). */
  restart_max_backoff: number;
  /** Give up after this many failures in a row; 0 = never (default 0). */
  max_consecutive_failure: number;
  /** A run this long resets the failure count (default 10000). */
  min_stable_run: number;
}

export interface StatsdConfig {
  addr: HostPort;
  /** 0 < rate ≤ 1 (default 1). */
  sample_rate: number;
}

/** A `file: /etc/resolv.conf` upstream entry not yet expanded (see RelayConfig.upstream_files). */
export interface UpstreamFileEntry {
  /** Position in the input `upstreams` list. */
  index: number;
  file: string;
  /** Prefix of the expanded names: `<name>-1`, `<name>-2`, … (default "resolv"). */
  name: string;
}

/** One exec plugin (BalanceDNS's go_exec protocol). */
export interface ExecPluginEntryConfig {
  /** "exec" (BalanceDNS's go_exec too); the default. */
  runtime?: "exec";
  name: string;
  /** Absolute path of the program (it runs with an empty environment, so no PATH lookup). */
  path: string;
  args: string[];
  /** per_query: a process per question; persistent: one process, a JSON line per question. */
  mode: "per_query" | "persistent";
  /** ms */
  timeout: number;
}

/** One Lua policy script (BalanceDNS's `runtime: lua`), run in a sandboxed VM. */
export interface LuaPluginEntryConfig {
  runtime: "lua";
  name: string;
  /** Relay: the script file (relative to the config file's folder until loaded). Worker: a bundled script's name. */
  path: string;
  /** Lua VM instructions one handle() call may run before it is cut off. */
  max_instructions: number;
}

export type PluginEntryConfig = ExecPluginEntryConfig | LuaPluginEntryConfig;

export interface PluginsConfig {
  /** What a plugin that fails (timeout, crash, bad output) decides (default "forward"). */
  on_error: "forward" | "block" | "servfail";
  entries: PluginEntryConfig[];
}

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
  metrics: { statsd?: StatsdConfig };
  /**
   * resolv.conf entries awaiting expansion. parseRelayConfig validates them and
   * accepts routes naming `<name>-<n>`; loadRelayConfig expands them into udp
   * upstreams and re-validates, so its result always has none left.
   */
  upstream_files: UpstreamFileEntry[];
}

export interface RelayEndpointConfig {
  name: string;
  /** Base URL of the relay's origin endpoint, ending in "/": POST <url>origin/<upstream>. */
  url: string;
  /** Name of the Worker secret holding the bearer token (default "RELAY_TOKEN"). */
  token_secret: string;
}

export interface WorkerConfig extends CommonConfig<WorkerUpstreamConfig, RouteConfig> {
  relays: RelayEndpointConfig[];
  /** Lua scripts bundled at deploy (entries are all runtime: lua), asked after the rules. */
  plugins: PluginsConfig;
}

export interface ParsedConfig<T> {
  config: T;
  /** One line each, "path: message". */
  warnings: string[];
}

// ------------------------------------------------------------ field schemas

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  }
  return String(value);
}

function isTypedError(error: unknown): error is Error & { code: string } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "string";
}

/** A string parsed by one of our parsers; their typed errors become issues. */
function parsedString<T>(parse: (text: string) => T, what: string) {
  return z
    .string({
      error: (issue) =>
        issue.input === undefined ? undefined : `expected ${what}, got ${describe(issue.input)}`,
    })
    .transform((text, ctx): T => {
      try {
        return parse(text);
      } catch (error) {
        if (!isTypedError(error)) throw error;
        ctx.issues.push({ code: "custom", message: error.message, input: text });
        return z.NEVER;
      }
    });
}

const duration = parsedString(parseDuration, 'a duration string such as "5s"');
const positiveDuration = duration.refine((ms) => ms > 0, "must be longer than 0s");
const ttlDuration = duration.refine(
  (ms) => ms % 1000 === 0,
  "must be a whole number of seconds (it becomes a DNS TTL)",
);
const domainName = parsedString(normalizeDomainName, "a domain name");
const upstreamUrl = parsedString(parseUpstreamUrl, "an upstream URL");
const cidr = parsedString(parseCidr, 'a CIDR block such as "10.0.0.0/8"');

const intIn = (min: number, max: number) =>
  z
    .int()
    .min(min, `must be between ${min} and ${max}`)
    .max(max, `must be between ${min} and ${max}`);
const intFrom = (min: number) => z.int().min(min, `must be at least ${min}`);
const nonEmpty = z.string().min(1, "must not be empty");
const port = intIn(1, 65535);

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const identifier = (what: string) =>
  z
    .string()
    .regex(
      NAME_PATTERN,
      `${what} may hold only letters, digits, ".", "_" and "-" (at most 63, starting with a letter or digit)`,
    );
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment/binding name (letters, digits, _)");

/** A single value or a list of them; normalized to a list. */
const oneOrMany = <T extends z.ZodType>(item: T, what: string) =>
  z.preprocess(
    (value) => (typeof value === "string" || typeof value === "number" ? [value] : value),
    z.array(item, {
      error: (issue) =>
        issue.code === "invalid_type" && issue.input !== undefined
          ? `expected ${what} or a list of them, got ${describe(issue.input)}`
          : undefined,
    }),
  );

function parseQtype(value: string | number): number {
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 1 && value <= 65535) return value;
    throw new QtypeError(`query type ${value} is out of range 1-65535`);
  }
  const known = rrTypeFromName(value);
  if (known !== undefined && known >= 1) return known;
  throw new QtypeError(
    `unknown query type ${JSON.stringify(value)} (use e.g. A, AAAA, TXT or TYPE65)`,
  );
}

class QtypeError extends Error {
  readonly code = "bad_qtype";
}

const qtype = z
  .union([z.string(), z.number()], { error: 'expected a query type such as "AAAA"' })
  .transform((value, ctx) => {
    try {
      return parseQtype(value);
    } catch (error) {
      if (!isTypedError(error)) throw error;
      ctx.issues.push({ code: "custom", message: error.message, input: value });
      return z.NEVER;
    }
  });

const ipText = parsedString((text) => formatIp(parseIp(text)), "an IP address");
const hostName = parsedString((text) => {
  const name = normalizeDomainName(text);
  if (name === ".") throw new DomainNameError("must be a host name, not the root");
  return name.slice(0, -1);
}, "a host name");

const listenAddr = parsedString(
  (text) => parseHostPort(text, { emptyHost: "0.0.0.0" }),
  'an address such as "127.0.0.1:5053"',
);

function httpUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UrlError(`${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new UrlError(`${text}: expected an https:// or http:// URL`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new UrlError(`${text}: user info (user@host) is not supported`);
  }
  if (url.hash !== "") throw new UrlError(`${text}: a fragment (#...) is not allowed`);
  return url;
}

class UrlError extends Error {
  readonly code = "bad_url";
}

// ----------------------------------------------------------- section shapes

const poolShape = {
  size: intIn(1, 256).default(2),
  max_in_flight: intIn(1, 65535).default(100),
  idle_timeout: positiveDuration.prefault("8s"),
  connect_timeout: positiveDuration.prefault("2s"),
  handshake_timeout: positiveDuration.prefault("3s"),
  max_retries: intIn(0, 10).default(2),
};
const poolSchema = z.strictObject(poolShape);

/** Both runtimes' upstream keys; runtime rules (via, pool, file) are checked afterwards. */
const upstreamShape = {
  name: identifier("upstream names").optional(),
  url: upstreamUrl.optional(),
  file: nonEmpty.optional(),
  weight: intIn(1, 100).optional(),
  tls_servername: hostName.optional(),
  ca: nonEmpty.optional(),
  cert: nonEmpty.optional(),
  key: nonEmpty.optional(),
  timeout: positiveDuration.optional(),
  method: z.enum(["POST", "GET"]).optional(),
  via: z.string().optional(),
  pool: poolSchema.optional(),
};

const healthCheckShape = {
  interval: positiveDuration.prefault("4s"),
  timeout: positiveDuration.prefault("2s"),
  query: z.string().optional(),
  http: z
    .strictObject({
      path: z.string().startsWith("/", 'must start with "/"').default("/health"),
      port,
    })
    .optional(),
};

const routeShape = {
  name: identifier("route names").optional(),
  zones: z
    .array(domainName)
    .min(1, "needs at least one zone")
    .default(() => ["."]),
  upstreams: z.array(z.string()).min(1, "needs at least one upstream"),
  policy: z.enum(POLICIES).default("sequential"),
  server_count: intFrom(1).optional(),
  worker_count: intFrom(1).optional(),
  hedge_delay: parsedString(
    (text) => (text === "auto" ? ("auto" as const) : parseDuration(text)),
    'a duration or "auto"',
  ).optional(),
  race: z.boolean().default(false),
  race_continue_on_error: z.boolean().default(false),
  timeout: positiveDuration.prefault("5s"),
  attempt_count: intIn(0, 1000).default(3),
  fail_timeout: positiveDuration.prefault("2s"),
  health_check: z.strictObject(healthCheckShape).optional(),
  except: z.array(domainName).default(() => []),
  except_file: nonEmpty.optional(),
  debug: z.boolean().default(false),
};

const routeSchema = z.strictObject(routeShape);

const cacheShape = {
  size: intFrom(0).default(10_000),
  max_bytes: intFrom(0).optional(),
  min_ttl: ttlDuration.prefault("0s"),
  max_ttl: ttlDuration.prefault("1d"),
  negative_ttl: ttlDuration.prefault("1h"),
  servfail_ttl: ttlDuration.prefault("5s"),
  serve_stale: z.boolean().default(false),
};

const ruleShape = {
  match: z.strictObject({
    name: oneOrMany(domainName, "a domain name").optional(),
    suffix: oneOrMany(domainName, "a domain name").optional(),
    qtype: oneOrMany(qtype, "a query type").optional(),
  }),
  action: z.enum(["block", "local_data", "rewrite", "forward"]),
  block_with: z.enum(["nxdomain", "null_ip"]).optional(),
  ips: oneOrMany(ipText, "an IP address").optional(),
  txt: oneOrMany(z.string(), "a string").optional(),
  cname: domainName.optional(),
  ttl: intIn(0, 2_147_483_647).optional(),
  rewrite_domain: domainName.optional(),
  rewrite_type: qtype.optional(),
  route: z.string().optional(),
};

const RULE_KEYS = {
  block: ["block_with"],
  local_data: ["ips", "txt", "cname", "ttl"],
  rewrite: ["rewrite_domain", "rewrite_type"],
  forward: ["route"],
} as const;

const blocklistShape = {
  path: nonEmpty.optional(),
  url: parsedString((text) => httpUrl(text).href, "an http(s) URL").optional(),
  asset: z.string().startsWith("/", 'must start with "/"').optional(),
};

const logShape = { level: z.enum(["debug", "info", "warn", "error"]).default("info") };

const commonShape = {
  upstreams: z.array(z.strictObject(upstreamShape)).min(1, "needs at least one upstream"),
  routes: z.array(routeSchema).optional(),
  cache: z.strictObject(cacheShape).prefault({}),
  rules: z.array(z.strictObject(ruleShape)).default(() => []),
  blocklists: z.array(z.strictObject(blocklistShape)).default(() => []),
  allowlist: z.array(domainName).default(() => []),
  log: z.strictObject(logShape).prefault({}),
};

/** Written as a plain address string or as a mapping with `addr`. */
const listener = <S extends z.core.$ZodLooseShape>(shape: S) =>
  z.preprocess(
    (value) => (typeof value === "string" ? { addr: value } : value),
    z.strictObject({ addr: listenAddr, ...shape }),
  );

const streamTuning = {
  reuse_port: z.boolean().default(false),
  read_timeout: positiveDuration.prefault("5s"),
  write_timeout: positiveDuration.prefault("5s"),
  idle_timeout: positiveDuration.prefault("10s"),
  max_connections: intFrom(1).default(1000),
  max_queries_per_connection: intFrom(0).default(0),
};

const listenShape = {
  udp: listener({
    reuse_port: z.boolean().default(false),
    udp_buffer_size: intIn(512, 67_108_864).optional(),
  }).optional(),
  tcp: listener(streamTuning).optional(),
  dot: listener({ ...streamTuning, cert: nonEmpty, key: nonEmpty }).optional(),
  doh: listener({
    ...streamTuning,
    cert: nonEmpty.optional(),
    key: nonEmpty.optional(),
    path: z.string().startsWith("/", 'must start with "/"').default("/dns-query"),
  }).optional(),
  origin: listener({
    ...streamTuning,
    token_env: envName.default("RELAY_TOKEN"),
    cert: nonEmpty.optional(),
    key: nonEmpty.optional(),
  }).optional(),
  metrics: listener({}).optional(),
};

const pluginsSchema = z
  .strictObject({
    /** BalanceDNS's switch: false runs none of the entries. */
    enabled: z.boolean().default(true),
    timeout: positiveDuration.prefault("50ms"),
    on_error: z.enum(["forward", "block", "servfail"]).default("forward"),
    entries: z
      .array(
        z.strictObject({
          name: identifier("plugin names"),
          path: nonEmpty,
          /** exec and go_exec (BalanceDNS's name) mean a program speaking JSON; lua a script. */
          runtime: z.enum(["exec", "go_exec", "lua"]).default("exec"),
          args: z.array(z.string()).optional(),
          mode: z.enum(["per_query", "persistent"]).optional(),
          timeout: positiveDuration.optional(),
          /** BalanceDNS's spelling. */
          timeout_ms: intFrom(1).optional(),
          max_instructions: intIn(1000, 1_000_000_000).optional(),
        }),
      )
      .default(() => []),
  })
  .prefault({});

const WORKERS_HINT = 'expected a number of processes from 1 to 256, or "auto" (one per core)';

const relayOnlyShape = {
  listen: z.strictObject(listenShape).optional(),
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
  allow: z.array(cidr).optional(),
  rate_limit: z
    .strictObject({
      qps: intFrom(0).default(500),
      burst: intFrom(1).optional(),
      max_in_flight: intFrom(0).default(200),
    })
    .prefault({}),
  bootstrap: z
    .array(
      parsedString((text) => {
        const address = parseHostPort(text, { defaultPort: 53 });
        if (address.hostKind === "name") {
          throw new UrlError(`${JSON.stringify(text)}: a bootstrap server must be an IP address`);
        }
        return address;
      }, 'an address such as "9.9.9.9" or "[2620:fe::fe]:53"'),
    )
    .default(() => []),
  ecs: z
    .union([z.boolean(), z.string()], {
      error: 'expected true, false or a CIDR block such as "203.0.113.0/24"',
    })
    .optional(),
  plugins: pluginsSchema,
  control: z
    .strictObject({
      restart_backoff: positiveDuration.prefault("200ms"),
      restart_max_backoff: positiveDuration.prefault("5s"),
      max_consecutive_failure: intFrom(0).default(0),
      min_stable_run: positiveDuration.prefault("10s"),
    })
    .prefault({}),
  metrics: z
    .strictObject({
      statsd: z
        .strictObject({
          addr: parsedString(
            (text) => parseHostPort(text, { defaultPort: 8125 }),
            'an address such as "127.0.0.1:8125"',
          ),
          sample_rate: z
            .number()
            .gt(0, "must be greater than 0 and at most 1")
            .max(1, "must be greater than 0 and at most 1")
            .default(1),
        })
        .optional(),
    })
    .prefault({}),
};

const workerOnlyShape = {
  plugins: pluginsSchema,
  relays: z
    .array(
      z.strictObject({
        name: identifier("relay names"),
        url: parsedString(httpUrl, "the relay's https:// URL"),
        token_secret: envName.default("RELAY_TOKEN"),
      }),
    )
    .default(() => []),
};

const streamTuningSchema = z.strictObject(streamTuning);
const relaySchema = z.strictObject({ ...commonShape, ...relayOnlyShape });
const workerSchema = z.strictObject({ ...commonShape, ...workerOnlyShape });

type RawCommon = z.output<typeof relaySchema> | z.output<typeof workerSchema>;
type RawUpstream = RawCommon["upstreams"][number];
type RawRoute = NonNullable<RawCommon["routes"]>[number];
type RawRule = RawCommon["rules"][number];

/** Every key the schema knows, for "did you mean" hints on unknown keys. */
const KNOWN_KEYS = new Set<string>([
  ...Object.keys(upstreamShape),
  ...Object.keys(poolShape),
  ...Object.keys(routeShape),
  ...Object.keys(healthCheckShape),
  ...Object.keys(cacheShape),
  ...Object.keys(ruleShape),
  ...Object.keys(blocklistShape),
  ...Object.keys(commonShape),
  ...Object.keys(streamTuning),
  ...Object.keys(listenShape),
  ...Object.keys(relayOnlyShape),
  ...Object.keys(workerOnlyShape),
  "udp_buffer_size",
  "token_env",
  "token_secret",
  "statsd",
  "sample_rate",
  "qps",
  "burst",
]);

/** Names other systems use (fanout, CoreDNS proxy) for our keys. */
const KEY_ALIASES: Readonly<Record<string, string>> = {
  weighted_random_server_count: "server_count",
  weighted_random_load_factor: "weight (on each upstream)",
  tls_server: "tls_servername",
  max_fails: "attempt_count",
  network: "a tcp:// or udp:// url",
  fallthrough: "except",
};

const RELAY_ONLY_TOP = new Set(Object.keys(relayOnlyShape));
const STREAM_KEYS = new Set(Object.keys(streamTuning));

type Runtime = "relay" | "worker";

function unknownKeyMessage(
  path: readonly ConfigPathSegment[],
  key: string,
  runtime: Runtime,
): string {
  if (path.length === 0) {
    if (runtime === "worker" && RELAY_ONLY_TOP.has(key)) {
      return "relay-only setting; the edge worker does not use it";
    }
    if (runtime === "relay" && key === "relays") {
      return "worker-only setting; the relay does not use it (upstreams on the worker name a relay with via)";
    }
  }
  if (path[0] === "listen" && path.length === 2) {
    if (key === "udp_buffer_size") return "applies only to the udp listener";
    if (STREAM_KEYS.has(key))
      return `applies to tcp, dot, doh and origin listeners, not ${String(path[1])}`;
  }
  const snake = key.toLowerCase().replaceAll("-", "_");
  const alias = KEY_ALIASES[snake];
  if (alias !== undefined) return `unknown key; use ${alias}`;
  if (snake !== key && KNOWN_KEYS.has(snake)) return `unknown key; keys are snake_case: ${snake}`;
  return "unknown key";
}

// --------------------------------------------------------- issue conversion

const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
};

/** Messages for zod's built-in issues (schema-level messages take precedence). */
function builtInMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      if (issue.input === undefined) return "required";
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describe(issue.input)}`;
    case "too_small":
      return issue.origin === "array"
        ? `needs at least ${issue.minimum} item${issue.minimum === 1 ? "" : "s"}`
        : `must be at least ${issue.minimum}`;
    case "too_big":
      return issue.origin === "array"
        ? `takes at most ${issue.maximum} item${issue.maximum === 1 ? "" : "s"}`
        : `must be at most ${issue.maximum}`;
    case "invalid_value":
      return `expected ${issue.values.map((v) => String(v)).join(", ")}; got ${describe(issue.input)}`;
    case "invalid_union":
      return `unexpected value ${describe(issue.input)}`;
    default:
      return undefined;
  }
}

/**
 * Zod paths may run into a value that was a string in the input and a
 * mapping or list only after preprocessing (`udp: 127.0.0.1:53` →
 * `{ addr }`); cut such paths back to what the user wrote.
 */
function pathInInput(path: readonly PropertyKey[], input: unknown): ConfigPathSegment[] {
  const out: ConfigPathSegment[] = [];
  let value = input;
  for (const segment of path) {
    if (value === null || typeof value !== "object") break;
    const key = typeof segment === "symbol" ? String(segment) : segment;
    out.push(key);
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return out;
}

function problemsFromIssues(
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  runtime: Runtime,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    const path = pathInInput(issue.path, input);
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        problems.push({ path: [...path, key], message: unknownKeyMessage(path, key, runtime) });
      }
    } else if (issue.path.length === 0 && issue.code === "invalid_type") {
      problems.push({
        path,
        message: `the config must be a mapping of settings, got ${describe(input)}`,
      });
    } else {
      problems.push({ path, message: issue.message });
    }
  }
  return problems;
}

// ----------------------------------------------------------------- finalize

interface Checker {
  readonly runtime: Runtime;
  readonly problems: ConfigProblem[];
  readonly warnings: ConfigProblem[];
  error(path: readonly ConfigPathSegment[], message: string): void;
  warn(path: readonly ConfigPathSegment[], message: string): void;
}

function createChecker(runtime: Runtime): Checker {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  return {
    runtime,
    problems,
    warnings,
    error: (path, message) => problems.push({ path, message }),
    warn: (path, message) => warnings.push({ path, message }),
  };
}

const TLS_KEYS = ["tls_servername", "ca", "cert", "key"] as const;

interface UpstreamsResult<U> {
  upstreams: U[];
  files: UpstreamFileEntry[];
}

function finalizeUpstreams(
  raw: RawUpstream[],
  check: Checker,
  relayNames: ReadonlySet<string>,
): UpstreamsResult<RelayUpstreamConfig | WorkerUpstreamConfig> {
  const upstreams: (RelayUpstreamConfig | WorkerUpstreamConfig)[] = [];
  const files: UpstreamFileEntry[] = [];
  const seen = new Set<string>();
  const seenPrefixes = new Set<string>();
  const runtime = check.runtime;
  raw.forEach((entry, i) => {
    const at = (...rest: ConfigPathSegment[]) => ["upstreams", i, ...rest];
    if (entry.file !== undefined) {
      if (runtime === "worker") {
        check.error(
          at("file"),
          "a resolv.conf entry works only on the relay (the edge worker reads no files); list the upstreams with url",
        );
        return;
      }
      for (const [key, value] of Object.entries(entry)) {
        if (value !== undefined && key !== "file" && key !== "name") {
          check.error(
            at(key),
            "a file: entry takes only name (the prefix of the expanded upstreams' names)",
          );
        }
      }
      const prefix = entry.name ?? "resolv";
      if (seenPrefixes.has(prefix)) {
        check.error(
          at(entry.name === undefined ? "file" : "name"),
          `another file: entry already uses the name prefix "${prefix}"; give this one a different name`,
        );
      }
      seenPrefixes.add(prefix);
      files.push({ index: i, file: entry.file, name: prefix });
      return;
    }
    if (entry.name === undefined) check.error(at("name"), "required");
    if (entry.url === undefined) {
      check.error(at("url"), "required (or file: for a resolv.conf)");
      return;
    }
    if (entry.name === undefined) return;
    if (seen.has(entry.name)) check.error(at("name"), `duplicate upstream name "${entry.name}"`);
    seen.add(entry.name);

    const url = entry.url;
    const protocol = url.protocol;
    if (entry.method !== undefined && !isDohProtocol(protocol)) {
      check.error(
        at("method"),
        `only DoH upstreams (https, http, h3) take a method; this one is ${protocol}://`,
      );
    }
    for (const key of TLS_KEYS) {
      if (entry[key] !== undefined && !isTlsProtocol(protocol)) {
        check.error(
          at(key),
          `only TLS upstreams (tls, https, h3, quic) take ${key}; this one is ${protocol}://`,
        );
      }
    }
    if ((entry.cert === undefined) !== (entry.key === undefined)) {
      const missing = entry.cert === undefined ? "cert" : "key";
      check.error(
        at(entry.cert === undefined ? "key" : "cert"),
        `a client certificate needs both cert and key; add ${missing}`,
      );
    }
    const warning = plainHttpWarning(url);
    if (warning !== undefined) check.warn(at("url"), warning);

    const base: UpstreamConfig = {
      name: entry.name,
      url,
      weight: entry.weight ?? 100,
      ...(isDohProtocol(protocol) ? { method: entry.method ?? "POST" } : {}),
      ...(entry.timeout !== undefined ? { timeout: entry.timeout } : {}),
      ...(entry.tls_servername !== undefined ? { tls_servername: entry.tls_servername } : {}),
      ...(entry.ca !== undefined ? { ca: entry.ca } : {}),
      ...(entry.cert !== undefined ? { cert: entry.cert } : {}),
      ...(entry.key !== undefined ? { key: entry.key } : {}),
    };

    if (runtime === "relay") {
      if (entry.via !== undefined) {
        check.error(at("via"), "edge-only key: the relay reaches its upstreams itself; remove via");
      }
      if (protocol === "h3") {
        check.error(at("url"), "the relay cannot speak h3:// (no HTTP/3 in Node); use https://");
      }
      const pool = entry.pool ?? poolSchema.parse({});
      upstreams.push({ ...base, pool });
      return;
    }

    if (entry.pool !== undefined) {
      check.error(
        at("pool"),
        "relay-only key: the edge worker keeps no connection pools; remove pool",
      );
    }
    if (entry.via !== undefined) {
      if (!relayNames.has(entry.via)) {
        const known =
          relayNames.size === 0
            ? "no relays are configured"
            : `relays: ${[...relayNames].join(", ")}`;
        check.error(at("via"), `unknown relay "${entry.via}" (${known})`);
      }
      if (protocol === "h3") {
        check.error(
          at("url"),
          "the relay cannot speak h3:// (no HTTP/3 in Node); use https://, or drop via to let the worker fetch it",
        );
      }
      for (const key of TLS_KEYS) {
        if (entry[key] !== undefined) {
          check.error(
            at(key),
            `the relay "${entry.via}" makes this connection; set ${key} on its upstream "${entry.name}" in the relay's config`,
          );
        }
      }
      upstreams.push({ ...base, via: entry.via });
      return;
    }
    if (!WORKER_DIRECT_PROTOCOLS.includes(protocol)) {
      check.error(
        at("url"),
        `the edge worker cannot speak ${protocol}://; add via: <relay name> to reach it through a relay`,
      );
    } else {
      for (const key of TLS_KEYS) {
        if (entry[key] === undefined || (key === "tls_servername" && protocol === "tls")) continue;
        check.error(
          at(key),
          key === "tls_servername"
            ? "the edge worker's fetch cannot set tls_servername; reach this upstream through a relay (via) to use it"
            : `the edge worker verifies against the platform's CA store and has no client certificate, so it cannot use ${key}; reach this upstream through a relay (via)`,
        );
      }
    }
    upstreams.push(base);
  });
  return { upstreams, files };
}

function finalizeHealthCheck(
  raw: NonNullable<RawRoute["health_check"]>,
  at: (...rest: ConfigPathSegment[]) => ConfigPathSegment[],
  check: Checker,
): HealthCheckConfig | undefined {
  const { interval, timeout } = raw;
  if (raw.http !== undefined) {
    if (raw.query !== undefined) {
      check.error(at("query"), "a health check probes with either query (DNS) or http, not both");
      return undefined;
    }
    return { kind: "http", interval, timeout, path: raw.http.path, port: raw.http.port };
  }
  const text = (raw.query ?? ". NS").trim();
  const parts = text.split(/\s+/);
  const name = tryNormalizeDomainName(parts[0] ?? "");
  let qtypeNumber: number | undefined;
  try {
    qtypeNumber = parts.length === 2 ? parseQtype(parts[1]!) : undefined;
  } catch {
    qtypeNumber = undefined;
  }
  if (parts.length !== 2 || name === undefined || qtypeNumber === undefined) {
    check.error(at("query"), `expected "<name> <type>" such as ". NS", got ${describe(raw.query)}`);
    return undefined;
  }
  return { kind: "dns", interval, timeout, query: { name, qtype: qtypeNumber } };
}

function finalizeRoutes(
  written: RawRoute[] | undefined,
  upstreams: readonly UpstreamConfig[],
  files: readonly UpstreamFileEntry[],
  check: Checker,
): RelayRouteConfig[] {
  const names = new Set(upstreams.map((u) => u.name));
  const pending = (name: string) =>
    files.some(
      (f) => name.startsWith(`${f.name}-`) && /^[1-9]\d*$/.test(name.slice(f.name.length + 1)),
    );
  // No routes: one route for "." over every upstream, with the usual defaults.
  // With resolv.conf entries pending the names are not all known yet; the
  // loader's second pass adds it.
  let raw = written;
  if (raw === undefined) {
    if (files.length > 0 || upstreams.length === 0) return [];
    raw = [routeSchema.parse({ upstreams: [...names] })];
  }
  const routeNames = new Set<string>();
  return raw.map((route, j) => {
    const at = (...rest: ConfigPathSegment[]) => ["routes", j, ...rest];
    if (route.name !== undefined) {
      if (routeNames.has(route.name))
        check.error(at("name"), `duplicate route name "${route.name}"`);
      routeNames.add(route.name);
    }
    const listed = new Set<string>();
    route.upstreams.forEach((name, k) => {
      if (!names.has(name) && !pending(name)) {
        check.error(at("upstreams", k), `unknown upstream "${name}"`);
      } else if (listed.has(name)) {
        check.error(at("upstreams", k), `upstream "${name}" is listed twice`);
      }
      listed.add(name);
    });
    const count = route.upstreams.length;
    let serverCount = count;
    if (route.server_count !== undefined) {
      if (route.policy !== "weighted_random") {
        check.error(
          at("server_count"),
          `applies only to policy weighted_random (this route's policy is ${route.policy})`,
        );
      } else if (route.server_count > count) {
        check.error(at("server_count"), `must be between 1 and ${count} (the route's upstreams)`);
      } else {
        serverCount = route.server_count;
      }
    }
    const workerCount = route.worker_count ?? 1;
    if (route.worker_count !== undefined && workerCount > serverCount) {
      const bound =
        serverCount < count ? `${serverCount} (server_count)` : `${count} (the route's upstreams)`;
      check.error(at("worker_count"), `must be between 1 and ${bound}`);
    }
    if (route.hedge_delay !== undefined && workerCount < 2) {
      check.error(
        at("hedge_delay"),
        "staggers parallel attempts, so it needs worker_count of 2 or more",
      );
    }
    if (route.race_continue_on_error && !route.race) {
      check.error(at("race_continue_on_error"), "needs race: true");
    }
    if (check.runtime === "worker") {
      const limit = WORKER_MAX_CONNECTIONS;
      const why = `a Worker may open at most ${limit} simultaneous outgoing connections per request`;
      if (workerCount > limit) {
        check.error(at("worker_count"), `${workerCount} is more than ${limit}: ${why}`);
      }
      if (route.race && serverCount > limit) {
        const where = route.policy === "weighted_random" ? at("server_count") : at("upstreams");
        check.error(
          where,
          `a race queries all ${serverCount} selected upstreams at once, but ${why}; ` +
            `use policy weighted_random with server_count of ${limit} or fewer`,
        );
      }
      if (route.except_file !== undefined) {
        check.error(
          at("except_file"),
          "relay-only key: the edge worker reads no files; list the names inline in except",
        );
      }
    }
    const health =
      route.health_check === undefined
        ? undefined
        : finalizeHealthCheck(route.health_check, (...rest) => at("health_check", ...rest), check);
    const out: RelayRouteConfig = {
      ...(route.name !== undefined ? { name: route.name } : {}),
      zones: route.zones,
      upstreams: route.upstreams,
      policy: route.policy,
      server_count: serverCount,
      worker_count: workerCount,
      ...(route.hedge_delay !== undefined ? { hedge_delay: route.hedge_delay } : {}),
      race: route.race,
      race_continue_on_error: route.race_continue_on_error,
      timeout: route.timeout,
      attempt_count: route.attempt_count,
      fail_timeout: route.fail_timeout,
      ...(health !== undefined ? { health_check: health } : {}),
      except: route.except,
      ...(route.except_file !== undefined && check.runtime === "relay"
        ? { except_file: route.except_file }
        : {}),
      debug: route.debug,
    };
    return out;
  });
}

function finalizeRules(
  raw: RawRule[],
  routes: readonly RouteConfig[],
  check: Checker,
): RuleConfig[] {
  const routeNames = new Set(routes.flatMap((r) => (r.name === undefined ? [] : [r.name])));
  const rules: RuleConfig[] = [];
  raw.forEach((rule, i) => {
    const at = (...rest: ConfigPathSegment[]) => ["rules", i, ...rest];
    const match: RuleMatch = {
      name: rule.match.name ?? [],
      suffix: rule.match.suffix ?? [],
      qtype: rule.match.qtype ?? [],
    };
    if (
      rule.match.name === undefined &&
      rule.match.suffix === undefined &&
      rule.match.qtype === undefined
    ) {
      check.error(at("match"), "needs name, suffix or qtype");
    }
    for (const [action, keys] of Object.entries(RULE_KEYS)) {
      if (action === rule.action) continue;
      for (const key of keys) {
        if (rule[key] !== undefined) check.error(at(key), `only action ${action} takes ${key}`);
      }
    }
    switch (rule.action) {
      case "block":
        rules.push({ match, action: "block", block_with: rule.block_with ?? "nxdomain" });
        break;
      case "local_data": {
        const ips = rule.ips ?? [];
        const txt = rule.txt ?? [];
        if (ips.length === 0 && txt.length === 0 && rule.cname === undefined) {
          check.error(at(), "local_data needs ips, txt or cname");
        }
        if (rule.cname !== undefined && (ips.length > 0 || txt.length > 0)) {
          check.error(
            at("cname"),
            "a CNAME cannot sit beside other data; use cname alone, or ips/txt",
          );
        }
        rules.push({
          match,
          action: "local_data",
          ips,
          txt,
          ...(rule.cname !== undefined ? { cname: rule.cname } : {}),
          ttl: rule.ttl ?? 60,
        });
        break;
      }
      case "rewrite":
        if (rule.rewrite_domain === undefined && rule.rewrite_type === undefined) {
          check.error(at(), "rewrite needs rewrite_domain or rewrite_type");
        }
        rules.push({
          match,
          action: "rewrite",
          ...(rule.rewrite_domain !== undefined ? { rewrite_domain: rule.rewrite_domain } : {}),
          ...(rule.rewrite_type !== undefined ? { rewrite_type: rule.rewrite_type } : {}),
        });
        break;
      case "forward":
        if (rule.route === undefined) {
          check.error(at("route"), "required: the name of the route to forward to");
        } else if (!routeNames.has(rule.route)) {
          check.error(at("route"), `unknown route "${rule.route}" (give the route a name)`);
        }
        rules.push({ match, action: "forward", route: rule.route ?? "" });
        break;
    }
  });
  return rules;
}

function finalizeCommon(raw: RawCommon, check: Checker, relayNames: ReadonlySet<string>) {
  const { upstreams, files } = finalizeUpstreams(raw.upstreams, check, relayNames);
  const routes = finalizeRoutes(raw.routes, upstreams, files, check);
  const rules = finalizeRules(raw.rules, routes, check);
  const cache: CacheConfig = {
    size: raw.cache.size,
    ...(raw.cache.max_bytes !== undefined ? { max_bytes: raw.cache.max_bytes } : {}),
    min_ttl: raw.cache.min_ttl,
    max_ttl: raw.cache.max_ttl,
    negative_ttl: raw.cache.negative_ttl,
    servfail_ttl: raw.cache.servfail_ttl,
    serve_stale: raw.cache.serve_stale,
  };
  if (cache.min_ttl > cache.max_ttl) check.error(["cache", "min_ttl"], "must not be above max_ttl");
  const blocklists: BlocklistConfig[] = [];
  raw.blocklists.forEach((list, i) => {
    const at = ["blocklists", i];
    const given = [list.path, list.url, list.asset].filter((v) => v !== undefined).length;
    if (given !== 1) {
      check.error(at, "needs one of path, url or asset");
    } else if (list.path !== undefined) {
      if (check.runtime === "worker") {
        check.error(
          [...at, "path"],
          "the edge worker reads no files; give the list as a url or a static asset",
        );
      }
      blocklists.push({ path: list.path });
    } else if (list.url !== undefined) {
      blocklists.push({ url: list.url });
    } else if (list.asset !== undefined) {
      if (check.runtime === "relay") {
        check.error(
          [...at, "asset"],
          "a static asset is the worker's (its ASSETS binding); on the relay give the file as path",
        );
      }
      blocklists.push({ asset: list.asset });
    }
  });
  return {
    upstreams,
    files,
    routes,
    cache,
    rules,
    blocklists,
    allowlist: raw.allowlist,
    log: { level: raw.log.level },
  };
}

function isLoopbackHost(address: HostPort): boolean {
  if (address.hostKind === "name") return address.host === "localhost";
  const ip = parseIp(address.host);
  return cidrContains(parseCidr("127.0.0.0/8"), ip) || cidrContains(parseCidr("::1/128"), ip);
}

function finalizeRelay(raw: z.output<typeof relaySchema>, check: Checker): RelayConfig {
  const common = finalizeCommon(raw, check, new Set());
  let listen: ListenConfig;
  if (raw.listen === undefined) {
    const addr: HostPort = { host: "127.0.0.1", hostKind: "ipv4", port: 5053 };
    listen = {
      udp: { addr, reuse_port: false },
      tcp: { addr, ...streamTuningSchema.parse({}) },
    };
  } else {
    const l = raw.listen;
    listen = {};
    if (l.udp) {
      listen.udp = {
        addr: l.udp.addr,
        reuse_port: l.udp.reuse_port,
        ...(l.udp.udp_buffer_size !== undefined ? { udp_buffer_size: l.udp.udp_buffer_size } : {}),
      };
    }
    if (l.tcp) listen.tcp = l.tcp;
    if (l.dot) listen.dot = l.dot;
    if (l.doh) {
      const { cert, key, ...rest } = l.doh;
      if ((cert === undefined) !== (key === undefined)) {
        check.error(
          ["listen", "doh", cert === undefined ? "key" : "cert"],
          "needs both cert and key, or neither",
        );
      }
      if (cert === undefined && !isLoopbackHost(l.doh.addr)) {
        check.warn(
          ["listen", "doh"],
          "without cert and key this DoH listener speaks plain HTTP; keep it behind a TLS-terminating proxy",
        );
      }
      listen.doh = {
        ...rest,
        ...(cert !== undefined ? { cert } : {}),
        ...(key !== undefined ? { key } : {}),
      };
    }
    if (l.origin) {
      const { cert, key, ...rest } = l.origin;
      if ((cert === undefined) !== (key === undefined)) {
        check.error(
          ["listen", "origin", cert === undefined ? "key" : "cert"],
          "needs both cert and key, or neither",
        );
      }
      if (cert === undefined && !isLoopbackHost(l.origin.addr)) {
        check.warn(
          ["listen", "origin"],
          "without cert and key the bearer token crosses the network in clear; add cert and key or use a TLS tunnel",
        );
      }
      listen.origin = {
        ...rest,
        ...(cert !== undefined ? { cert } : {}),
        ...(key !== undefined ? { key } : {}),
      };
    }
    if (l.metrics) listen.metrics = { addr: l.metrics.addr };
    if (!l.udp && !l.tcp && !l.dot && !l.doh && !l.origin) {
      check.error(["listen"], "needs at least one of udp, tcp, dot, doh or origin");
    }
  }
  const allow = raw.allow ?? LOOPBACK_AND_PRIVATE_CIDRS.map(parseCidr);
  if (raw.allow !== undefined && raw.allow.length === 0) {
    check.warn(["allow"], "is empty: every client will get REFUSED");
  }
  let ecs: "auto" | Cidr | undefined;
  if (raw.ecs === true) ecs = "auto";
  else if (typeof raw.ecs === "string") {
    try {
      ecs = parseCidr(raw.ecs);
    } catch (error) {
      if (!isTypedError(error)) throw error;
      check.error(["ecs"], error.message);
    }
  }
  if (ecs !== undefined && raw.bootstrap.length === 0) {
    check.error(["ecs"], "applies to bootstrap queries only, so it needs bootstrap servers");
  }
  if (raw.control.restart_backoff > raw.control.restart_max_backoff) {
    check.error(["control", "restart_backoff"], "must not be above restart_max_backoff");
  }
  return {
    upstreams: common.upstreams as RelayUpstreamConfig[],
    routes: common.routes,
    cache: common.cache,
    rules: common.rules,
    blocklists: common.blocklists,
    allowlist: common.allowlist,
    log: common.log,
    listen,
    allow,
    rate_limit: {
      qps: raw.rate_limit.qps,
      burst: raw.rate_limit.burst ?? Math.max(1, raw.rate_limit.qps * 2),
      max_in_flight: raw.rate_limit.max_in_flight,
    },
    bootstrap: raw.bootstrap,
    ...(ecs !== undefined ? { ecs } : {}),
    control: raw.control,
    workers: raw.workers,
    plugins: finalizePlugins(raw.plugins, check),
    metrics: raw.metrics.statsd === undefined ? {} : { statsd: raw.metrics.statsd },
    upstream_files: common.files,
  };
}

/** Default per-call instruction budget of a Lua entry (shared/policy/lua-policy.ts). */
const LUA_MAX_INSTRUCTIONS = 100_000;

/** Exec and Lua entries each take only their own keys; the worker runs only Lua. */
function finalizePlugins(raw: z.output<typeof pluginsSchema>, check: Checker): PluginsConfig {
  const entries = raw.entries.map((entry, i): PluginEntryConfig => {
    const at = (key: string) => ["plugins", "entries", i, key];
    if (entry.runtime === "lua") {
      for (const key of ["args", "mode"] as const) {
        if (entry[key] !== undefined)
          check.error(at(key), "applies to exec entries, not runtime: lua");
      }
      for (const key of ["timeout", "timeout_ms"] as const) {
        if (entry[key] !== undefined) {
          check.error(
            at(key),
            "a lua entry is bounded by max_instructions, not a clock (workerd's clock stands still while a script runs)",
          );
        }
      }
      const max_instructions = entry.max_instructions ?? LUA_MAX_INSTRUCTIONS;
      return { runtime: "lua", name: entry.name, path: entry.path, max_instructions };
    }
    if (check.runtime === "worker") {
      check.error(
        at("runtime"),
        "the worker runs runtime: lua scripts bundled at deploy; exec plugins run on the relay (the worker has no processes to start)",
      );
    }
    if (entry.max_instructions !== undefined)
      check.error(at("max_instructions"), "applies to runtime: lua entries only");
    if (!entry.path.startsWith("/")) {
      check.error(
        at("path"),
        "must be an absolute path (plugins run with an empty environment, no PATH)",
      );
    }
    return {
      runtime: "exec",
      name: entry.name,
      path: entry.path,
      args: entry.args ?? [],
      mode: entry.mode ?? "per_query",
      timeout: entry.timeout ?? entry.timeout_ms ?? raw.timeout,
    };
  });
  return { on_error: raw.on_error, entries: raw.enabled ? entries : [] };
}

function finalizeWorker(raw: z.output<typeof workerSchema>, check: Checker): WorkerConfig {
  const relayNames = new Set<string>();
  const relays: RelayEndpointConfig[] = raw.relays.map((relay, i) => {
    if (relayNames.has(relay.name))
      check.error(["relays", i, "name"], `duplicate relay name "${relay.name}"`);
    relayNames.add(relay.name);
    const url = new URL(relay.url.href);
    if (url.search !== "") check.error(["relays", i, "url"], "a relay URL takes no query string");
    if (!url.pathname.endsWith("/")) url.pathname = `${url.pathname}/`;
    const bracketed = url.hostname.startsWith("[");
    const host = bracketed ? url.hostname.slice(1, -1) : url.hostname;
    const kind = bracketed ? "ipv6" : /^[\d.]+$/.test(host) ? "ipv4" : "name";
    if (url.protocol === "http:" && !isPrivateHost(host, kind)) {
      check.warn(
        ["relays", i, "url"],
        "http:// sends the relay token and queries unencrypted to a public host; use https://",
      );
    }
    return { name: relay.name, url: url.href, token_secret: relay.token_secret };
  });
  const common = finalizeCommon(raw, check, relayNames);
  return {
    upstreams: common.upstreams as WorkerUpstreamConfig[],
    routes: common.routes.map(({ except_file: _ignored, ...route }) => route),
    cache: common.cache,
    rules: common.rules,
    blocklists: common.blocklists,
    allowlist: common.allowlist,
    log: common.log,
    relays,
    plugins: finalizePlugins(raw.plugins, check),
  };
}

// -------------------------------------------------------------------- parse

function parseWith<S extends z.ZodType, T>(
  schema: S,
  input: unknown,
  runtime: Runtime,
  finalize: (raw: z.output<S>, check: Checker) => T,
): ParsedConfig<T> {
  const result = schema.safeParse(input, { error: builtInMessage });
  if (!result.success)
    throw new ConfigError(problemsFromIssues(result.error.issues, input, runtime));
  const check = createChecker(runtime);
  const config = finalize(result.data, check);
  if (check.problems.length > 0) throw new ConfigError(check.problems);
  return { config, warnings: check.warnings.map(formatProblem) };
}

/**
 * Validates and normalizes a relay config (the parsed YAML document).
 * Throws ConfigError. resolv.conf (`file:`) entries are left in
 * `upstream_files` for loadRelayConfig to expand.
 */
export function parseRelayConfig(input: unknown): ParsedConfig<RelayConfig> {
  return parseWith(relaySchema, input, "relay", finalizeRelay);
}

/** Validates and normalizes a worker config (the JSON value from wrangler.toml [vars]). Throws ConfigError. */
export function parseWorkerConfig(input: unknown): ParsedConfig<WorkerConfig> {
  return parseWith(workerSchema, input, "worker", finalizeWorker);
}
