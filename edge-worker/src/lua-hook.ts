// The worker's Lua policies: plugins.entries[] (all runtime: lua) name
// scripts bundled at deploy (edge-worker/policy/lua-scripts.ts). Each is
// loaded once per isolate in a sandboxed VM (shared/policy/lua-policy.ts)
// and asked in order after the rules; the first answer other than FORWARD
// wins. A call cut off by its instruction budget, or in error, or with a
// bad answer, gets plugins.on_error, like an exec plugin on the relay.

import { ConfigError, type PluginsConfig } from "../../shared/config/schema.ts";
import { type LuaPolicy, LuaPolicyError, loadLuaPolicy } from "../../shared/policy/lua-policy.ts";
import { onErrorDecision } from "../../shared/policy/plugin-output.ts";
import type { Decision } from "../../shared/policy/rules.ts";
import type { PolicyHook } from "../../shared/resolver/policy-resolver.ts";

export interface LuaHookOptions {
  /** Script text by bundled name. */
  scripts: Readonly<Record<string, string>>;
  /** A failed call: the entry's name and why. */
  onError?: (plugin: string, error: LuaPolicyError) => void;
  onPrint?: (plugin: string, line: string) => void;
}

function loadEntries(config: PluginsConfig, options: LuaHookOptions): [string, LuaPolicy][] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const loaded: [string, LuaPolicy][] = [];
  config.entries.forEach((entry, i) => {
    if (entry.runtime !== "lua") return; // the worker's config refuses these
    const path = ["plugins", "entries", i, "path"];
    const source = options.scripts[entry.path];
    if (source === undefined) {
      const names = Object.keys(options.scripts).join(", ") || "none";
      problems.push({
        path,
        message: `no bundled Lua script "${entry.path}" (bundled: ${names}); add it to edge-worker/policy/lua-scripts.ts`,
      });
      return;
    }
    const onPrint = options.onPrint;
    try {
      const policy = loadLuaPolicy(source, {
        name: entry.path,
        maxInstructions: entry.max_instructions,
        ...(onPrint ? { onPrint: (line: string) => onPrint(entry.name, line) } : {}),
      });
      loaded.push([entry.name, policy]);
    } catch (error) {
      problems.push({ path, message: error instanceof Error ? error.message : String(error) });
    }
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return loaded;
}

/** The hook for the config's Lua entries, or undefined when there are none. Throws ConfigError. */
export function createLuaHook(
  config: PluginsConfig,
  options: LuaHookOptions,
): PolicyHook | undefined {
  const policies = loadEntries(config, options);
  if (policies.length === 0) return undefined;
  const fallback = onErrorDecision(config.on_error);
  return {
    async decide(name, qtype) {
      for (const [plugin, policy] of policies) {
        let decision: Decision;
        try {
          decision = policy.decide(name, qtype);
        } catch (error) {
          const failure =
            error instanceof LuaPolicyError ? error : new LuaPolicyError("runtime", String(error));
          options.onError?.(plugin, failure);
          return fallback;
        }
        if (decision.action !== "pass") return decision;
      }
      return { action: "pass" };
    },
  };
}

/** Asks `first`, then `second` when `first` lets the question through. */
export function chainHooks(first: PolicyHook, second: PolicyHook): PolicyHook {
  return {
    async decide(name, qtype) {
      const decision = await first.decide(name, qtype);
      return decision.action === "pass" ? second.decide(name, qtype) : decision;
    },
  };
}
