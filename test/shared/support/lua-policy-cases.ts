// Lua policies as one table of cases, run by every runtime's way of running
// them: call runLuaPolicyCases({ name, make }) from a test file. The core in
// Node and in workerd (test/shared/lua-policy.test.ts), the relay's plugin
// chain (test/relay/lua-plugins.test.ts) and the worker's hook
// (test/edge-worker/lua-policy.test.ts) all give the same decisions for the
// same script files, refuse the same bad scripts with the same message, and
// cut off the same runaway calls. Runtime-neutral: vitest and shared/ only.

import { describe, expect, it } from "vitest";
import type { Decision } from "../../../shared/policy/rules.ts";
import balancedns from "../../fixtures/lua/balancedns-policy.lua?raw";
import cases from "../../fixtures/lua/policy-cases.lua?raw";

export const LUA_SCRIPTS = { "balancedns-policy.lua": balancedns, "policy-cases.lua": cases };

export type LuaDecision = Decision | { action: "servfail" };

export interface LuaPolicySubject {
  /** A running policy for `source`, named `file`, with on_error servfail and a 100,000-instruction budget. */
  make(
    file: string,
    source: string,
  ): Promise<{
    decide(name: string, qtype: number): Promise<LuaDecision>;
    /** Codes of the failed calls so far, in order ("budget", "runtime", "bad_output"). */
    failures(): string[];
  }>;
  /** Names the runtime in test names. */
  name: string;
}

const pass = { action: "pass" } as const;
const block = { action: "block", with: "nxdomain", source: "rule" } as const;
const servfail = { action: "servfail" } as const;

/** BalanceDNS's example policy.lua, unchanged. */
const BALANCEDNS_CASES: [string, number, LuaDecision][] = [
  ["blocked-by-lua.example.", 1, block],
  ["BLOCKED-BY-LUA.Example.", 28, block],
  ["rewrite.example.", 28, { action: "rewrite", name: "example.org.", qtype: "A" }],
  ["local.example.", 1, { action: "local_data", ips: ["127.0.0.2", "::1"], txt: [], ttl: 60 }],
  ["www.example.", 1, pass],
];

/** Our script: every action and BalanceDNS's shorthand returns. */
const DECISION_CASES: [string, number, LuaDecision][] = [
  ["ads.lua.test.", 1, block],
  ["x.tracker.lua.test.", 1, block],
  ["one.lua.test.", 1, { action: "local_data", ips: ["192.0.2.1"], txt: [], ttl: 60 }],
  [
    "both.lua.test.",
    28,
    { action: "local_data", ips: ["192.0.2.2", "2001:db8::2"], txt: [], ttl: 30 },
  ],
  ["old.lua.test.", 1, { action: "rewrite", name: "new.lua.test.", qtype: undefined }],
  ["aaaa.lua.test.", 1, { action: "rewrite", name: undefined, qtype: "AAAA" }],
  ["aaaa.lua.test.", 28, pass],
  ["mx.lua.test.", 15, block],
  ["mx.lua.test.", 1, pass],
  ["nil.lua.test.", 1, pass],
  ["noaction.lua.test.", 1, pass],
  ["meta.lua.test.", 1, pass],
  ["elsewhere.test.", 1, pass],
];

/** Calls that fail: on_error's decision, and the failure's code. */
const FAILING_CASES: [string, string][] = [
  ["loop.lua.test.", "budget"],
  ["pcall-loop.lua.test.", "budget"],
  ["recurse.lua.test.", "budget"],
  ["os.lua.test.", "runtime"],
  ["io.lua.test.", "runtime"],
  ["require.lua.test.", "runtime"],
  ["load.lua.test.", "runtime"],
  ["dofile.lua.test.", "runtime"],
  ["debug.lua.test.", "runtime"],
  ["rep.lua.test.", "runtime"],
  ["error.lua.test.", "runtime"],
  ["badip.lua.test.", "bad_output"],
  ["badaction.lua.test.", "bad_output"],
  ["number.lua.test.", "bad_output"],
  ["rewrite-string.lua.test.", "bad_output"],
  ["huge.lua.test.", "bad_output"],
];

/** Scripts refused at load, and what the refusal says. */
const REFUSED: [string, string, RegExp][] = [
  ["a syntax error", "function handle(q)\n  return {\nend\n", /bad\.lua:3: .*near 'end'/],
  ["a top level that never ends", "while true do end", /top level ran past its budget/],
  [
    "os at the top level",
    "local started = os.time()\nfunction handle() end",
    /bad\.lua:1: os is not available in the policy sandbox/,
  ],
  ["require at the top level", 'local json = require("json")', /require is not available/],
  ["no handle function", "handler = function() end", /defines no function handle\(question\)/],
  ["a bytecode chunk", "\x1bLua\x53\x00", /binary chunk/],
];

export function runLuaPolicyCases(subject: LuaPolicySubject): void {
  describe(`Lua policy (${subject.name})`, () => {
    it("runs BalanceDNS's example policy.lua unchanged", async () => {
      const policy = await subject.make("balancedns-policy.lua", balancedns);
      for (const [name, qtype, expected] of BALANCEDNS_CASES) {
        expect({ name, qtype, decision: await policy.decide(name, qtype) }).toEqual({
          name,
          qtype,
          decision: expected,
        });
      }
      expect(policy.failures()).toEqual([]);
    });

    it("maps every action and BalanceDNS's shorthand returns to the same decisions", async () => {
      const policy = await subject.make("policy-cases.lua", cases);
      for (const [name, qtype, expected] of DECISION_CASES) {
        expect({ name, qtype, decision: await policy.decide(name, qtype) }).toEqual({
          name,
          qtype,
          decision: expected,
        });
      }
      expect(policy.failures()).toEqual([]);
    });

    it("cuts off runaway calls, refuses the sandbox's absent names and bad answers, and serves on", async () => {
      const policy = await subject.make("policy-cases.lua", cases);
      for (const [name, code] of FAILING_CASES) {
        expect({ name, decision: await policy.decide(name, 1) }).toEqual({
          name,
          decision: servfail,
        });
        expect({ name, code: policy.failures().at(-1) }).toEqual({ name, code });
        // The state still serves after each failure.
        expect(await policy.decide("ads.lua.test.", 1)).toEqual(block);
      }
      expect(policy.failures()).toHaveLength(FAILING_CASES.length);
    });

    it.each(REFUSED)("refuses at load %s", async (_what, source, message) => {
      const refused = await subject.make("bad.lua", source).then(
        () => undefined,
        (error: Error) => error,
      );
      expect(refused?.message).toMatch(/^plugins\.entries\[0\]\.path: /);
      expect(refused?.message).toMatch(message);
    });
  });
}
