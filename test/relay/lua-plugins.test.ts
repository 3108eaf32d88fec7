// Lua policies on the relay: the shared case table through the plugin
// chain; the config (runtime: lua beside exec entries, each taking only its
// own keys, paths relative to the config file, a bad script refused at
// load with its key); then BalanceDNS's example policy.lua in a relay asked
// with dig over real nsd data, a runaway call answered per on_error with a
// log line that says it was cut off.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRelayConfig } from "../../relay/src/config/load-config.ts";
import { createPluginChain, type PluginChain } from "../../relay/src/exec-plugin.ts";
import { createLogger } from "../../relay/src/log.ts";
import { type Relay, startRelay } from "../../relay/src/relay.ts";
import { parseRelayConfig } from "../../shared/config/schema.ts";
import { loadLuaPolicy } from "../../shared/policy/lua-policy.ts";
import { runLuaPolicyCases } from "../shared/support/lua-policy-cases.ts";
import { type RunningServer, startNsd } from "../support/dns-servers.ts";
import { dig, ephemeralConfig, portOf } from "./relay-harness.ts";

const fixture = (name: string) =>
  fileURLToPath(new URL(`../fixtures/lua/${name}`, import.meta.url));
const EXEC_POLICY = fileURLToPath(
  new URL("../fixtures/plugins/balancedns-policy.mjs", import.meta.url),
);

const chains: PluginChain[] = [];
afterAll(() => {
  for (const c of chains) c.close();
});

runLuaPolicyCases({
  name: "relay plugin chain",
  async make(file, source) {
    const failures: string[] = [];
    const chain = createPluginChain(
      {
        on_error: "servfail",
        entries: [
          { runtime: "lua", name: "lua", path: `/scripts/${file}`, max_instructions: 100_000 },
        ],
      },
      (_plugin, error) => failures.push(error.code),
      { load: loadLuaPolicy, readScript: () => source },
    );
    chains.push(chain);
    return { decide: (name, qtype) => chain.decide(name, qtype), failures: () => failures };
  },
});

describe("Lua plugins config", () => {
  const base = { upstreams: [{ name: "u", url: "udp://127.0.0.1" }] };
  const parse = (entry: Record<string, unknown>) =>
    parseRelayConfig({ ...base, plugins: { entries: [entry] } });

  it("takes BalanceDNS's lua entry beside exec entries, with a default budget", () => {
    const config = parseRelayConfig({
      ...base,
      plugins: {
        timeout: "20ms",
        entries: [
          { name: "lua-policy", runtime: "lua", path: "./scripts/policy.lua" },
          { name: "go-policy", runtime: "go_exec", path: "/opt/go-policy", timeout_ms: 10 },
        ],
      },
    }).config;
    expect(config.plugins.entries).toEqual([
      {
        runtime: "lua",
        name: "lua-policy",
        path: "./scripts/policy.lua",
        max_instructions: 100_000,
      },
      {
        runtime: "exec",
        name: "go-policy",
        path: "/opt/go-policy",
        args: [],
        mode: "per_query",
        timeout: 10,
      },
    ]);
  });

  it("runs none of the entries under BalanceDNS's enabled = false", () => {
    const config = parseRelayConfig({
      ...base,
      plugins: { enabled: false, entries: [{ name: "p", runtime: "lua", path: "p.lua" }] },
    }).config;
    expect(config.plugins.entries).toEqual([]);
  });

  it.each([
    [
      { runtime: "lua", path: "p.lua", timeout_ms: 20 },
      /^plugins\.entries\[0\]\.timeout_ms: a lua entry is bounded by max_instructions/,
    ],
    [
      { runtime: "lua", path: "p.lua", mode: "persistent" },
      /^plugins\.entries\[0\]\.mode: applies to exec entries/,
    ],
    [
      { path: "/bin/p", max_instructions: 5000 },
      /^plugins\.entries\[0\]\.max_instructions: applies to runtime: lua entries only/,
    ],
    [
      { runtime: "lua", path: "p.lua", max_instructions: 10 },
      /^plugins\.entries\[0\]\.max_instructions: /,
    ],
    [{ runtime: "python", path: "/p.py" }, /^plugins\.entries\[0\]\.runtime: /],
  ])("refuses %j in one line naming the key", (entry, message) => {
    expect(() => parse({ name: "p", ...entry })).toThrow(message);
  });

  describe("from a config file", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "doh-lua-config-"));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    async function load(script: string) {
      await writeFile(join(dir, "policy.lua"), script);
      const file = join(dir, "relay.yaml");
      await writeFile(
        file,
        "upstreams: [{ name: u, url: udp://127.0.0.1 }]\nplugins:\n  entries: [{ name: lua-policy, runtime: lua, path: ./policy.lua }]\n",
      );
      return loadRelayConfig(file);
    }

    it("resolves the script's path against the config file's folder", async () => {
      const { config } = await load('function handle(q) return "BLOCK" end');
      expect(config.plugins.entries[0]?.path).toBe(join(dir, "policy.lua"));
    });

    it("refuses a script that touches os or never ends at load, naming the key", async () => {
      await expect(load("os.exit(1)")).rejects.toThrow(
        /^plugins\.entries\[0\]\.path: policy\.lua:1: os is not available in the policy sandbox/,
      );
      await expect(load("while true do end")).rejects.toThrow(
        /^plugins\.entries\[0\]\.path: the script's top level ran past its budget/,
      );
      await expect(load("function handle(q")).rejects.toThrow(
        /^plugins\.entries\[0\]\.path: policy\.lua:1: /,
      );
    });
  });
});

const ZONE = `$ORIGIN example.org.
$TTL 300
@   IN SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
@   IN NS  ns.example.org.
ns  IN A   127.0.0.1
@   IN A   192.0.2.80
www IN A   192.0.2.81
`;

describe("Lua plugins in the relay", () => {
  let nsd: RunningServer;
  let relay: Relay;
  const lines: string[] = [];

  beforeAll(async () => {
    nsd = await startNsd({ zones: { "example.org.": ZONE } });
    const config = ephemeralConfig({
      listen: { udp: "127.0.0.1:5353" },
      upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
      plugins: {
        on_error: "servfail",
        entries: [
          { name: "cases", runtime: "lua", path: fixture("policy-cases.lua") },
          { name: "exec", path: process.execPath, args: [EXEC_POLICY], timeout: "1500ms" },
          { name: "lua-policy", runtime: "lua", path: fixture("balancedns-policy.lua") },
        ],
      },
    });
    relay = await startRelay(
      config,
      createLogger("info", (line) => lines.push(line)),
    );
  });

  afterAll(async () => {
    await relay?.shutdown(200);
    await nsd?.stop();
  });

  it("answers as BalanceDNS's example policy.lua says, after the entries before it", async () => {
    const port = portOf(relay, "udp");
    expect(await dig(port, ["blocked-by-lua.example"])).toContain("status: NXDOMAIN");
    expect((await dig(port, ["+short", "local.example", "AAAA"])).trim()).toBe("::1");
    expect(await dig(port, ["+noall", "+answer", "rewrite.example", "AAAA"])).toMatch(
      /^rewrite\.example\.\s+\d+\s+IN\s+A\s+192\.0\.2\.80/m,
    );
    // The exec plugin between the two Lua entries still has its say.
    expect(await dig(port, ["x.ads.plugin.test"])).toContain("status: NXDOMAIN");
    expect((await dig(port, ["+short", "www.example.org"])).trim()).toBe("192.0.2.81");
  });

  it("cuts a runaway call off: SERVFAIL at once, a log line saying so, and serves on", async () => {
    const port = portOf(relay, "udp");
    const started = performance.now();
    expect(await dig(port, ["loop.lua.test"])).toContain("status: SERVFAIL");
    expect(performance.now() - started).toBeLessThan(1000);
    const logged = lines.map((line) => JSON.parse(line)).find((l) => l.msg === "plugin failed");
    expect(logged).toMatchObject({ plugin: "cases", code: "budget" });
    expect(logged.error).toMatch(/cut off: instruction budget of 100000 spent/);
    expect((await dig(port, ["+short", "www.example.org"])).trim()).toBe("192.0.2.81");
  });
});
