// `plugins`: exec plugins (BalanceDNS's go_exec protocol; relay only) and Lua
// policy scripts (BalanceDNS's runtime: lua; relay and worker) asked after
// rules and block lists. Each entry takes only its own runtime's keys.

import * as z from "zod";
import { identifier, intFrom, intIn, nonEmpty, positiveDuration } from "../fields.ts";
import type { Checker } from "../parse.ts";

/** One exec plugin (BalanceDNS's go_exec protocol). */
export interface ExecPluginEntryConfig {
  /** "exec" (BalanceDNS's go_exec too); the default. */
  runtime?: "exec";
  name: string;
  /** Absolute path of the program (it runs with an empty environment, so no PATH lookup). */
  path: string;
  args: string[];
  /** per_query: a process per question; persistent: one process, a JSON line per question. */
  mode: "per_query" | "persistent";
  /** ms */
  timeout: number;
}

/** One Lua policy script (BalanceDNS's `runtime: lua`), run in a sandboxed VM. */
export interface LuaPluginEntryConfig {
  runtime: "lua";
  name: string;
  /** Relay: the script file (relative to the config file's folder until loaded). Worker: a bundled script's name. */
  path: string;
  /** Lua VM instructions one handle() call may run before it is cut off. */
  max_instructions: number;
}

export type PluginEntryConfig = ExecPluginEntryConfig | LuaPluginEntryConfig;

export interface PluginsConfig {
  /** What a plugin that fails (timeout, crash, bad output) decides (default "forward"). */
  on_error: "forward" | "block" | "servfail";
  entries: PluginEntryConfig[];
}

/** Default per-call instruction budget of a Lua entry (shared/policy/lua-policy.ts). */
const LUA_MAX_INSTRUCTIONS = 100_000;

const pluginEntrySchema = z.strictObject({
  name: identifier("plugin names"),
  path: nonEmpty,
  /** exec and go_exec (BalanceDNS's name) mean a program speaking JSON; lua a script. */
  runtime: z.enum(["exec", "go_exec", "lua"]).default("exec"),
  args: z.array(z.string()).optional(),
  mode: z.enum(["per_query", "persistent"]).optional(),
  timeout: positiveDuration.optional(),
  /** BalanceDNS's spelling. */
  timeout_ms: intFrom(1).optional(),
  max_instructions: intIn(1000, 1_000_000_000).optional(),
});

export const pluginsSchema = z
  .strictObject({
    /** BalanceDNS's switch: false runs none of the entries. */
    enabled: z.boolean().default(true),
    timeout: positiveDuration.prefault("50ms"),
    on_error: z.enum(["forward", "block", "servfail"]).default("forward"),
    entries: z.array(pluginEntrySchema).default(() => []),
  })
  .prefault({});

type RawEntry = z.output<typeof pluginEntrySchema>;

function luaEntry(entry: RawEntry, at: (key: string) => (string | number)[], check: Checker) {
  for (const key of ["args", "mode"] as const) {
    if (entry[key] !== undefined) check.error(at(key), "applies to exec entries, not runtime: lua");
  }
  for (const key of ["timeout", "timeout_ms"] as const) {
    if (entry[key] !== undefined) {
      check.error(
        at(key),
        "a lua entry is bounded by max_instructions, not a clock (workerd's clock stands still while a script runs)",
      );
    }
  }
  const max_instructions = entry.max_instructions ?? LUA_MAX_INSTRUCTIONS;
  return { runtime: "lua" as const, name: entry.name, path: entry.path, max_instructions };
}

/** Exec and Lua entries each take only their own keys; the worker runs only Lua. */
export function finalizePlugins(
  raw: z.output<typeof pluginsSchema>,
  check: Checker,
): PluginsConfig {
  const entries = raw.entries.map((entry, i): PluginEntryConfig => {
    const at = (key: string) => ["plugins", "entries", i, key];
    if (entry.runtime === "lua") return luaEntry(entry, at, check);
    if (check.runtime === "worker") {
      check.error(
        at("runtime"),
        "the worker runs runtime: lua scripts bundled at deploy; exec plugins run on the relay (the worker has no processes to start)",
      );
    }
    if (entry.max_instructions !== undefined) {
      check.error(at("max_instructions"), "applies to runtime: lua entries only");
    }
    if (!entry.path.startsWith("/")) {
      check.error(
        at("path"),
        "must be an absolute path (plugins run with an empty environment, no PATH)",
      );
    }
    return {
      runtime: "exec",
      name: entry.name,
      path: entry.path,
      args: entry.args ?? [],
      mode: entry.mode ?? "per_query",
      timeout: entry.timeout ?? entry.timeout_ms ?? raw.timeout,
    };
  });
  return { on_error: raw.on_error, entries: raw.enabled ? entries : [] };
}
