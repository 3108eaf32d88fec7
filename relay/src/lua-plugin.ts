// Lua policy scripts on the relay (`plugins.entries[]` with `runtime: lua`):
// the script is read and loaded once, in a sandboxed VM
// (shared/policy/lua-policy.ts), and each question is one handle() call
// under the entry's instruction budget. It sits in the plugin chain beside
// exec plugins and fails the same way: a call cut off or in error gets the
// chain's on_error decision, with a PluginError whose code says why.

import { readFileSync } from "node:fs";
import type { LuaPluginEntryConfig } from "../../shared/config/schema.ts";
import { LuaPolicyError, loadLuaPolicy } from "../../shared/policy/lua-policy.ts";
import { type ExecPlugin, PluginError, type PluginErrorCode } from "./exec-plugin.ts";

const CODES: Record<Exclude<LuaPolicyError["code"], "load">, PluginErrorCode> = {
  budget: "budget",
  runtime: "runtime",
  bad_output: "bad_output",
};

export interface LuaPluginOptions {
  /** Reads the script (default: the file at entry.path). */
  readScript?: (path: string) => string;
  /** The script's print() lines. */
  onPrint?: (plugin: string, line: string) => void;
}

/** Loads the entry's script now; throws LuaPolicyError "load" (or the read's error) when it cannot serve. */
export function createLuaPlugin(
  entry: LuaPluginEntryConfig,
  options: LuaPluginOptions = {},
): ExecPlugin {
  const read = options.readScript ?? ((path: string) => readFileSync(path, "utf8"));
  const onPrint = options.onPrint;
  const policy = loadLuaPolicy(read(entry.path), {
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
        if (error instanceof LuaPolicyError && error.code !== "load") {
          return Promise.reject(new PluginError(CODES[error.code], error.message));
        }
        return Promise.reject(new PluginError("runtime", String(error)));
      }
    },
    close() {},
  };
}
