// Per-isolate state: the config is read and validated once per isolate (per
// distinct DOH_CONFIG value), and the resolver with its health and counters
// lives as long as the isolate. Cloudflare runs many isolates, so health
// seen by one is not seen by the others.

import type { Hono } from "hono";
import {
  ConfigError,
  parseWorkerConfig,
  WORKER_MAX_CONNECTIONS,
} from "../../shared/config/schema.ts";
import { createDohApp } from "../../shared/doh/doh-app.ts";
import { createPolicy } from "../../shared/policy/rules.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";
import { createCachedResolver } from "../../shared/resolver/cached-resolver.ts";
import { createResolver, type Resolver } from "../../shared/resolver/create-resolver.ts";
import { createLogThrottle } from "../../shared/resolver/log-throttle.ts";
import { createPolicyResolver } from "../../shared/resolver/policy-resolver.ts";
import handle from "../policy/handle.ts";
import { createEdgeCache, fingerprint } from "./edge-cache.ts";
import type { Env } from "./env.ts";
import { createModuleHook } from "./policy-module.ts";
import { buildTransports, SecretMissingError } from "./transports.ts";
import { loadWorkerBlocklists } from "./worker-blocklists.ts";

export type WorkerState =
  | { ok: true; resolver: Resolver; app: Hono; warnings: string[] }
  | { ok: false; message: string };

let cached: { key: string; state: WorkerState } | undefined;

/** The state for this env, built on first use and reused while DOH_CONFIG stays the same. */
export function workerState(env: Env): WorkerState {
  const raw = env.DOH_CONFIG;
  const key = `${typeof raw === "string" ? raw : JSON.stringify(raw)}\u0000${secretsKey(env)}`;
  if (cached?.key === key) return cached.state;
  const state = buildState(raw, env, fingerprint(key));
  if (state.ok) {
    for (const warning of state.warnings) console.warn(`doh-edge config warning: ${warning}`);
  } else {
    console.error(`doh-edge config error: ${state.message}`);
  }
  const previous = cached;
  cached = { key, state };
  if (previous?.state.ok) void previous.state.resolver.close();
  return state;
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
  if (raw === undefined || raw === null || raw === "") {
    return { ok: false, message: "DOH_CONFIG is not set (see wrangler.toml [vars])" };
  }
  let input = raw;
  if (typeof raw === "string") {
    try {
      input = JSON.parse(raw);
    } catch (error) {
      return { ok: false, message: `DOH_CONFIG: not valid JSON: ${(error as Error).message}` };
    }
  }
  try {
    const { config, warnings } = parseWorkerConfig(input);
    const cachedResolver = createCachedResolver(
      createResolver({
        upstreams: config.upstreams,
        routes: config.routes,
        transports: buildTransports(config, env),
        maxConcurrentAttempts: WORKER_MAX_CONNECTIONS,
        onAttemptError: (e) =>
          console.warn(
            `doh-edge attempt failed: route=${e.route} upstream=${e.upstream} class=${e.errorClass} ${e.error.message}`,
          ),
      }),
      config.cache,
      Date.now,
      typeof caches === "undefined" ? undefined : createEdgeCache(caches.default, namespace),
    );
    const blocklist = createSuffixSet();
    const listsLoaded =
      config.blocklists.length === 0
        ? Promise.resolve(0)
        : loadWorkerBlocklists(config.blocklists, blocklist, {
            cache: typeof caches === "undefined" ? undefined : caches.default,
            onError: (error) => console.warn(`doh-edge blocklist: ${String(error)}`),
          });
    const resolver = createPolicyResolver(
      cachedResolver,
      createPolicy({ rules: config.rules, blocklist, allowlist: config.allowlist }),
      createModuleHook(handle, 50, (error) =>
        console.warn(`doh-edge policy module failed: ${String(error)}`),
      ),
    );
    if (config.blocklists.some((list) => "path" in list)) {
      warnings.push("blocklists: a Worker cannot read files; only url lists are loaded");
    }
    const servfailLog = createLogThrottle(10_000);
    const app = createDohApp({
      resolve: async (query, { signal }) => {
        await listsLoaded; // the first queries of an isolate wait for its lists
        const outcome = await resolver.resolve(query, signal);
        if (outcome.kind === "servfail") {
          const take = servfailLog.take();
          if (take) {
            const more =
              take.suppressed > 0 ? ` (${take.suppressed} more since the last line)` : "";
            console.warn(
              `doh-edge SERVFAIL route=${outcome.route}: ${outcome.error.message}${more}`,
            );
          }
        }
        return outcome.answer;
      },
      onError: (error) => console.error("doh-edge internal error:", error),
    });
    return { ok: true, resolver, app, warnings };
  } catch (error) {
    if (error instanceof ConfigError || error instanceof SecretMissingError) {
      return { ok: false, message: error.message };
    }
    throw error;
  }
}
