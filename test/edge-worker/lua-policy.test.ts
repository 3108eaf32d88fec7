// Lua policies in the worker, inside workerd: the shared case table through
// the worker's hook (the same decisions, refusals and cut-offs as on the
// relay), the script bundled as a Text module (wrangler.toml's rule), and
// the config naming it end to end, against the real upstreams of
// global-setup.ts.

import { describe, expect, inject, it } from "vitest";
import { bundledLuaScripts } from "../../edge-worker/policy/lua-scripts.ts";
import { handle } from "../../edge-worker/src/index.ts";
import { createLuaHook } from "../../edge-worker/src/lua-hook.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { runLuaPolicyCases } from "../shared/support/lua-policy-cases.ts";

runLuaPolicyCases({
  name: "worker hook",
  async make(file, source) {
    const failures: string[] = [];
    const lua = createLuaHook(
      {
        on_error: "servfail",
        entries: [{ runtime: "lua", name: "lua", path: file, max_instructions: 100_000 }],
      },
      { scripts: { [file]: source }, onError: (_plugin, error) => failures.push(error.code) },
    );
    if (!lua) throw new Error("no hook for one Lua entry");
    await lua.ready;
    return { decide: (name, qtype) => lua.hook.decide(name, qtype), failures: () => failures };
  },
});

const A = `http://127.0.0.1:${inject("dohPort")}/a/dns-query`;

async function ask(config: unknown, name: string) {
  const query = buildQuery(name, 1, { id: 99 });
  const response = await handle(
    new Request(`https://edge.test/dns-query?dns=${encodeBase64Url(query)}`),
    { DOH_CONFIG: config },
  );
  return { response, body: new Uint8Array(await response.arrayBuffer()) };
}

const withPlugins = (plugins: unknown) => ({
  upstreams: [{ name: "a", url: A }],
  cache: { size: 0 },
  plugins,
});

describe("Lua policies in the worker", () => {
  it("bundles edge-worker/policy/policy.lua as text, and it forwards everything", async () => {
    expect(bundledLuaScripts["policy.lua"]).toMatch(/function handle\(question\)/);
    const lua = createLuaHook(
      {
        on_error: "servfail",
        entries: [{ runtime: "lua", name: "policy", path: "policy.lua", max_instructions: 1000 }],
      },
      { scripts: bundledLuaScripts },
    );
    expect(await lua?.hook.decide("www.example.test.", 1)).toEqual({ action: "pass" });
  });

  it("answers through a config naming the bundled script", async () => {
    const { response, body } = await ask(
      withPlugins({ entries: [{ name: "policy", runtime: "lua", path: "policy.lua" }] }),
      "www.example.test.",
    );
    expect(response.status).toBe(200);
    const addresses = (decodeMessage(body).answers ?? []).map((r) => r.data);
    expect(addresses).toEqual(["192.0.2.1"]);
  });

  it("refuses a script that is not bundled, and exec entries, naming the key", async () => {
    const missing = await ask(
      withPlugins({ entries: [{ name: "p", runtime: "lua", path: "other.lua" }] }),
      "www.example.test.",
    );
    expect(missing.response.status).toBe(500);
    expect(new TextDecoder().decode(missing.body)).toMatch(
      /plugins\.entries\[0\]\.path: no bundled Lua script "other\.lua" \(bundled: policy\.lua\)/,
    );
    const exec = await ask(
      withPlugins({ entries: [{ name: "p", path: "/usr/bin/p" }] }),
      "www.example.test.",
    );
    expect(new TextDecoder().decode(exec.body)).toMatch(
      /plugins\.entries\[0\]\.runtime: the worker runs runtime: lua scripts bundled at deploy/,
    );
  });
});
