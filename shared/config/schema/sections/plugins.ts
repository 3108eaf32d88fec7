// The relay's `plugins`: exec plugins (BalanceDNS's go_exec protocol) asked
// after rules and block lists.

import * as z from "zod";
import { identifier, intFrom, nonEmpty, positiveDuration } from "../fields.ts";

/** One exec plugin (BalanceDNS's go_exec protocol). */
export interface PluginEntryConfig {
  name: string;
  /** Absolute path of the program (it runs with an empty environment, so no PATH lookup). */
  path: string;
  args: string[];
  /** per_query: a process per question; persistent: one process, a JSON line per question. */
  mode: "per_query" | "persistent";
  /** ms */
  timeout: number;
}

export interface PluginsConfig {
  /** What a plugin that fails (timeout, crash, bad output) decides (default "forward"). */
  on_error: "forward" | "block" | "servfail";
  entries: PluginEntryConfig[];
}

const pluginEntrySchema = z.strictObject({
  name: identifier("plugin names"),
  path: nonEmpty.refine((p) => p.startsWith("/"), {
    message: "must be an absolute path (plugins run with an empty environment, no PATH)",
  }),
  args: z.array(z.string()).default(() => []),
  mode: z.enum(["per_query", "persistent"]).default("per_query"),
  timeout: positiveDuration.optional(),
  /** BalanceDNS's spelling. */
  timeout_ms: intFrom(1).optional(),
  /** BalanceDNS's runtime names; both mean a program speaking JSON. */
  runtime: z.enum(["exec", "go_exec"]).optional(),
});

export const pluginsSchema = z
  .strictObject({
    timeout: positiveDuration.prefault("50ms"),
    on_error: z.enum(["forward", "block", "servfail"]).default("forward"),
    entries: z.array(pluginEntrySchema).default(() => []),
  })
  .prefault({});

export function finalizePlugins(raw: z.output<typeof pluginsSchema>): PluginsConfig {
  return {
    on_error: raw.on_error,
    entries: raw.entries.map((entry) => ({
      name: entry.name,
      path: entry.path,
      args: entry.args,
      mode: entry.mode,
      timeout: entry.timeout ?? entry.timeout_ms ?? raw.timeout,
    })),
  };
}
