// Exec plugins: BalanceDNS's protocol per query and persistent, every action,
// the empty environment, and every way a plugin can misbehave (hang, crash,
// garbage, flood) ending in the configured fallback within the timeout; then
// the same plugins in a relay asked with dig over real nsd data.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPluginChain, type PluginChain } from "../../relay/src/exec-plugin.ts";
import type { Relay } from "../../relay/src/relay.ts";
import type { PluginsConfig } from "../../shared/config/schema.ts";
import { parseRelayConfig } from "../../shared/config/schema.ts";
import { type RunningServer, startNsd } from "../support/dns-servers.ts";
import { dig, portOf, startTestRelay } from "./relay-harness.ts";

const run = promisify(execFile);
const POLICY = fileURLToPath(new URL("../fixtures/plugins/balancedns-policy.mjs", import.meta.url));
const MISBEHAVE = fileURLToPath(new URL("../fixtures/plugins/misbehave.mjs", import.meta.url));

const entry = (args: string[], mode: "per_query" | "persistent", timeout = 1500) => ({
  name: `p-${args.join("-")}`,
  path: process.execPath,
  args: mode === "persistent" ? [...args, "--persistent"] : args,
  mode,
  timeout,
});

/** The same, as a config entry (a name and a duration string). */
const configEntry = (
  name: string,
  args: string[],
  mode: "per_query" | "persistent",
  timeout = 1500,
) => ({
  ...entry(args, mode, timeout),
  name,
  timeout: `${timeout}ms`,
});

const chains: PluginChain[] = [];
function chain(config: PluginsConfig): PluginChain {
  const c = createPluginChain(config);
  chains.push(c);
  return c;
}

afterAll(() => {
  for (const c of chains) c.close();
});

async function children(script: string): Promise<number> {
  const { stdout } = await run("pgrep", ["-fc", script]).catch(() => ({ stdout: "0" }));
  return Number(stdout.trim());
}

describe.each(["per_query", "persistent"] as const)("exec plugin (%s)", (mode) => {
  it("maps BLOCK, LOCAL_DATA, REWRITE and FORWARD, and runs with an empty environment", async () => {
    const c = chain({ on_error: "servfail", entries: [entry([POLICY], mode)] });
    expect(await c.decide("x.ads.plugin.test.", 1)).toMatchObject({ action: "block" });
    expect(await c.decide("local.plugin.test.", 1)).toMatchObject({
      action: "local_data",
      ips: ["10.9.8.7", "fd00::987"],
      ttl: 77,
    });
    expect(await c.decide("old.plugin.test.", 28)).toMatchObject({
      action: "rewrite",
      name: "www.plugin.test.",
    });
    expect(await c.decide("other.test.", 1)).toEqual({ action: "pass" });
    expect(await c.decide("env.plugin.test.", 1)).toMatchObject({ ips: ["10.0.0.0"] });
  });

  it.each(["hang", "crash", "garbage", "flood"])(
    "a plugin that does %s gets the fallback within its timeout, and the next question works",
    async (how) => {
      const c = chain({ on_error: "block", entries: [entry([MISBEHAVE, how], mode, 400)] });
      const started = performance.now();
      expect(await c.decide("a.test.", 1)).toMatchObject({ action: "block" });
      expect(performance.now() - started).toBeLessThan(400 + 600);
      expect(await c.decide("b.test.", 1)).toMatchObject({ action: "block" });
      const code =
        how === "hang"
          ? "timeout"
          : how === "flood"
            ? "overflow"
            : how === "garbage"
              ? "bad_output"
              : "crash";
      expect(Object.entries(c.errors()).some(([k, n]) => k.endsWith(code) && n >= 2)).toBe(true);
    },
  );
});

describe("persistent exec plugin", () => {
  it("answers 200 concurrent questions, each with its own decision, in one process", async () => {
    const c = chain({ on_error: "servfail", entries: [entry([POLICY], "persistent")] });
    const names = Array.from({ length: 200 }, (_, i) =>
      i % 3 === 0
        ? `${i}.ads.plugin.test.`
        : i % 3 === 1
          ? "local.plugin.test."
          : `${i}.other.test.`,
    );
    const decisions = await Promise.all(names.map((n) => c.decide(n, 1)));
    decisions.forEach((d, i) => {
      expect(d.action).toBe(i % 3 === 0 ? "block" : i % 3 === 1 ? "local_data" : "pass");
    });
    expect(await children("balancedns-policy.mjs --persistent")).toBeGreaterThanOrEqual(1);
  });

  it("restarts after a hang: the next question is answered by a fresh process", async () => {
    const c = chain({
      on_error: "servfail",
      entries: [entry([MISBEHAVE, "hang-on"], "persistent", 300)],
    });
    expect(await c.decide("hang.test.", 1)).toEqual({ action: "servfail" });
    expect(await c.decide("fine.test.", 1)).toEqual({ action: "pass" });
  });

  it("leaves no process behind after close", async () => {
    const c = createPluginChain({
      on_error: "forward",
      entries: [entry([MISBEHAVE, "hang"], "persistent", 5000)],
    });
    const pending = c.decide("x.test.", 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await children("misbehave.mjs hang --persistent")).toBe(1);
    c.close();
    await pending;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await children("misbehave.mjs hang --persistent")).toBe(0);
  });
});

describe("plugins config", () => {
  it("accepts BalanceDNS's timeout_ms and runtime, and names bad paths with their key", () => {
    const base = { upstreams: [{ name: "u", url: "udp://127.0.0.1" }] };
    const config = parseRelayConfig({
      ...base,
      plugins: { entries: [{ name: "go", runtime: "go_exec", path: "/opt/p", timeout_ms: 10 }] },
    }).config;
    expect(config.plugins).toEqual({
      on_error: "forward",
      entries: [
        { runtime: "exec", name: "go", path: "/opt/p", args: [], mode: "per_query", timeout: 10 },
      ],
    });
    expect(() =>
      parseRelayConfig({ ...base, plugins: { entries: [{ name: "x", path: "p" }] } }),
    ).toThrow(/^plugins\.entries\[0\]\.path: must be an absolute path/);
  });
});

const ZONE = `$ORIGIN plugin.test.
$TTL 300
@   IN SOA ns.plugin.test. admin.plugin.test. 1 3600 600 86400 300
@   IN NS  ns.plugin.test.
ns  IN A   127.0.0.1
www IN A   192.0.2.50
www IN AAAA 2001:db8::50
`;

describe("exec plugins in the relay", () => {
  let nsd: RunningServer;
  let relay: Relay;
  let failing: Relay;

  beforeAll(async () => {
    nsd = await startNsd({ zones: { "plugin.test.": ZONE } });
    const base = {
      listen: { udp: "127.0.0.1:5353" },
      upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
    };
    [relay, failing] = await Promise.all([
      startTestRelay({
        ...base,
        plugins: { entries: [configEntry("policy", [POLICY], "per_query")] },
      }),
      startTestRelay({
        ...base,
        plugins: {
          on_error: "servfail",
          entries: [configEntry("hangs", [MISBEHAVE, "hang-on"], "persistent", 300)],
        },
      }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([relay?.shutdown(200), failing?.shutdown(200)]);
    await nsd?.stop();
  });

  it("blocks, answers local data and rewrites as the plugin says; forwards the rest", async () => {
    const port = portOf(relay, "udp");
    expect(await dig(port, ["x.ads.plugin.test"])).toContain("status: NXDOMAIN");
    expect((await dig(port, ["+short", "local.plugin.test", "AAAA"])).trim()).toBe("fd00::987");
    expect(await dig(port, ["+noall", "+answer", "old.plugin.test", "AAAA"])).toMatch(
      /^old\.plugin\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::50/m,
    );
    expect((await dig(port, ["+short", "www.plugin.test"])).trim()).toBe("192.0.2.50");
  });

  it("answers SERVFAIL in time when the plugin hangs, and keeps serving", async () => {
    const port = portOf(failing, "udp");
    const started = performance.now();
    expect(await dig(port, ["hang.plugin.test"])).toContain("status: SERVFAIL");
    expect(performance.now() - started).toBeLessThan(1500);
    expect((await dig(port, ["+short", "www.plugin.test"])).trim()).toBe("192.0.2.50");
  });
});
