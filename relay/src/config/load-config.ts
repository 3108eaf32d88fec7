// Loads the relay's YAML config file: YAML → parseRelayConfig → read every
// except_file and resolv.conf (`file:`) upstream entry → validate again with
// the resolv.conf nameservers expanded into udp upstreams, so routes may name
// them. Relative file paths are resolved against the config file's folder.
// Lua policy scripts (plugins.entries[] with runtime: lua) are read and
// loaded once here, so --check, startup and SIGHUP refuse a script that does
// not compile, fails or runs away at its top level, or defines no handle().
// Every failure is a ConfigError with a one-line message.

import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { parseDocument } from "yaml";
import { parseExceptFile } from "../../../shared/config/except.ts";
import { formatIp, parseIp } from "../../../shared/config/ip.ts";
import {
  ConfigError,
  type ConfigPathSegment,
  type ConfigProblem,
  type ParsedConfig,
  type PluginsConfig,
  parseRelayConfig,
  type RelayConfig,
} from "../../../shared/config/schema.ts";
import { DohEdgeError } from "../../../shared/errors.ts";
import { importLuaVm } from "../lua-plugin.ts";

export class ResolvConfError extends DohEdgeError {
  override readonly name = "ResolvConfError";
  readonly code = "bad_resolv_conf";
}

/** Reads, validates and normalizes the relay config at `path`. Throws ConfigError. */
export async function loadRelayConfig(path: string): Promise<ParsedConfig<RelayConfig>> {
  const text = await readText(path, []);
  const input = parseYaml(text, path);
  const first = parseRelayConfig(input);
  const base = dirname(resolve(path));
  const problems: ConfigProblem[] = [];

  const exceptNames = await Promise.all(
    first.config.routes.map(async (route, j) => {
      if (route.except_file === undefined) return [];
      const at = ["routes", j, "except_file"];
      const file = resolve(base, route.except_file);
      try {
        return parseExceptFile(await readText(file, at), file);
      } catch (error) {
        problems.push(asProblem(error, at));
        return [];
      }
    }),
  );

  const expansions = await Promise.all(
    first.config.upstream_files.map(async (entry) => {
      const at = ["upstreams", entry.index, "file"];
      const file = resolve(base, entry.file);
      try {
        const servers = parseResolvConf(await readText(file, at), file);
        return {
          entry,
          upstreams: servers.map((url, n) => ({ name: `${entry.name}-${n + 1}`, url })),
        };
      } catch (error) {
        problems.push(asProblem(error, at));
        return { entry, upstreams: [] };
      }
    }),
  );
  if (problems.length > 0) throw new ConfigError(problems);

  let result = first;
  if (expansions.length > 0) result = parseExpanded(input as Record<string, unknown>, expansions);

  const routes = result.config.routes.map((route, j) => {
    const extra = exceptNames[j] ?? [];
    return extra.length === 0
      ? route
      : { ...route, except: [...new Set([...route.except, ...extra])] };
  });
  const plugins = await loadLuaScripts(result.config.plugins, base);
  return { config: { ...result.config, routes, plugins }, warnings: first.warnings };
}

/** Lua entries with their path made absolute, each script read and loaded once to refuse a bad one. */
async function loadLuaScripts(plugins: PluginsConfig, base: string): Promise<PluginsConfig> {
  const loadLuaPolicy = await importLuaVm(plugins);
  if (!loadLuaPolicy) return plugins;
  const problems: ConfigProblem[] = [];
  const entries = await Promise.all(
    plugins.entries.map(async (entry, i) => {
      if (entry.runtime !== "lua") return entry;
      const at = ["plugins", "entries", i, "path"];
      const path = resolve(base, entry.path);
      try {
        loadLuaPolicy(await readText(path, at), {
          name: basename(path),
          maxInstructions: entry.max_instructions,
        });
      } catch (error) {
        problems.push(asProblem(error, at));
      }
      return { ...entry, path };
    }),
  );
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...plugins, entries };
}

interface Expansion {
  entry: { index: number };
  upstreams: { name: string; url: string }[];
}

/**
 * Re-validates with `file:` entries replaced by their nameservers; a problem
 * inside an expanded entry is reported at that entry's `file` key, and
 * later entries keep their original index.
 */
function parseExpanded(
  input: Record<string, unknown>,
  expansions: readonly Expansion[],
): ParsedConfig<RelayConfig> {
  const original = input.upstreams as unknown[];
  const upstreams: unknown[] = [];
  const origin: { index: number; expanded: boolean }[] = [];
  original.forEach((entry, index) => {
    const expansion = expansions.find((e) => e.entry.index === index);
    if (expansion === undefined) {
      upstreams.push(entry);
      origin.push({ index, expanded: false });
    } else {
      for (const upstream of expansion.upstreams) {
        upstreams.push(upstream);
        origin.push({ index, expanded: true });
      }
    }
  });
  try {
    return parseRelayConfig({ ...input, upstreams });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(
      error.problems.map((problem) => {
        const [section, i, ...rest] = problem.path;
        if (section !== "upstreams" || typeof i !== "number") return problem;
        const from = origin[i];
        if (from === undefined) return problem;
        const path: ConfigPathSegment[] = from.expanded
          ? ["upstreams", from.index, "file"]
          : ["upstreams", from.index, ...rest];
        return { path, message: problem.message };
      }),
    );
  }
}

/**
 * The `nameserver` lines of a resolv.conf, as udp upstream URLs. Lines
 * starting with "#" or ";" are comments; other options are ignored.
 */
export function parseResolvConf(text: string, fileName: string): string[] {
  const servers: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/[#;].*$/, "").trim();
    const [keyword, address] = line.split(/\s+/);
    if (keyword !== "nameserver") return;
    if (address === undefined) {
      throw new ResolvConfError(`${fileName}:${i + 1}: nameserver without an address`);
    }
    let ip: ReturnType<typeof parseIp>;
    try {
      ip = parseIp(address);
    } catch (error) {
      throw new ResolvConfError(`${fileName}:${i + 1}: ${(error as Error).message}`);
    }
    const host = formatIp(ip);
    servers.push(ip.family === 6 ? `udp://[${host}]` : `udp://${host}`);
  });
  if (servers.length === 0) {
    throw new ResolvConfError(`${JSON.stringify(fileName)} has no nameserver lines`);
  }
  return servers;
}

function parseYaml(text: string, fileName: string): unknown {
  const doc = parseDocument(text, { merge: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error !== undefined) {
    const where = error.linePos?.[0];
    const message =
      error.code === "MULTIPLE_DOCS"
        ? "more than one YAML document (---); the config is a single document"
        : (error.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "");
    const position = where === undefined ? "" : `${where.line}:${where.col}:`;
    throw new ConfigError([
      { path: [], message: `${fileName}:${position} YAML syntax error: ${message}` },
    ]);
  }
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (error) {
    // e.g. an alias bomb: yaml refuses excessive alias expansion.
    throw new ConfigError([{ path: [], message: `${fileName}: ${(error as Error).message}` }]);
  }
  // An empty file is an empty mapping, so the message names what is missing.
  return value === null || value === undefined ? {} : value;
}

class ReadError extends DohEdgeError {
  override readonly name = "ReadError";
  readonly code = "read_failed";
}

async function readText(file: string, at: readonly ConfigPathSegment[]): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EISDIR"
          ? "is a directory"
          : code === "EACCES" || code === "EPERM"
            ? "permission denied"
            : (error as Error).message;
    const message = `cannot read ${JSON.stringify(file)}: ${why}`;
    if (at.length === 0) throw new ConfigError([{ path: [], message }]);
    throw new ReadError(message);
  }
}

function asProblem(error: unknown, at: readonly ConfigPathSegment[]): ConfigProblem {
  const known =
    error instanceof Error &&
    typeof (error as { code?: unknown }).code === "string" &&
    !(error instanceof ConfigError);
  if (!known) throw error;
  return { path: at, message: (error as Error).message };
}
