// Per-isolate state: the config is read and validated once per isolate (per
// distinct DOH_CONFIG value), and the resolver with its health and counters
// lives as long as the isolate. Cloudflare runs many isolates, so health
// seen by one is not seen by the others.
//
// Requests of an isolate share work (the block list load, identical queries
// in flight), but a request's I/O and timers belong to it. So shared work is
// kept alive with waitUntil by the request that starts it, every waiter waits
// on its own timer and can go on alone, and each query has its own deadline
// timer (see shared/engine/shared-work.ts).

import { waitUntil } from "cloudflare:workers";
import type { Hono } from "hono";
import { ConfigError } from "../../shared/config/schema/errors.ts";
import type { PluginsConfig } from "../../shared/config/schema/sections/plugins.ts";
import {
  parseWorkerConfig,
  WORKER_MAX_CONNECTIONS,
  type WorkerConfig,
} from "../../shared/config/schema/worker.ts";
import { createDohApp } from "../../shared/doh/doh-app.ts";
import { systemClock } from "../../shared/engine/clock.ts";
import type { NameMatcher } from "../../shared/policy/compiled-list.ts";
import { createPolicy } from "../../shared/policy/rules.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";
import {
  type CachedResolver,
  createCachedResolver,
} from "../../shared/resolver/cached-resolver.ts";
import { createResolver, type Resolver } from "../../shared/resolver/create-resolver.ts";
import { createLogThrottle } from "../../shared/resolver/log-throttle.ts";
import { createPolicyResolver, type PolicyHook } from "../../shared/resolver/policy-resolver.ts";
import handle from "../policy/handle.ts";
import { bundledLuaScripts } from "../policy/lua-scripts.ts";
import { createEdgeCache, fingerprint } from "./edge-cache.ts";
import type { Env } from "./env.ts";
import { chainHooks, createLuaHook } from "./lua-hook.ts";
import { createModuleHook } from "./policy-module.ts";
import { buildTransports, SecretMissingError } from "./transports.ts";
import { createListLoader, type ListLoader, loadWorkerBlocklists } from "./worker-blocklists.ts";

/** How long past its route's timeout a joined query still waits for the one it joined. */
const JOIN_GRACE_MS = 1000;
/** How often a joined query looks for the outcome of the one it joined. */
const JOIN_POLL_MS = 10;

export type WorkerState =
  | {
      ok: true;
      resolver: Resolver;
      app: Hono;
      warnings: string[];
      /** Lua policies loading (lua-hook.ts): no request is answered before it settles. */
      ready?: Promise<void>;
    }
  | { ok: false; message: string };

let cached: { env: Env; key: string; state: WorkerState } | undefined;

/** The state for this env, built on first use and reused while DOH_CONFIG stays the same. */
export function workerState(env: Env): WorkerState {
  // workerd hands every request of an isolate the same env object: the key
  // (config text and secrets) is only worked out when that object changes.
  if (cached?.env === env) return cached.state;
  const raw = env.DOH_CONFIG;
  const key = `${typeof raw === "string" ? raw : JSON.stringify(raw)}\u0000${secretsKey(env)}`;
  if (cached?.key === key) {
    cached = { env, key, state: cached.state };
    return cached.state;
  }
  const state = buildState(raw, env, fingerprint(key));
  if (state.ok) {
    for (const warning of state.warnings) console.warn(`doh-edge config warning: ${warning}`);
  } else {
    console.error(`doh-edge config error: ${state.message}`);
  }
  // The previous resolver is dropped, not closed: its queries in flight
  // belong to other requests, which this one must not touch.
  cached = { env, key, state };
  return state;
}

/** The config's Lua entries (if any), then the bundled TS policy module. Throws ConfigError. */
function programmablePolicy(plugins: PluginsConfig): { hook: PolicyHook; ready?: Promise<void> } {
  const moduleHook = createModuleHook(handle, 50, (error) =>
    console.warn(`doh-edge policy module failed: ${String(error)}`),
  );
  const lua = createLuaHook(plugins, {
    scripts: bundledLuaScripts,
    onError: luaLogger("failed"),
    onPrint: luaLogger("print"),
  });
  if (!lua) return { hook: moduleHook };
  lua.ready.catch((error) => console.error(`doh-edge config error: ${(error as Error).message}`));
  return { hook: chainHooks(lua.hook, moduleHook), ready: lua.ready };
}

/** One throttled log line per kind: a script's failures, or its print() lines. */
function luaLogger(kind: "failed" | "print") {
  const throttle = createLogThrottle(10_000);
  return (plugin: string, what: unknown) => {
    const take = throttle.take();
    if (!take) return;
    const more = take.suppressed > 0 ? ` (${take.suppressed} more since the last line)` : "";
    const text =
      what instanceof Error ? `${(what as { code?: string }).code}: ${what.message}` : String(what);
    const line = `doh-edge lua ${kind} plugin=${plugin} ${text}${more}`;
    if (kind === "failed") console.warn(line);
    else console.log(line);
  };
}

function secretsKey(env: Env): string {
  return Object.keys(env)
    .filter((k) => k !== "DOH_CONFIG" && typeof env[k] === "string")
    .sort()
    .map((k) => `${k}=${(env[k] as string).length}`)
    .join(",");
}

/** `namespace` names this config (and secrets) in the shared cache. */
function buildState(raw: unknown, env: Env, namespace: string): WorkerState {
  const input = configInput(raw);
  if (!input.ok) return input;
  try {
    const { config, warnings } = parseWorkerConfig(input.value);
    // Transports first: a missing secret fails the config before any list loads.
    const cachedResolver = buildCachedResolver(config, env, namespace);
    const { blocklist, lists } = startBlocklists(config, env);
    const { hook, ready } = programmablePolicy(config.plugins);
    const resolver = createPolicyResolver(
      cachedResolver,
      createPolicy({ rules: config.rules, blocklist, allowlist: config.allowlist }),
      hook,
    );
    warnings.push(...unsupportedHere(config));
    const app = buildApp(resolver, lists);
    return { ok: true, resolver, app, warnings, ...(ready ? { ready } : {}) };
  } catch (error) {
    if (error instanceof ConfigError || error instanceof SecretMissingError) {
      return { ok: false, message: error.message };
    }
    throw error;
  }
}

/** DOH_CONFIG as a value to validate: a JSON string parsed, an object as it is. */
function configInput(raw: unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  if (raw === undefined || raw === null || raw === "") {
    return { ok: false, message: "DOH_CONFIG is not set (see wrangler.toml [vars])" };
  }
  if (typeof raw !== "string") return { ok: true, value: raw };
  try {
    return { ok: true, value: JSON.parse(raw) };
  } catch (error) {
    return { ok: false, message: `DOH_CONFIG: not valid JSON: ${(error as Error).message}` };
  }
}

/** The routes' resolver behind this isolate's answer cache and the shared edge cache. */
function buildCachedResolver(config: WorkerConfig, env: Env, namespace: string): CachedResolver {
  const longestTimeout = Math.max(...config.routes.map((route) => route.timeout));
  return createCachedResolver(
    createResolver({
      upstreams: config.upstreams,
      routes: config.routes,
      transports: buildTransports(config, env),
      maxConcurrentAttempts: WORKER_MAX_CONNECTIONS,
      selfContainedQueries: true,
      onAttemptError: (e) =>
        console.warn(
          `doh-edge attempt failed: route=${e.route} upstream=${e.upstream} class=${e.errorClass} ${e.error.message}`,
        ),
    }),
    config.cache,
    Date.now,
    typeof caches === "undefined" ? undefined : createEdgeCache(caches.default, namespace),
    {
      keepAlive: waitUntil,
      joinTimeoutMs: longestTimeout + JOIN_GRACE_MS,
      joinPollMs: JOIN_POLL_MS,
    },
  );
}

/**
 * Starts loading the url block lists (by the isolate's first request, whatever
 * it asks). The policy asks whatever lists have loaded so far: none until the
 * load ends. `lists` is undefined when there is nothing to load.
 */
function startBlocklists(
  config: WorkerConfig,
  env: Env,
): { blocklist: NameMatcher; lists: ListLoader | undefined } {
  let loaded: NameMatcher = createSuffixSet();
  const blocklist: NameMatcher = {
    matches: (name) => loaded.matches(name),
    get size() {
      return loaded.size;
    },
  };
  const lists = config.blocklists.some((list) => !("path" in list))
    ? createListLoader(
        async () => {
          loaded = await loadWorkerBlocklists(config.blocklists, {
            cache: typeof caches === "undefined" ? undefined : caches.default,
            assets: env.ASSETS,
            keepAlive: waitUntil,
            onError: (error) => console.warn(`doh-edge blocklist: ${String(error)}`),
          });
        },
        { keepAlive: waitUntil, clock: systemClock },
      )
    : undefined;
  lists?.start();
  return { blocklist, lists };
}

/** Warnings for what the config asks and a Worker cannot do. */
function unsupportedHere(config: WorkerConfig): string[] {
  const warnings: string[] = [];
  if (config.blocklists.some((list) => "path" in list)) {
    warnings.push("blocklists: a Worker cannot read files; only url lists are loaded");
  }
  config.routes.forEach((route, i) => {
    if (route.health_check) {
      warnings.push(
        `routes[${i}].health_check: the worker runs no active health checks (a timer cannot outlive its request); it learns health from queries`,
      );
    }
  });
  return warnings;
}

/** The DoH app: each query waits for the lists, then the resolver; SERVFAILs are logged, throttled. */
function buildApp(resolver: Resolver, lists: ListLoader | undefined): Hono {
  const servfailLog = createLogThrottle(10_000);
  return createDohApp({
    // No signal: a Worker's request.signal never aborts (without the
    // enable_request_signal flag), and the work a query starts is kept alive
    // and shared anyway, so watching it cost each query listeners for nothing.
    resolve: async (query) => {
      // While its isolate's lists load, a query waits at most LIST_WAIT_MS.
      const listsReady = lists?.ready();
      if (listsReady) await listsReady;
      const outcome = await resolver.resolve(query);
      if (outcome.kind === "servfail") {
        const take = servfailLog.take();
        if (take) {
          const more = take.suppressed > 0 ? ` (${take.suppressed} more since the last line)` : "";
          console.warn(`doh-edge SERVFAIL route=${outcome.route}: ${outcome.error.message}${more}`);
        }
      }
      return outcome.answer;
    },
    onError: (error) => console.error("doh-edge internal error:", error),
  });
}
