// `doh-relay --check` prints YAML that `--config` reads back into the same
// config (issue 17): every section, every default, durations as strings.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DEFAULT_CONFIG_INPUT } from "../../relay/src/cli.ts";
import { loadRelayConfig } from "../../relay/src/config/load-config.ts";
import { formatDuration, printRelayConfig } from "../../relay/src/config/print-config.ts";
import { parseDuration } from "../../shared/config/duration.ts";
import { parseRelayConfig, type RelayConfig } from "../../shared/config/schema.ts";
import { SPEC_EXAMPLE } from "../fixtures/spec-example.ts";

const EXAMPLE = new URL("../../relay/relay.example.yaml", import.meta.url).pathname;

/** Every section and most keys, away from their defaults. */
const KITCHEN_SINK = `
listen:
  udp: { addr: "0.0.0.0:53", reuse_port: true, udp_buffer_size: 4194304 }
  tcp: { addr: "[::1]:53", read_timeout: 1500ms, write_timeout: 2s, idle_timeout: 1m, max_connections: 50, max_queries_per_connection: 9 }
  dot: { addr: 127.0.0.1:853, cert: /etc/x.pem, key: /etc/x.key }
  doh: { addr: 127.0.0.1:8443, path: /q }
  origin: { addr: 127.0.0.1:8853, token_env: MY_TOKEN }
  metrics: 127.0.0.1:9153
allow: [10.0.0.0/8, "2001:db8::/32"]
rate_limit: { qps: 0, burst: 7, max_in_flight: 0 }
bootstrap: ["9.9.9.9", "[2620:fe::fe]:5353"]
ecs: true
upstreams:
  - name: doh
    url: https://dns.example/dns-query
    method: GET
    timeout: 750ms
    pool: { size: 3, max_in_flight: 10, idle_timeout: 90s, connect_timeout: 1s, handshake_timeout: 2500ms, max_retries: 0 }
  - { name: dot, url: "tls://192.0.2.53", tls_servername: dns.example, weight: 30 }
  - { name: plain, url: "192.0.2.1:5300" }
  - { name: v6, url: "tcp://[2001:db8::1]" }
routes:
  - name: main
    zones: [".", "corp.example."]
    upstreams: [doh, dot, plain]
    policy: weighted_random
    server_count: 2
    worker_count: 2
    hedge_delay: 40ms
    race: true
    race_continue_on_error: true
    timeout: 3s
    attempt_count: 0
    fail_timeout: 1h
    health_check: { interval: 10s, timeout: 1s, query: "example. SOA" }
    except: [public.corp.example.]
    debug: true
  - zones: [lan.]
    upstreams: [v6, plain]
    worker_count: 2
    hedge_delay: auto
    health_check: { interval: 4s, http: { path: /ok, port: 8080 } }
cache: { size: 5, max_bytes: 100000, min_ttl: 10s, max_ttl: 2h, negative_ttl: 5m, servfail_ttl: 0s, serve_stale: true }
rules:
  - { match: { suffix: ads.example. }, action: block, block_with: null_ip }
  - { match: { name: [printer.lan., scanner.lan.], qtype: [A, TYPE65280] }, action: local_data, ips: [192.0.2.20, "2001:db8::20"], txt: [hi], ttl: 30 }
  - { match: { name: old.example. }, action: rewrite, rewrite_domain: new.example., rewrite_type: AAAA }
  - { match: { suffix: corp.example. }, action: forward, route: main }
blocklists: [{ path: /etc/lists/ads.txt }, { url: "https://lists.example/hosts" }]
allowlist: [ok.ads.example.]
plugins:
  on_error: servfail
  entries: [{ name: p1, path: /usr/local/bin/p1, args: [-x], mode: persistent, timeout: 80ms }]
workers: 2
control: { restart_backoff: 300ms, restart_max_backoff: 1m, max_consecutive_failure: 4, min_stable_run: 30s }
metrics: { statsd: { addr: "stats.lan", prefix: lan.dns, interval: 1500ms, sample_rate: 0.5, max_packet_size: 1200, timer_samples: 20 } }
log: { level: warn }
`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-print-config-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function roundTrip(config: RelayConfig): Promise<RelayConfig> {
  const file = join(dir, "printed.yaml");
  await writeFile(file, printRelayConfig(config));
  return (await loadRelayConfig(file)).config;
}

describe("--check output reads back unchanged", () => {
  const cases: [string, () => Promise<RelayConfig>][] = [
    ["the default config", async () => parseRelayConfig(DEFAULT_CONFIG_INPUT).config],
    ["relay.example.yaml", async () => (await loadRelayConfig(EXAMPLE)).config],
    ["the spec's example", async () => parseRelayConfig(parse(SPEC_EXAMPLE)).config],
    ["a config with every section", async () => parseRelayConfig(parse(KITCHEN_SINK)).config],
  ];
  for (const [what, load] of cases) {
    it(what, async () => {
      const config = await load();
      expect(await roundTrip(config)).toEqual(config);
    });
  }

  it("writes durations as strings the parser reads back (fast-check)", () => {
    fc.assert(
      fc.property(fc.nat(10 * 86_400_000), (ms) => {
        const text = formatDuration(ms);
        expect(text).toMatch(/^\d+(ms|s|m|h|d)$/);
        expect(parseDuration(text)).toBe(ms);
      }),
    );
    expect([formatDuration(90_000), formatDuration(7_200_000), formatDuration(1500)]).toEqual([
      "90s",
      "2h",
      "1500ms",
    ]);
  });
});
