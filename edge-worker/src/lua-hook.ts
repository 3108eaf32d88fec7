// The worker's Lua policies: plugins.entries[] (all runtime: lua) name
// scripts bundled at deploy (edge-worker/policy/lua-scripts.ts). Each is
// loaded once per isolate in a sandboxed VM (shared/policy/lua-policy.ts)
// and asked in order after the rules; the first answer other than FORWARD
// wins. A call cut off by its instruction budget, or in error, or with a
// bad answer, gets plugins.on_error, like an exec plugin on the relay.
//
// The VM (fengari, about 240 KiB) is in the bundle only when it is built
// with `--define DOH_EDGE_LUA:true` (wrangler.toml's define is false, so the
// default bundle stays under issue 16's 250 KiB); a build without it refuses
// a Lua entry with a config error saying so. Even in a Lua build an isolate
// imports the VM only when its config has Lua entries. So the load is
// asynchronous: `ready` settles once every script has loaded, or rejects
// with a ConfigError naming the script's key, and the worker answers no
// request before it settles (edge-worker/src/index.ts).

import { ConfigError, type ConfigProblem } from "../../shared/config/schema/errors.ts";
import type { PluginsConfig } from "../../shared/config/schema/sections/plugins.ts";
import type { LuaPolicy, LuaPolicyError } from "../../shared/policy/lua-policy.ts";
import { onErrorDecision } from "../../shared/policy/plugin-output.ts";
import type { Decision } from "../../shared/policy/rules.ts";
import type { PolicyHook } from "../../shared/resolver/policy-resolver.ts";

/** The build flag (wrangler.toml's define); esbuild drops the VM's import when it is false. */
declare const DOH_EDGE_LUA: boolean;
const importVm = DOH_EDGE_LUA ? () => import("../../shared/policy/lua-policy.ts") : undefined;

/** How to build with the VM: the config error of a build without it says this. */
const LUA_BUILD_HINT =
  "this worker was built without the Lua VM; deploy with `npx wrangler deploy --define DOH_EDGE_LUA:true` (README, Plugins)";

export interface LuaHookOptions {
  /** Script text by bundled name. */
  scripts: Readonly<Record<string, string>>;
  /** A failed call: the entry's name and why. */
  onError?: (plugin: string, error: LuaPolicyError) => void;
  onPrint?: (plugin: string, line: string) => void;
}

export interface LuaHook {
  hook: PolicyHook;
  /** Settles when every script has loaded; rejects with a ConfigError. */
  ready: Promise<void>;
}

type Entry = { index: number; name: string; file: string; source: string; max: number };

/** The config's Lua entries with their bundled scripts; throws ConfigError for a script not bundled, or for any in a build without the VM. */
function bundledEntries(config: PluginsConfig, scripts: LuaHookOptions["scripts"]): Entry[] {
  const problems: ConfigProblem[] = [];
  const entries: Entry[] = [];
  const firstLua = config.entries.findIndex((entry) => entry.runtime === "lua");
  if (!importVm && firstLua >= 0) {
    throw new ConfigError([
      { path: ["plugins", "entries", firstLua, "runtime"], message: LUA_BUILD_HINT },
    ]);
  }
  config.entries.forEach((entry, index) => {
    if (entry.runtime !== "lua") return; // the worker's config refuses these
    const source = scripts[entry.path];
    if (source === undefined) {
      const names = Object.keys(scripts).join(", ") || "none";
      problems.push({
        path: ["plugins", "entries", index, "path"],
        message: `no bundled Lua script "${entry.path}" (bundled: ${names}); add it to edge-worker/policy/lua-scripts.ts`,
      });
      return;
    }
    entries.push({
      index,
      name: entry.name,
      file: entry.path,
      source,
      max: entry.max_instructions,
    });
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return entries;
}

async function loadAll(entries: Entry[], options: LuaHookOptions): Promise<[string, LuaPolicy][]> {
  if (!importVm) throw new Error("no Lua VM in this build"); // bundledEntries refused the config
  const { loadLuaPolicy } = await importVm();
  const problems: ConfigProblem[] = [];
  const loaded: [string, LuaPolicy][] = [];
  for (const entry of entries) {
    const onPrint = options.onPrint;
    try {
      const policy = loadLuaPolicy(entry.source, {
        name: entry.file,
        maxInstructions: entry.max,
        ...(onPrint ? { onPrint: (line: string) => onPrint(entry.name, line) } : {}),
      });
      loaded.push([entry.name, policy]);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      problems.push({ path: ["plugins", "entries", entry.index, "path"], message });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return loaded;
}

/** The hook for the config's Lua entries, or undefined when there are none. Throws ConfigError. */
export function createLuaHook(config: PluginsConfig, options: LuaHookOptions): LuaHook | undefined {
  const entries = bundledEntries(config, options.scripts);
  if (entries.length === 0) return undefined;
  const loading = loadAll(entries, options);
  const ready = loading.then(() => {});
  ready.catch(() => {}); // whoever awaits `ready` sees the failure
  const fallback = onErrorDecision(config.on_error);
  const hook: PolicyHook = {
    async decide(name, qtype) {
      for (const [plugin, policy] of await loading) {
        let decision: Decision;
        try {
          decision = policy.decide(name, qtype);
        } catch (error) {
          options.onError?.(plugin, error as LuaPolicyError);
          return fallback;
        }
        if (decision.action !== "pass") return decision;
      }
      return { action: "pass" };
    },
  };
  return { hook, ready };
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
