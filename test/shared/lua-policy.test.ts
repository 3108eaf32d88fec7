// The Lua policy core (shared/policy/lua-policy.ts) on the shared case
// table, in Node and, through the workerd project, inside workerd. The
// runtimes' own wiring runs the same table in test/relay/lua-plugins.test.ts
// and test/edge-worker/lua-policy.test.ts.

import { describe, expect, it } from "vitest";
import { ConfigError } from "../../shared/config/schema.ts";
import { LuaPolicyError, loadLuaPolicy } from "../../shared/policy/lua-policy.ts";
import { onErrorDecision } from "../../shared/policy/plugin-output.ts";
import { runLuaPolicyCases } from "./support/lua-policy-cases.ts";

runLuaPolicyCases({
  name: "core",
  async make(file, source) {
    const failures: string[] = [];
    let policy: ReturnType<typeof loadLuaPolicy>;
    try {
      policy = loadLuaPolicy(source, { name: file, maxInstructions: 100_000 });
    } catch (error) {
      throw new ConfigError([
        { path: ["plugins", "entries", 0, "path"], message: (error as Error).message },
      ]);
    }
    return {
      async decide(name, qtype) {
        try {
          return policy.decide(name, qtype);
        } catch (error) {
          failures.push((error as LuaPolicyError).code);
          return onErrorDecision("servfail");
        }
      },
      failures: () => failures,
    };
  },
});

describe("Lua policy core", () => {
  it("gives handle() the question BalanceDNS gives it", () => {
    const policy = loadLuaPolicy(
      `function handle(q)
         return { action = "LOCAL_DATA", local_data = { ip = "192.0.2.9", ttl = q.qtype } , seen = q.domain .. " " .. q.type }
       end`,
      { name: "q.lua" },
    );
    expect(policy.handle({ domain: "a.test.", type: "AAAA", qtype: 28 })).toMatchObject({
      seen: "a.test. AAAA",
      local_data: { ttl: 28 },
    });
  });

  it("keeps its globals between calls (one state per VM)", () => {
    const policy = loadLuaPolicy(
      "local n = 0\nfunction handle() n = n + 1 return { action = 'LOCAL_DATA', local_data = { ip = '192.0.2.' .. n } } end",
      { name: "count.lua" },
    );
    policy.decide("a.", 1);
    expect(policy.decide("a.", 1)).toMatchObject({ ips: ["192.0.2.2"] });
  });

  it("counts the budget per call: a call just under it passes, one over it is cut off", () => {
    const spin = (n: number) =>
      `function handle(q) for i = 1, ${n} do end return { action = "BLOCK" } end`;
    const under = loadLuaPolicy(spin(1000), { name: "spin.lua", maxInstructions: 5000 });
    for (let i = 0; i < 5; i++) expect(under.decide("a.", 1)).toMatchObject({ action: "block" });
    const over = loadLuaPolicy(spin(10_000), { name: "spin.lua", maxInstructions: 5000 });
    expect(() => over.decide("a.", 1)).toThrow(LuaPolicyError);
    expect(() => over.decide("a.", 1)).toThrow(/cut off: instruction budget of 5000 spent/);
  });

  it("leaves coroutine and utf8 out as plain nils, so feature tests still work", () => {
    const policy = loadLuaPolicy(
      "function handle() if coroutine or utf8 or loadstring then return 'BLOCK' end end",
      { name: "features.lua" },
    );
    expect(policy.decide("a.", 1)).toEqual({ action: "pass" });
  });

  it("sends print() lines to the caller and keeps getmetatable(_G) closed", () => {
    const lines: string[] = [];
    const policy = loadLuaPolicy(
      `function handle(q) print("asked", q.domain, getmetatable(_G)) return nil end`,
      { name: "print.lua", onPrint: (line) => lines.push(line) },
    );
    expect(policy.decide("a.test.", 1)).toEqual({ action: "pass" });
    expect(lines).toEqual(["asked\ta.test.\tfalse"]);
  });
});
