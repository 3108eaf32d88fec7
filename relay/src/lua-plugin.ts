// Lua policy scripts on the relay (`plugins.entries[]` with `runtime: lua`):
// the script is read and loaded once, in a sandboxed VM
// (shared/policy/lua-policy.ts), and each question is one handle() call
// under the entry's instruction budget. It sits in the plugin chain beside
// exec plugins and fails the same way: a call cut off or in error gets the
// chain's on_error decision, with a PluginError whose code says why.
//
// The VM (fengari) is imported only for a config with Lua entries
// (importLuaVm): loading it costs a relay without them about 10 MB and a
// tenth of a second at start.

import { readFileSync } from "node:fs";
import type { LuaPluginEntryConfig, PluginsConfig } from "../../shared/config/schema.ts";
import type { LuaPolicyError, loadLuaPolicy } from "../../shared/policy/lua-policy.ts";
import { type ExecPlugin, PluginError, type PluginErrorCode } from "./exec-plugin.ts";

export type LoadLuaPolicy = typeof loadLuaPolicy;

const CODES: Record<LuaPolicyError["code"], PluginErrorCode> = {
  load: "runtime",
  budget: "budget",
  runtime: "runtime",
  bad_output: "bad_output",
};

export interface LuaPluginOptions {
  /** The VM's loader (importLuaVm); a chain with Lua entries needs it. */
  load?: LoadLuaPolicy;
  /** Reads the script (default: the file at entry.path). */
  readScript?: (path: string) => string;
  /** The script's print() lines. */
  onPrint?: (plugin: string, line: string) => void;
}

/** The VM's loader when `plugins` has a Lua entry, else undefined (nothing imported). */
export async function importLuaVm(plugins: PluginsConfig): Promise<LoadLuaPolicy | undefined> {
  if (!plugins.entries.some((entry) => entry.runtime === "lua")) return undefined;
  return (await import("../../shared/policy/lua-policy.ts")).loadLuaPolicy;
}

/** Loads the entry's script now; throws LuaPolicyError "load" (or the read's error) when it cannot serve. */
export function createLuaPlugin(
  entry: LuaPluginEntryConfig,
  options: LuaPluginOptions = {},
): ExecPlugin {
  const load = options.load;
  if (!load) throw new Error("the Lua VM is not loaded (importLuaVm)");
  const read = options.readScript ?? ((path: string) => readFileSync(path, "utf8"));
  const onPrint = options.onPrint;
  const policy = load(read(entry.path), {
    name: entry.path.split("/").pop() ?? entry.name,
    maxInstructions: entry.max_instructions,
    ...(onPrint ? { onPrint: (line: string) => onPrint(entry.name, line) } : {}),
  });
  return {
    name: entry.name,
    ask(input) {
      try {
        return Promise.resolve(policy.handle(input.question));
      } catch (error) {
        const code = CODES[(error as LuaPolicyError).code] ?? "runtime";
        return Promise.reject(new PluginError(code, (error as Error).message));
      }
    },
    close() {},
  };
}
