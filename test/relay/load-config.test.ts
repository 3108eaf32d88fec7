import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  loadRelayConfig,
  parseResolvConf,
  ResolvConfError,
} from "../../relay/src/config/load-config.ts";
import { ConfigError } from "../../shared/config/schema.ts";

// SPEC §8, verbatim.
const SPEC_EXAMPLE = `listen:                       # relay only
  udp: 127.0.0.1:5353
  tcp: 127.0.0.1:5353
  dot: { addr: 0.0.0.0:853, cert: /etc/doh-edge/tls.pem, key: /etc/doh-edge/tls.key }
  doh: { addr: 0.0.0.0:8443, cert: /etc/doh-edge/tls.pem, key: /etc/doh-edge/tls.key }
  origin: { addr: 127.0.0.1:8853, token_env: RELAY_TOKEN }
  metrics: 127.0.0.1:9153     # /metrics /healthz /readyz /statusz
allow: [127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]
upstreams:
  - name: edge
    url: https://doh-edge.example.workers.dev/dns-query
  - name: quad9
    url: tls://9.9.9.9
    tls_servername: dns.quad9.net
    pool: { size: 4, max_in_flight: 100, idle_timeout: 8s }
  - name: adguard
    url: quic://dns.adguard-dns.com
    weight: 50
routes:
  - zones: ["."]
    upstreams: [edge, quad9]
    policy: failover
    timeout: 5s
  - zones: [corp.example.]
    upstreams: [adguard, quad9]
    policy: weighted_random
    server_count: 2
    race: true
    race_continue_on_error: true
    except: [public.corp.example.]
cache: { size: 10000, min_ttl: 0s, max_ttl: 1d }
rules:
  - { match: { suffix: ads.example. }, action: block }
  - { match: { name: printer.lan. }, action: local_data, ips: [192.168.1.20], ttl: 60 }
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "doh-edge-config-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function loadError(path: string): Promise<ConfigError> {
  try {
    await loadRelayConfig(path);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError, but the config loaded");
}

describe("loadRelayConfig", () => {
  it("loads the SPEC §8 example", async () => {
    const { config, warnings } = await loadRelayConfig(write("relay.yaml", SPEC_EXAMPLE));
    expect(warnings).toEqual([]);
    expect(config.upstreams.map((u) => u.name)).toEqual(["edge", "quad9", "adguard"]);
    expect(config.routes[1]?.except).toEqual(["public.corp.example."]);
    expect(config.upstream_files).toEqual([]);
  });

  it("merges an except_file into the route's except list, relative to the config file", async () => {
    mkdirSync(join(dir, "lists"));
    write(
      "lists/except.txt",
      "# skip these\nInternal.Corp.Example\npublic.corp.example # dup of inline\n",
    );
    const path = write(
      "relay.yaml",
      `upstreams: [{ name: a, url: 1.1.1.1 }]
routes:
  - upstreams: [a]
    except: [public.corp.example]
    except_file: lists/except.txt
`,
    );
    const { config } = await loadRelayConfig(path);
    expect(config.routes[0]?.except).toEqual(["public.corp.example.", "internal.corp.example."]);
  });

  it("names a missing except_file with its key path", async () => {
    const path = write(
      "relay.yaml",
      `upstreams: [{ name: a, url: 1.1.1.1 }]
routes:
  - upstreams: [a]
  - { zones: [corp.example], upstreams: [a], except_file: /nonexistent/doh-edge/except.txt }
`,
    );
    const error = await loadError(path);
    expect(error.message).toBe(
      'routes[1].except_file: cannot read "/nonexistent/doh-edge/except.txt": no such file',
    );
    expect(error.path).toEqual(["routes", 1, "except_file"]);
  });

  it("says when an except_file is a directory", async () => {
    mkdirSync(join(dir, "except.d"));
    const path = write(
      "relay.yaml",
      "upstreams: [{ name: a, url: 1.1.1.1 }]\nroutes: [{ upstreams: [a], except_file: except.d }]\n",
    );
    expect((await loadError(path)).message).toBe(
      `routes[0].except_file: cannot read "${join(dir, "except.d")}": is a directory`,
    );
  });

  it("names the file and line of a bad except entry, after the key path", async () => {
    write("except.txt", "good.example\r\n\r\nnot a name\r\n");
    const path = write(
      "relay.yaml",
      "upstreams: [{ name: a, url: 1.1.1.1 }]\nroutes: [{ upstreams: [a], except_file: except.txt }]\n",
    );
    expect((await loadError(path)).message).toBe(
      `routes[0].except_file: ${join(dir, "except.txt")}:3: not a domain name: "not a name"`,
    );
  });

  it("reports every unreadable file, not just the first", async () => {
    const path = write(
      "relay.yaml",
      `upstreams: [{ file: missing-resolv.conf }, { name: a, url: 1.1.1.1 }]
routes: [{ upstreams: [a], except_file: missing-except.txt }]
`,
    );
    const error = await loadError(path);
    expect(error.problems.map((p) => p.path)).toEqual([
      ["routes", 0, "except_file"],
      ["upstreams", 0, "file"],
    ]);
    expect(error.message).toMatch(/\(and 1 more problem\)$/);
  });

  describe("resolv.conf upstream entries", () => {
    const resolvConf = [
      "# generated by NetworkManager",
      "search lan",
      "nameserver 192.168.1.1",
      "; a comment",
      "nameserver 2001:DB8::53   # trailing comment",
      "options edns0",
      "",
    ].join("\n");

    it("expand into udp upstreams that routes may name", async () => {
      write("resolv.conf", resolvConf);
      const path = write(
        "relay.yaml",
        `upstreams:
  - { file: resolv.conf }
  - { name: edge, url: "https://doh.example/dns-query" }
routes:
  - { upstreams: [resolv-1, resolv-2, edge], policy: failover }
`,
      );
      const { config } = await loadRelayConfig(path);
      expect(config.upstreams.map((u) => [u.name, u.url.href])).toEqual([
        ["resolv-1", "udp://192.168.1.1"],
        ["resolv-2", "udp://[2001:db8::53]"],
        ["edge", "https://doh.example/dns-query"],
      ]);
      expect(config.upstreams[0]?.pool.size).toBe(2);
      expect(config.upstream_files).toEqual([]);
      expect(config.routes[0]?.upstreams).toEqual(["resolv-1", "resolv-2", "edge"]);
    });

    it("take a name prefix, and join the default route", async () => {
      write("lan.conf", "nameserver 10.0.0.1\n");
      const path = write("relay.yaml", "upstreams:\n  - { name: lan, file: lan.conf }\n");
      const { config } = await loadRelayConfig(path);
      expect(config.upstreams.map((u) => u.name)).toEqual(["lan-1"]);
      expect(config.routes).toHaveLength(1);
      expect(config.routes[0]?.upstreams).toEqual(["lan-1"]);
    });

    it("report problems of the expanded config at the original positions", async () => {
      write("resolv.conf", "nameserver 192.168.1.1\nnameserver 192.168.1.2\n");
      const dup = write(
        "dup.yaml",
        "upstreams:\n  - { file: resolv.conf }\n  - { name: resolv-1, url: 9.9.9.9 }\n",
      );
      const dupError = await loadError(dup);
      expect(dupError.message).toBe('upstreams[1].name: duplicate upstream name "resolv-1"');
      const beyond = write(
        "beyond.yaml",
        "upstreams:\n  - { file: resolv.conf }\nroutes: [{ upstreams: [resolv-3] }]\n",
      );
      expect((await loadError(beyond)).message).toBe(
        'routes[0].upstreams[0]: unknown upstream "resolv-3"',
      );
    });

    it("keep the warnings' original positions", async () => {
      write("resolv.conf", "nameserver 192.168.1.1\nnameserver 192.168.1.2\n");
      const path = write(
        "relay.yaml",
        "upstreams:\n  - { file: resolv.conf }\n  - { name: pub, url: 'http://doh.example.com/dns-query' }\n",
      );
      const { warnings } = await loadRelayConfig(path);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        /^upstreams\[1\]\.url: http:\/\/doh\.example\.com\/dns-query: http:\/\//,
      );
    });

    it("must hold a nameserver", async () => {
      const file = write("empty-resolv.conf", "# nothing here\nsearch lan\n");
      const path = write("relay.yaml", "upstreams: [{ file: empty-resolv.conf }]\n");
      expect((await loadError(path)).message).toBe(
        `upstreams[0].file: ${JSON.stringify(file)} has no nameserver lines`,
      );
    });

    it("name the line of a bad nameserver", async () => {
      const file = write("resolv.conf", "nameserver 10.0.0.1\nnameserver fe80::1%eth0\n");
      const path = write("relay.yaml", "upstreams: [{ file: resolv.conf }]\n");
      expect((await loadError(path)).message).toBe(
        `upstreams[0].file: ${file}:2: "fe80::1%eth0": zone ids (%eth0) are not supported; write the address without it`,
      );
    });

    it("name a missing resolv.conf", async () => {
      const path = write("relay.yaml", "upstreams: [{ file: /nonexistent/resolv.conf }]\n");
      expect((await loadError(path)).message).toBe(
        'upstreams[0].file: cannot read "/nonexistent/resolv.conf": no such file',
      );
    });
  });

  it("turns a YAML syntax error into one line with file, line and column", async () => {
    const path = write(
      "relay.yaml",
      "upstreams:\n  - name: a\n    url: 1.1.1.1\nroutes: [ { upstreams: [a] }\n",
    );
    const error = await loadError(path);
    expect(error.message).not.toContain("\n");
    expect(error.message).toMatch(
      new RegExp(`^${path.replaceAll(".", "\\.")}:\\d+:\\d+: YAML syntax error: `),
    );
  });

  it("points at the duplicated key", async () => {
    const path = write(
      "relay.yaml",
      "upstreams: [{ name: a, url: 1.1.1.1 }]\ncache: {}\ncache: {}\n",
    );
    expect((await loadError(path)).message).toBe(
      `${path}:3:1: YAML syntax error: Map keys must be unique`,
    );
  });

  it("refuses several YAML documents", async () => {
    const path = write("relay.yaml", "upstreams: [{ name: a, url: 1.1.1.1 }]\n---\nother: 1\n");
    expect((await loadError(path)).message).toBe(
      `${path}:2:1: YAML syntax error: more than one YAML document (---); the config is a single document`,
    );
  });

  it("validates like parseRelayConfig, with key paths", async () => {
    const path = write(
      "relay.yaml",
      "upstreams: [{ name: a, url: 1.1.1.1 }]\nroutes: [{ upstreams: [a, quad8] }]\n",
    );
    expect((await loadError(path)).message).toBe(
      'routes[0].upstreams[1]: unknown upstream "quad8"',
    );
  });

  it("treats an empty file as an empty config", async () => {
    expect((await loadError(write("relay.yaml", ""))).message).toBe("upstreams: required");
  });

  it("says when the config file itself cannot be read", async () => {
    const missing = join(dir, "nope.yaml");
    expect((await loadError(missing)).message).toBe(`cannot read "${missing}": no such file`);
    expect((await loadError(dir)).message).toBe(`cannot read "${dir}": is a directory`);
  });
});

describe("parseResolvConf", () => {
  it("reads nameserver lines only", () => {
    expect(
      parseResolvConf("domain lan\nnameserver 1.1.1.1\n#nameserver 2.2.2.2\nnameserver ::1\n", "r"),
    ).toEqual(["udp://1.1.1.1", "udp://[::1]"]);
  });

  it("rejects a nameserver line without an address", () => {
    expect(() => parseResolvConf("nameserver\n", "r")).toThrow(
      new ResolvConfError("r:1: nameserver without an address"),
    );
  });
});
