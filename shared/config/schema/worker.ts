// The edge worker's config: the shared sections plus `relays`, and
// parseWorkerConfig. Nothing here loads the relay's own sections, so they
// stay out of the worker bundle (test/shared/config-bundle.test.ts).

import * as z from "zod";
import { type CommonConfig, commonShape, finalizeShared } from "./common.ts";
import { type Checker, type ConfigParser, type ParsedConfig, parseWith } from "./parse.ts";
import { RELAY_ONLY_KEYS, type WORKER_ONLY_KEYS } from "./runtime-keys.ts";
import { finalizePlugins, type PluginsConfig, pluginsSchema } from "./sections/plugins.ts";
import { finalizeRelays, type RelayEndpointConfig, relaysSchema } from "./sections/relays.ts";
import { finalizeRoutes, type RouteChecks, type RouteConfig } from "./sections/routes.ts";
import {
  finalizeWorkerUpstreams,
  type WorkerUpstreamConfig,
  workerUpstreamSchema,
} from "./sections/worker-upstreams.ts";

export interface WorkerConfig extends CommonConfig<WorkerUpstreamConfig, RouteConfig> {
  relays: RelayEndpointConfig[];
  /** Lua scripts bundled at deploy (entries are all runtime: lua), asked after the rules. */
  plugins: PluginsConfig;
}

/**
 * A Worker may hold at most 6 simultaneous outgoing connections per request;
 * more attempts at once would queue behind each other, not run in parallel.
 */
export const WORKER_MAX_CONNECTIONS = 6;

const workerOnlyShape = { relays: relaysSchema } satisfies Record<
  (typeof WORKER_ONLY_KEYS)[number],
  z.ZodType
>;

const workerSchema = z.strictObject({
  ...commonShape(workerUpstreamSchema),
  ...workerOnlyShape,
  plugins: pluginsSchema,
});

/** Routes must fit the Worker's connection limit, and it reads no except_file. */
const workerRouteChecks: RouteChecks = (route, at, { serverCount, workerCount }, check) => {
  const limit = WORKER_MAX_CONNECTIONS;
  const why = `a Worker may open at most ${limit} simultaneous outgoing connections per request`;
  if (workerCount > limit) {
    check.error(at("worker_count"), `${workerCount} is more than ${limit}: ${why}`);
  }
  if (route.race && serverCount > limit) {
    const where = route.policy === "weighted_random" ? at("server_count") : at("upstreams");
    check.error(
      where,
      `a race queries all ${serverCount} selected upstreams at once, but ${why}; ` +
        `use policy weighted_random with server_count of ${limit} or fewer`,
    );
  }
  if (route.except_file !== undefined) {
    check.error(
      at("except_file"),
      "relay-only key: the edge worker reads no files; list the names inline in except",
    );
  }
};

function finalizeWorker(raw: z.output<typeof workerSchema>, check: Checker): WorkerConfig {
  const relays = finalizeRelays(raw.relays, check);
  const relayNames = new Set(relays.map((r) => r.name));
  const upstreams = finalizeWorkerUpstreams(raw.upstreams, relayNames, check);
  const routes = finalizeRoutes(
    raw.routes,
    {
      upstreams: new Set(upstreams.map((u) => u.name)),
      pending: () => false,
      hasPending: false,
      runtimeChecks: workerRouteChecks,
    },
    check,
  );
  const shared = finalizeShared(raw, routes, check);
  return {
    upstreams,
    routes: routes.map(({ except_file: _ignored, ...route }) => route),
    cache: shared.cache,
    rules: shared.rules,
    blocklists: shared.blocklists,
    allowlist: shared.allowlist,
    log: shared.log,
    relays,
    plugins: finalizePlugins(raw.plugins, check),
  };
}

const RELAY_ONLY = new Set<string>(RELAY_ONLY_KEYS);

const workerParser: ConfigParser<typeof workerSchema, WorkerConfig> = {
  runtime: "worker",
  schema: workerSchema,
  keyHint(path, key) {
    if (path.length > 0) return undefined;
    if (RELAY_ONLY.has(key)) return "relay-only setting; the edge worker does not use it";
    return undefined;
  },
  otherKeys: RELAY_ONLY_KEYS,
  finalize: finalizeWorker,
};

/** Validates and normalizes a worker config (the JSON value from wrangler.toml [vars]). Throws ConfigError. */
export function parseWorkerConfig(input: unknown): ParsedConfig<WorkerConfig> {
  return parseWith(workerParser, input);
}
