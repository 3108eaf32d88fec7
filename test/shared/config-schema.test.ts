import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { formatCidr } from "../../shared/config/ip.ts";
import {
  ConfigError,
  formatConfigPath,
  parseRelayConfig,
  parseWorkerConfig,
  WORKER_MAX_CONNECTIONS,
} from "../../shared/config/schema.ts";
import { SPEC_EXAMPLE } from "../fixtures/spec-example.ts";

/** The ConfigError a parse throws. */
function failure(parse: () => unknown): ConfigError {
  try {
    parse();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError, but the config parsed");
}

const relayError = (input: unknown) => failure(() => parseRelayConfig(input)).message;
const workerError = (input: unknown) => failure(() => parseWorkerConfig(input)).message;
const one = { upstreams: [{ name: "a", url: "1.1.1.1" }] };
const httpsOne = { upstreams: [{ name: "a", url: "https://x.example" }] };
const withRoute = (route: Record<string, unknown>, upstreams = one.upstreams) => ({
  upstreams,
  routes: [{ upstreams: upstreams.map((u) => u.name), ...route }],
});
const many = (n: number, scheme = "udp://10.0.0.") =>
  Array.from({ length: n }, (_, i) => ({ name: `u${i}`, url: `${scheme}${i + 1}` }));

describe("the every-section example", () => {
  const { config, warnings } = parseRelayConfig(parseYaml(SPEC_EXAMPLE));

  it("parses without warnings", () => {
    expect(warnings).toEqual([]);
  });

  it("normalizes listeners, upstreams and routes", () => {
    expect(config.listen.udp?.addr).toEqual({ host: "127.0.0.1", hostKind: "ipv4", port: 5053 });
    expect(config.listen.dot).toMatchObject({
      addr: { host: "0.0.0.0", port: 853 },
      cert: "/etc/doh-edge/tls.pem",
    });
    expect(config.listen.origin?.token_env).toBe("RELAY_TOKEN");
    expect(config.listen.metrics?.addr.port).toBe(9153);
    expect(config.allow.map(formatCidr)).toEqual([
      "127.0.0.0/8",
      "::1/128",
      "10.0.0.0/8",
      "172.16.0.0/12",
      "192.168.0.0/16",
    ]);
    expect(config.upstreams.map((u) => [u.name, u.url.protocol, u.url.port, u.weight])).toEqual([
      ["edge", "https", 443, 100],
      ["quad9", "tls", 853, 100],
      ["adguard", "quic", 853, 50],
    ]);
    expect(config.upstreams[1]?.pool).toEqual({
      size: 4,
      max_in_flight: 100,
      idle_timeout: 8000,
      connect_timeout: 2000,
      handshake_timeout: 3000,
      max_retries: 2,
    });
    expect(config.routes[1]).toMatchObject({
      zones: ["corp.example."],
      policy: "weighted_random",
      server_count: 2,
      race: true,
      race_continue_on_error: true,
      except: ["public.corp.example."],
    });
    expect(config.cache).toMatchObject({ size: 10000, min_ttl: 0, max_ttl: 86_400_000 });
    expect(config.rules[1]).toEqual({
      match: { name: ["printer.lan."], suffix: [], qtype: [] },
      action: "local_data",
      ips: ["192.168.1.20"],
      txt: [],
      ttl: 60,
    });
  });
});

describe("defaults", () => {
  const { config } = parseRelayConfig({ ...one, routes: [{ upstreams: ["a"] }] });
  const route = config.routes[0]!;

  it("fills a route's defaults", () => {
    expect(route.zones).toEqual(["."]);
    expect(route.policy).toBe("sequential");
    expect(route.worker_count).toBe(1);
    expect(route.attempt_count).toBe(3);
    expect(route.fail_timeout).toBe(2000);
    expect(route.timeout).toBe(5000);
    expect(route.race).toBe(false);
    expect(route.race_continue_on_error).toBe(false);
    expect(route.hedge_delay).toBeUndefined();
    expect(route.server_count).toBe(1);
    expect(route.except).toEqual([]);
    expect(route.debug).toBe(false);
  });

  it("fills an upstream's defaults: weight 100, POST for DoH, a pool on the relay", () => {
    const { config: c } = parseRelayConfig({
      upstreams: [{ name: "d", url: "https://dns.example" }],
    });
    const upstream = c.upstreams[0]!;
    expect(upstream.weight).toBe(100);
    expect(upstream.method).toBe("POST");
    expect(upstream.pool).toEqual({
      size: 2,
      max_in_flight: 100,
      idle_timeout: 8000,
      connect_timeout: 2000,
      handshake_timeout: 3000,
      max_retries: 2,
    });
    expect(config.upstreams[0]?.method).toBeUndefined();
  });

  it("routes everything to every upstream when no routes are given", () => {
    const { config: c } = parseRelayConfig({ upstreams: many(2) });
    expect(c.routes).toHaveLength(1);
    expect(c.routes[0]).toMatchObject({
      zones: ["."],
      upstreams: ["u0", "u1"],
      policy: "sequential",
    });
  });

  it("listens on udp and tcp 127.0.0.1:5053 and allows loopback and private ranges", () => {
    expect(config.listen.udp?.addr).toEqual({ host: "127.0.0.1", hostKind: "ipv4", port: 5053 });
    expect(config.listen.tcp?.addr).toEqual({ host: "127.0.0.1", hostKind: "ipv4", port: 5053 });
    expect(config.listen.dot).toBeUndefined();
    expect(config.allow.map(formatCidr)).toEqual([
      "127.0.0.0/8",
      "::1/128",
      "10.0.0.0/8",
      "172.16.0.0/12",
      "192.168.0.0/16",
      "fc00::/7",
      "fe80::/10",
    ]);
  });

  it("fills cache, control, rate limit and log defaults", () => {
    expect(config.cache).toEqual({
      size: 10000,
      min_ttl: 0,
      max_ttl: 86_400_000,
      negative_ttl: 3_600_000,
      servfail_ttl: 5000,
      serve_stale: false,
    });
    expect(config.control).toEqual({
      restart_backoff: 200,
      restart_max_backoff: 5000,
      max_consecutive_failure: 0,
      min_stable_run: 10_000,
    });
    expect(config.rate_limit).toEqual({ qps: 500, burst: 1000, max_in_flight: 200 });
    expect(config.log).toEqual({ level: "info" });
    expect(config.bootstrap).toEqual([]);
    expect(config.ecs).toBeUndefined();
    expect(config.metrics).toEqual({});
  });
});

describe("config errors name the key path in one line", () => {
  it("bad durations", () => {
    expect(relayError(withRoute({ timeout: "5x" }))).toBe(
      'routes[0].timeout: invalid duration "5x": unknown unit "x" (use ms, s, m, h, d)',
    );
    expect(relayError(withRoute({ fail_timeout: 2 }))).toBe(
      'routes[0].fail_timeout: expected a duration string such as "5s", got 2',
    );
    expect(relayError(withRoute({ timeout: "0s" }))).toBe(
      "routes[0].timeout: must be longer than 0s",
    );
    expect(relayError({ ...one, cache: { min_ttl: "1500ms" } })).toBe(
      "cache.min_ttl: must be a whole number of seconds (it becomes a DNS TTL)",
    );
    expect(
      relayError({ upstreams: [{ name: "a", url: "tls://x", pool: { idle_timeout: "-1s" } }] }),
    ).toBe(
      'upstreams[0].pool.idle_timeout: invalid duration "-1s": negative durations are not allowed',
    );
  });

  it("bad CIDRs", () => {
    expect(relayError({ ...one, allow: ["10.0.0.0/8", "10.0.0.1/8"] })).toBe(
      'allow[1]: "10.0.0.1/8": host bits are set after /8; did you mean 10.0.0.0/8?',
    );
    expect(relayError({ ...one, allow: ["192.168.0.0/33"] })).toBe(
      'allow[0]: "192.168.0.0/33": prefix length must be a number from 0 to 32',
    );
    expect(relayError({ ...one, bootstrap: ["9.9.9.9"], ecs: "203.0.113.0/33" })).toBe(
      'ecs: "203.0.113.0/33": prefix length must be a number from 0 to 32',
    );
  });

  it("duplicate upstream names", () => {
    const upstreams = [...many(3), { name: "u1", url: "9.9.9.9" }];
    const error = failure(() => parseRelayConfig({ upstreams }));
    expect(error.message).toBe('upstreams[3].name: duplicate upstream name "u1"');
    expect(error.path).toEqual(["upstreams", 3, "name"]);
    expect(error.code).toBe("invalid_config");
  });

  it("routes naming unknown upstreams", () => {
    const error = failure(() =>
      parseRelayConfig({ upstreams: many(2), routes: [{ upstreams: ["u0", "quad8"] }] }),
    );
    expect(error.message).toBe('routes[0].upstreams[1]: unknown upstream "quad8"');
    expect(error.path).toEqual(["routes", 0, "upstreams", 1]);
  });

  it("weights outside 1–100", () => {
    expect(relayError({ upstreams: [{ name: "a", url: "1.1.1.1", weight: 0 }] })).toBe(
      "upstreams[0].weight: must be between 1 and 100",
    );
    expect(relayError({ upstreams: [{ name: "a", url: "1.1.1.1", weight: 101 }] })).toBe(
      "upstreams[0].weight: must be between 1 and 100",
    );
    expect(relayError({ upstreams: [{ name: "a", url: "1.1.1.1", weight: 2.5 }] })).toBe(
      "upstreams[0].weight: expected an integer, got 2.5",
    );
  });

  it("race_continue_on_error without race", () => {
    expect(relayError(withRoute({ race_continue_on_error: true }))).toBe(
      "routes[0].race_continue_on_error: needs race: true",
    );
  });

  it("bad upstream URLs", () => {
    expect(relayError({ upstreams: [{ name: "a", url: "quic://host:99999" }] })).toBe(
      "upstreams[0].url: quic://host:99999: port out of range",
    );
    expect(relayError({ upstreams: [{ name: "a", url: "ftp://x" }] })).toBe(
      'upstreams[0].url: ftp://x: unsupported scheme "ftp" (use udp, tcp, tls, https, http, h3 or quic)',
    );
  });

  it("counts the other problems", () => {
    const error = failure(() =>
      parseRelayConfig({
        upstreams: [
          { name: "a", url: "1.1.1.1", weight: 0 },
          { name: "b", url: "tls://", weight: 200 },
        ],
      }),
    );
    expect(error.message).toBe(
      "upstreams[0].weight: must be between 1 and 100 (and 2 more problems)",
    );
    expect(error.problems.map((p) => formatConfigPath(p.path))).toEqual([
      "upstreams[0].weight",
      "upstreams[1].url",
      "upstreams[1].weight",
    ]);
    const single = failure(() =>
      parseRelayConfig({ upstreams: many(2), routes: [{ upstreams: ["x", "y"] }] }),
    );
    expect(single.message).toBe(
      'routes[0].upstreams[0]: unknown upstream "x" (and 1 more problem)',
    );
  });

  it("unknown keys, with hints for other spellings", () => {
    expect(relayError({ upstreams: [{ name: "a", url: "1.1.1.1", colour: "red" }] })).toBe(
      "upstreams[0].colour: unknown key",
    );
    expect(relayError(withRoute({ "worker-count": 2 }))).toBe(
      "routes[0].worker-count: unknown key; keys are snake_case: worker_count",
    );
    expect(relayError(withRoute({ weighted_random_server_count: 2 }))).toBe(
      "routes[0].weighted_random_server_count: unknown key; use server_count",
    );
    expect(relayError({ ...one, "odd key": 1 })).toBe('["odd key"]: unknown key');
  });

  it("offers the snake_case spelling of any key the schema takes, read from the schema itself", () => {
    // Keys a hand-kept list once missed: log.level, listener addr, match.suffix.
    expect(relayError({ ...one, log: { Level: "info" } })).toBe(
      "log.Level: unknown key; keys are snake_case: level",
    );
    const tcp = failure(() =>
      parseRelayConfig({ ...one, listen: { tcp: { ADDR: "127.0.0.1:53" } } }),
    );
    expect(tcp.problems).toContainEqual({
      path: ["listen", "tcp", "ADDR"],
      message: "unknown key; keys are snake_case: addr",
    });
    expect(
      workerError({ ...httpsOne, rules: [{ match: { Suffix: "x." }, action: "block" }] }),
    ).toBe("rules[0].match.Suffix: unknown key; keys are snake_case: suffix");
    // The other runtime's top-level keys, so that the next message can say whose they are.
    expect(relayError({ ...one, Relays: [] })).toBe(
      "Relays: unknown key; keys are snake_case: relays",
    );
    expect(workerError({ ...httpsOne, Listen: {} })).toBe(
      "Listen: unknown key; keys are snake_case: listen",
    );
  });

  it("wrong types and missing keys", () => {
    expect(relayError({})).toBe("upstreams: required");
    expect(relayError({ upstreams: [] })).toBe("upstreams: needs at least one upstream");
    expect(relayError({ upstreams: [{ url: "1.1.1.1" }] })).toBe("upstreams[0].name: required");
    expect(relayError({ upstreams: [{ name: "a" }] })).toBe(
      "upstreams[0].url: required (or file: for a resolv.conf)",
    );
    expect(relayError(withRoute({ race: "yes" }))).toBe(
      'routes[0].race: expected true or false, got "yes"',
    );
    expect(relayError(withRoute({ policy: "fastest_first" }))).toBe(
      "routes[0].policy: expected sequential, round_robin, random, weighted_random, least_outstanding, " +
        'least_total, failover, availability, fastest; got "fastest_first"',
    );
    expect(relayError([1, 2])).toBe("the config must be a mapping of settings, got a list");
    expect(relayError(null)).toBe("the config must be a mapping of settings, got null");
    expect(relayError({ upstreams: [{ name: "has space", url: "1.1.1.1" }] })).toMatch(
      /^upstreams\[0\]\.name: upstream names may hold only letters/,
    );
  });

  it("invalid zone and except names", () => {
    expect(relayError(withRoute({ zones: ["corp.example.", "*.example."] }))).toBe(
      'routes[0].zones[1]: "*.example." is not a domain name: wildcards (*) are not supported; ' +
        "a name already covers its subdomains",
    );
    expect(relayError(withRoute({ except: ["a..b"] }))).toBe(
      'routes[0].except[0]: "a..b" is not a domain name: empty label (two dots in a row, or a leading dot)',
    );
    expect(relayError(withRoute({ zones: [] }))).toBe("routes[0].zones: needs at least one zone");
  });
});

describe("routes", () => {
  it("normalizes zones and except names", () => {
    const { config } = parseRelayConfig(
      withRoute({ zones: ["Corp.Example"], except: ["Public.CORP.example"] }),
    );
    expect(config.routes[0]?.zones).toEqual(["corp.example."]);
    expect(config.routes[0]?.except).toEqual(["public.corp.example."]);
  });

  it("checks server_count against the policy and the upstream count", () => {
    const upstreams = many(3);
    expect(relayError(withRoute({ server_count: 2 }, upstreams))).toBe(
      "routes[0].server_count: applies only to policy weighted_random (this route's policy is sequential)",
    );
    expect(relayError(withRoute({ policy: "weighted_random", server_count: 4 }, upstreams))).toBe(
      "routes[0].server_count: must be between 1 and 3 (the route's upstreams)",
    );
    const { config } = parseRelayConfig(withRoute({ policy: "weighted_random" }, upstreams));
    expect(config.routes[0]?.server_count).toBe(3);
  });

  it("bounds worker_count by the upstreams (or server_count)", () => {
    const upstreams = many(3);
    expect(relayError(withRoute({ worker_count: 4 }, upstreams))).toBe(
      "routes[0].worker_count: must be between 1 and 3 (the route's upstreams)",
    );
    expect(
      relayError(
        withRoute({ policy: "weighted_random", server_count: 2, worker_count: 3 }, upstreams),
      ),
    ).toBe("routes[0].worker_count: must be between 1 and 2 (server_count)");
    expect(relayError(withRoute({ worker_count: 0 }, upstreams))).toBe(
      "routes[0].worker_count: must be at least 1",
    );
  });

  it("reads hedge_delay as a duration or auto, and needs parallel attempts for it", () => {
    const upstreams = many(2);
    const { config } = parseRelayConfig(
      withRoute({ worker_count: 2, hedge_delay: "50ms" }, upstreams),
    );
    expect(config.routes[0]?.hedge_delay).toBe(50);
    const auto = parseRelayConfig(withRoute({ worker_count: 2, hedge_delay: "auto" }, upstreams));
    expect(auto.config.routes[0]?.hedge_delay).toBe("auto");
    expect(relayError(withRoute({ hedge_delay: "50ms" }, upstreams))).toBe(
      "routes[0].hedge_delay: staggers parallel attempts, so it needs worker_count of 2 or more",
    );
    expect(relayError(withRoute({ worker_count: 2, hedge_delay: "soon" }, upstreams))).toBe(
      'routes[0].hedge_delay: invalid duration "soon": unexpected "soon" (write e.g. "1m30s" with units ms, s, m, h, d)',
    );
  });

  it("accepts attempt_count 0 (never mark down)", () => {
    expect(parseRelayConfig(withRoute({ attempt_count: 0 })).config.routes[0]?.attempt_count).toBe(
      0,
    );
  });

  it("rejects an upstream listed twice in one route", () => {
    expect(relayError({ ...one, routes: [{ upstreams: ["a", "a"] }] })).toBe(
      'routes[0].upstreams[1]: upstream "a" is listed twice',
    );
  });

  it("normalizes health checks: a DNS probe by default, or HTTP", () => {
    const dns = parseRelayConfig(withRoute({ health_check: {} })).config.routes[0]?.health_check;
    expect(dns).toEqual({
      kind: "dns",
      interval: 4000,
      timeout: 2000,
      query: { name: ".", qtype: 2 },
    });
    const custom = parseRelayConfig(
      withRoute({ health_check: { interval: "10s", query: "example.com AAAA" } }),
    );
    expect(custom.config.routes[0]?.health_check).toEqual({
      kind: "dns",
      interval: 10_000,
      timeout: 2000,
      query: { name: "example.com.", qtype: 28 },
    });
    const http = parseRelayConfig(withRoute({ health_check: { http: { port: 8080 } } }));
    expect(http.config.routes[0]?.health_check).toEqual({
      kind: "http",
      interval: 4000,
      timeout: 2000,
      path: "/health",
      port: 8080,
    });
    expect(relayError(withRoute({ health_check: { query: "example.com" } }))).toBe(
      'routes[0].health_check.query: expected "<name> <type>" such as ". NS", got "example.com"',
    );
    expect(relayError(withRoute({ health_check: { query: ". NS", http: { port: 80 } } }))).toBe(
      "routes[0].health_check.query: a health check probes with either query (DNS) or http, not both",
    );
  });

  it("rejects duplicate route names", () => {
    expect(
      relayError({
        ...one,
        routes: [
          { name: "r", upstreams: ["a"] },
          { name: "r", upstreams: ["a"] },
        ],
      }),
    ).toBe('routes[1].name: duplicate route name "r"');
  });
});

describe("upstream options", () => {
  it("allows method only on DoH and TLS options only on TLS", () => {
    expect(relayError({ upstreams: [{ name: "a", url: "1.1.1.1", method: "GET" }] })).toBe(
      "upstreams[0].method: only DoH upstreams (https, http, h3) take a method; this one is udp://",
    );
    expect(
      relayError({ upstreams: [{ name: "a", url: "tcp://1.1.1.1", tls_servername: "x.example" }] }),
    ).toBe(
      "upstreams[0].tls_servername: only TLS upstreams (tls, https, h3, quic) take tls_servername; this one is tcp://",
    );
    expect(relayError({ upstreams: [{ name: "a", url: "tls://1.1.1.1", cert: "/c.pem" }] })).toBe(
      "upstreams[0].cert: a client certificate needs both cert and key; add key",
    );
    const { config } = parseRelayConfig({
      upstreams: [{ name: "a", url: "https://dns.example", method: "GET", timeout: "1500ms" }],
    });
    expect(config.upstreams[0]).toMatchObject({ method: "GET", timeout: 1500 });
  });

  it("warns (does not fail) for plain http to a public host", () => {
    const { warnings } = parseRelayConfig({
      upstreams: [
        { name: "lan", url: "http://192.168.1.2:8080/dns-query" },
        { name: "public", url: "http://doh.example.com/dns-query" },
      ],
    });
    expect(warnings).toEqual([
      "upstreams[1].url: http://doh.example.com/dns-query: http:// sends queries unencrypted to a public host; " +
        "use https://, or keep http:// only behind a TLS-terminating tunnel",
    ]);
  });
});

describe("relay-only rules", () => {
  it("rejects via (edge-only)", () => {
    expect(relayError({ upstreams: [{ name: "a", url: "tls://9.9.9.9", via: "home" }] })).toBe(
      "upstreams[0].via: edge-only key: the relay reaches its upstreams itself; remove via",
    );
  });

  it("takes h3:// with a method and TLS options, as for https://", () => {
    const { config } = parseRelayConfig({
      upstreams: [
        {
          name: "a",
          url: "h3://dns.example:8443/q",
          method: "GET",
          tls_servername: "dns.test",
          pool: { max_in_flight: 50 },
        },
      ],
    });
    const upstream = config.upstreams[0];
    expect(upstream?.url).toMatchObject({ protocol: "h3", port: 8443, path: "/q" });
    expect(upstream?.method).toBe("GET");
    expect(upstream?.tls_servername).toBe("dns.test");
    expect(upstream?.pool.max_in_flight).toBe(50);
  });

  it("rejects the worker's relays section", () => {
    expect(relayError({ ...one, relays: [] })).toBe(
      "relays: worker-only setting; the relay does not use it (upstreams on the worker name a relay with via)",
    );
  });

  it("accepts resolv.conf entries and routes naming their expanded upstreams", () => {
    const { config } = parseRelayConfig({
      upstreams: [{ file: "/etc/resolv.conf" }, { name: "lan", file: "/etc/lan.conf" }, ...many(1)],
      routes: [{ upstreams: ["resolv-1", "lan-2", "u0"] }],
    });
    expect(config.upstream_files).toEqual([
      { index: 0, file: "/etc/resolv.conf", name: "resolv" },
      { index: 1, file: "/etc/lan.conf", name: "lan" },
    ]);
    expect(config.upstreams.map((u) => u.name)).toEqual(["u0"]);
    expect(relayError({ upstreams: [{ file: "/etc/resolv.conf", weight: 5 }] })).toBe(
      "upstreams[0].weight: a file: entry takes only name (the prefix of the expanded upstreams' names)",
    );
    expect(relayError({ upstreams: [{ file: "/a" }, { file: "/b" }] })).toBe(
      'upstreams[1].file: another file: entry already uses the name prefix "resolv"; give this one a different name',
    );
  });

  it("parses listeners given as strings or mappings", () => {
    const { config } = parseRelayConfig({
      ...one,
      listen: {
        udp: { addr: ":53", reuse_port: true, udp_buffer_size: 4_194_304 },
        tcp: { addr: "[::]:53", idle_timeout: "30s", max_connections: 50 },
      },
    });
    expect(config.listen.udp).toEqual({
      addr: { host: "0.0.0.0", hostKind: "ipv4", port: 53 },
      reuse_port: true,
      udp_buffer_size: 4_194_304,
    });
    expect(config.listen.tcp).toEqual({
      addr: { host: "::", hostKind: "ipv6", port: 53 },
      reuse_port: false,
      read_timeout: 5000,
      write_timeout: 5000,
      idle_timeout: 30_000,
      max_connections: 50,
      max_queries_per_connection: 0,
    });
  });

  it("names bad listener settings", () => {
    expect(relayError({ ...one, listen: { udp: "127.0.0.1" } })).toBe(
      'listen.udp: "127.0.0.1": missing port (write e.g. "127.0.0.1:53")',
    );
    expect(
      relayError({ ...one, listen: { udp: { addr: "127.0.0.1:53", idle_timeout: "5s" } } }),
    ).toBe("listen.udp.idle_timeout: applies to tcp, dot, doh and origin listeners, not udp");
    expect(
      relayError({ ...one, listen: { tcp: { addr: "127.0.0.1:53", udp_buffer_size: 9000 } } }),
    ).toBe("listen.tcp.udp_buffer_size: applies only to the udp listener");
    expect(relayError({ ...one, listen: { dot: { addr: "0.0.0.0:853" } } })).toBe(
      "listen.dot.cert: required (and 1 more problem)",
    );
    expect(relayError({ ...one, listen: { metrics: "127.0.0.1:9153" } })).toBe(
      "listen: needs at least one of udp, tcp, dot, doh or origin",
    );
  });

  it("warns about an origin endpoint without TLS on a non-loopback address", () => {
    const { warnings } = parseRelayConfig({ ...one, listen: { origin: "0.0.0.0:8853" } });
    expect(warnings).toEqual([
      "listen.origin: without cert and key the bearer token crosses the network in clear; " +
        "add cert and key or use a TLS tunnel",
    ]);
  });

  it("needs bootstrap servers for ecs and IP addresses for bootstrap", () => {
    expect(relayError({ ...one, ecs: true })).toBe(
      "ecs: applies to bootstrap queries only, so it needs bootstrap servers",
    );
    expect(relayError({ ...one, bootstrap: ["dns.google"] })).toBe(
      'bootstrap[0]: "dns.google": a bootstrap server must be an IP address',
    );
    const { config } = parseRelayConfig({
      ...one,
      bootstrap: ["9.9.9.11", "[2620:fe::11]:5353"],
      ecs: true,
    });
    expect(config.bootstrap).toEqual([
      { host: "9.9.9.11", hostKind: "ipv4", port: 53 },
      { host: "2620:fe::11", hostKind: "ipv6", port: 5353 },
    ]);
    expect(config.ecs).toBe("auto");
    const fixed = parseRelayConfig({ ...one, bootstrap: ["8.8.8.8"], ecs: "203.0.113.0/24" }).config
      .ecs;
    expect(fixed === "auto" || fixed === undefined ? fixed : formatCidr(fixed)).toBe(
      "203.0.113.0/24",
    );
  });

  it("checks the control section", () => {
    expect(relayError({ ...one, control: { restart_backoff: "10s" } })).toBe(
      "control.restart_backoff: must not be above restart_max_backoff",
    );
  });

  it("takes workers as a count or auto, default 1", () => {
    expect(parseRelayConfig(one).config.workers).toBe(1);
    expect(parseRelayConfig({ ...one, workers: 4 }).config.workers).toBe(4);
    expect(parseRelayConfig({ ...one, workers: "auto" }).config.workers).toBe("auto");
    for (const bad of [0, 1.5, 257, "all"]) {
      expect(relayError({ ...one, workers: bad })).toBe(
        'workers: expected a number of processes from 1 to 256, or "auto" (one per core)',
      );
    }
  });
});

describe("the edge worker", () => {
  const relays = [{ name: "home", url: "https://relay.example.net:8853" }];

  it("cannot speak udp, tcp or quic without a relay, and says what to do", () => {
    for (const scheme of ["udp", "tcp", "quic"]) {
      expect(workerError({ upstreams: [{ name: "a", url: `${scheme}://9.9.9.9` }] })).toBe(
        `upstreams[0].url: the edge worker cannot speak ${scheme}://; add via: <relay name> to reach it through a relay`,
      );
    }
    expect(workerError({ upstreams: [{ name: "a", url: "9.9.9.9" }] })).toMatch(
      /cannot speak udp:\/\//,
    );
  });

  it("reaches them through a relay named with via", () => {
    const { config } = parseWorkerConfig({
      relays,
      upstreams: [
        { name: "quad9", url: "tls://9.9.9.9", via: "home" },
        { name: "cf", url: "https://cloudflare-dns.com/dns-query" },
      ],
    });
    expect(config.upstreams[0]?.via).toBe("home");
    expect(config.upstreams[1]?.via).toBeUndefined();
    expect(config.relays).toEqual([
      { name: "home", url: "https://relay.example.net:8853/", token_secret: "RELAY_TOKEN" },
    ]);
    expect(
      workerError({ relays, upstreams: [{ name: "a", url: "quic://x.example", via: "away" }] }),
    ).toBe('upstreams[0].via: unknown relay "away" (relays: home)');
  });

  it("speaks tls:// itself (one socket per query) with tls_servername, but not ca/cert/key", () => {
    const { config } = parseWorkerConfig({
      upstreams: [{ name: "q9", url: "tls://9.9.9.9", tls_servername: "dns.quad9.net" }],
    });
    expect(config.upstreams[0]).toMatchObject({ tls_servername: "dns.quad9.net" });
    expect(config.upstreams[0]?.url.protocol).toBe("tls");
    expect(
      workerError({ upstreams: [{ name: "a", url: "tls://9.9.9.9", ca: "/etc/ca.pem" }] }),
    ).toMatch(/^upstreams\[0\]\.ca: the edge worker verifies against the platform's CA store/);
  });

  it("fetches h3:// itself, or through a relay (which speaks HTTP/3)", () => {
    const { config } = parseWorkerConfig({ upstreams: [{ name: "a", url: "h3://dns.example" }] });
    expect(config.upstreams[0]?.url.protocol).toBe("h3");
    const via = parseWorkerConfig({
      relays,
      upstreams: [{ name: "a", url: "h3://dns.example", via: "home" }],
    });
    expect(via.config.upstreams[0]?.via).toBe("home");
  });

  it("rejects TLS options fetch cannot honour", () => {
    expect(
      workerError({
        upstreams: [{ name: "a", url: "https://9.9.9.9", tls_servername: "dns.quad9.net" }],
      }),
    ).toBe(
      "upstreams[0].tls_servername: the edge worker's fetch cannot set tls_servername; " +
        "reach this upstream through a relay (via) to use it",
    );
  });

  it(`allows at most ${WORKER_MAX_CONNECTIONS} attempts at once, and says why`, () => {
    expect(WORKER_MAX_CONNECTIONS).toBe(6);
    const upstreams = many(8, "https://10.0.0.");
    expect(workerError(withRoute({ worker_count: 7 }, upstreams))).toBe(
      "routes[0].worker_count: 7 is more than 6: a Worker may open at most 6 simultaneous " +
        "outgoing connections per request",
    );
    expect(
      parseWorkerConfig(withRoute({ worker_count: 6 }, upstreams)).config.routes[0]?.worker_count,
    ).toBe(6);
    // The relay has no such limit.
    expect(
      parseRelayConfig(withRoute({ worker_count: 7 }, many(8))).config.routes[0]?.worker_count,
    ).toBe(7);
  });

  it("bounds a race's server_count by the connection limit", () => {
    const upstreams = many(8, "https://10.0.0.");
    expect(workerError(withRoute({ race: true }, upstreams))).toBe(
      "routes[0].upstreams: a race queries all 8 selected upstreams at once, but a Worker may open at most 6 " +
        "simultaneous outgoing connections per request; use policy weighted_random with server_count of 6 or fewer",
    );
    expect(
      workerError(withRoute({ race: true, policy: "weighted_random", server_count: 7 }, upstreams)),
    ).toMatch(/^routes\[0\]\.server_count: a race queries all 7 selected upstreams at once/);
    const ok = parseWorkerConfig(
      withRoute({ race: true, policy: "weighted_random", server_count: 6 }, upstreams),
    );
    expect(ok.config.routes[0]?.server_count).toBe(6);
  });

  it("rejects relay-only settings with a message saying so", () => {
    expect(
      workerError({ upstreams: [{ name: "a", url: "https://x.example", pool: { size: 2 } }] }),
    ).toBe(
      "upstreams[0].pool: relay-only key: the edge worker keeps no connection pools; remove pool",
    );
    // The worker does not load the pool's schema: whatever the pool holds, the key is refused.
    expect(
      workerError({ upstreams: [{ name: "a", url: "https://x.example", pool: { size: 0 } }] }),
    ).toBe(
      "upstreams[0].pool: relay-only key: the edge worker keeps no connection pools; remove pool",
    );
    expect(workerError({ upstreams: [{ file: "/etc/resolv.conf" }] })).toBe(
      "upstreams[0].file: a resolv.conf entry works only on the relay (the edge worker reads no files); " +
        "list the upstreams with url",
    );
    expect(
      workerError({
        upstreams: [{ name: "a", url: "https://x.example" }],
        routes: [{ upstreams: ["a"], except_file: "/x" }],
      }),
    ).toBe(
      "routes[0].except_file: relay-only key: the edge worker reads no files; list the names inline in except",
    );
    expect(workerError({ upstreams: [{ name: "a", url: "https://x.example" }], listen: {} })).toBe(
      "listen: relay-only setting; the edge worker does not use it",
    );
    expect(
      workerError({
        upstreams: [{ name: "a", url: "https://x.example" }],
        blocklists: [{ path: "/etc/block.txt" }],
      }),
    ).toBe(
      "blocklists[0].path: the edge worker reads no files; give the list as a url or a static asset",
    );
  });

  it("parses the every-section example's shared sections with a relay for the non-DoH upstreams", () => {
    const spec = parseYaml(SPEC_EXAMPLE) as Record<string, unknown>;
    const { listen: _l, allow: _a, ...shared } = spec;
    const upstreams = (spec.upstreams as Record<string, unknown>[]).map(
      ({ pool: _p, tls_servername: _t, ...u }) =>
        String(u.url).startsWith("https://") ? u : { ...u, via: "home" },
    );
    const { config } = parseWorkerConfig({ ...shared, upstreams, relays });
    expect(config.upstreams.map((u) => u.via)).toEqual([undefined, "home", "home"]);
    expect(config.routes).toHaveLength(2);
  });
});

describe("rules, cache, blocklists", () => {
  it("normalizes matches and actions", () => {
    const { config } = parseRelayConfig({
      ...one,
      routes: [{ name: "lan", upstreams: ["a"] }],
      rules: [
        {
          match: { suffix: "Ads.Example", qtype: ["a", "AAAA", "TYPE65", 99] },
          action: "block",
          block_with: "null_ip",
        },
        { match: { name: ["x.example"] }, action: "local_data", txt: "hello" },
        {
          match: { name: "old.example" },
          action: "rewrite",
          rewrite_domain: "new.example",
          rewrite_type: "A",
        },
        { match: { suffix: "lan" }, action: "forward", route: "lan" },
      ],
    });
    expect(config.rules).toEqual([
      {
        match: { name: [], suffix: ["ads.example."], qtype: [1, 28, 65, 99] },
        action: "block",
        block_with: "null_ip",
      },
      {
        match: { name: ["x.example."], suffix: [], qtype: [] },
        action: "local_data",
        ips: [],
        txt: ["hello"],
        ttl: 60,
      },
      {
        match: { name: ["old.example."], suffix: [], qtype: [] },
        action: "rewrite",
        rewrite_domain: "new.example.",
        rewrite_type: 1,
      },
      { match: { name: [], suffix: ["lan."], qtype: [] }, action: "forward", route: "lan" },
    ]);
  });

  it("names misplaced and missing rule keys", () => {
    expect(
      relayError({
        ...one,
        rules: [{ match: { suffix: "x" }, action: "block", ips: ["1.2.3.4"] }],
      }),
    ).toBe("rules[0].ips: only action local_data takes ips");
    expect(relayError({ ...one, rules: [{ match: {}, action: "block" }] })).toBe(
      "rules[0].match: needs name, suffix or qtype",
    );
    expect(relayError({ ...one, rules: [{ match: { name: "x" }, action: "local_data" }] })).toBe(
      "rules[0]: local_data needs ips, txt or cname",
    );
    expect(
      relayError({ ...one, rules: [{ match: { name: "x" }, action: "forward", route: "nope" }] }),
    ).toBe('rules[0].route: unknown route "nope" (give the route a name)');
    expect(relayError({ ...one, rules: [{ match: { qtype: "BOGUS" }, action: "block" }] })).toBe(
      'rules[0].match.qtype: unknown query type "BOGUS" (use e.g. A, AAAA, TXT or TYPE65)',
    );
    expect(
      relayError({
        ...one,
        rules: [{ match: { name: "x" }, action: "local_data", ips: ["1.2.3"] }],
      }),
    ).toBe(
      'rules[0].ips[0]: "1.2.3": an IPv4 address is four decimal numbers 0-255 separated by dots',
    );
  });

  it("checks the cache TTL bounds", () => {
    expect(relayError({ ...one, cache: { min_ttl: "2d" } })).toBe(
      "cache.min_ttl: must not be above max_ttl",
    );
  });

  it("takes a blocklist as one of a path, a url or (worker) a static asset", () => {
    const { config } = parseRelayConfig({
      ...one,
      blocklists: [{ path: "/etc/block.txt" }, { url: "https://lists.example/hosts" }],
    });
    expect(config.blocklists).toEqual([
      { path: "/etc/block.txt" },
      { url: "https://lists.example/hosts" },
    ]);
    expect(relayError({ ...one, blocklists: [{}] })).toBe(
      "blocklists[0]: needs one of path, url or asset",
    );
    expect(relayError({ ...one, blocklists: [{ path: "/a", url: "https://b.example/" }] })).toBe(
      "blocklists[0]: needs one of path, url or asset",
    );
    expect(relayError({ ...one, blocklists: [{ asset: "/lists/ads.bin" }] })).toBe(
      "blocklists[0].asset: a static asset is the worker's (its ASSETS binding); on the relay give the file as path",
    );
    const worker = parseWorkerConfig({
      upstreams: [{ name: "q9", url: "https://dns.quad9.net/dns-query" }],
      blocklists: [{ asset: "/lists/ads.bin" }],
    });
    expect(worker.config.blocklists).toEqual([{ asset: "/lists/ads.bin" }]);
  });
});

describe("the parsers never throw anything but ConfigError", () => {
  const keys = [
    "upstreams",
    "routes",
    "name",
    "url",
    "file",
    "zones",
    "policy",
    "worker_count",
    "server_count",
    "race",
    "timeout",
    "via",
    "pool",
    "listen",
    "udp",
    "addr",
    "allow",
    "ecs",
    "bootstrap",
    "cache",
    "rules",
    "match",
    "action",
    "relays",
    "health_check",
    "query",
  ];
  const value = fc.oneof(
    fc.constantFrom(
      "1.1.1.1",
      "tls://x",
      "5s",
      "auto",
      ".",
      "a",
      "h3://x",
      "10.0.0.0/8",
      "weighted_random",
    ),
    fc.integer({ min: -2, max: 10 }),
    fc.boolean(),
    fc.constant(null),
    fc.string(),
  );
  const tree = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: "small" },
      value,
      fc.array(tie("node"), { maxLength: 3 }),
      fc.dictionary(fc.constantFrom(...keys), tie("node"), { maxKeys: 4 }),
    ),
  })).node;

  it.each([
    ["relay", parseRelayConfig],
    ["worker", parseWorkerConfig],
  ] as const)("%s", (_, parse) => {
    fc.assert(
      fc.property(fc.oneof(tree, fc.anything()), (input) => {
        try {
          parse(input);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          expect(error.message).not.toContain("\n");
          expect(error.problems.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
