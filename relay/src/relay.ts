// The relay daemon: resolver + transports, listeners, the ops server, and the
// lifecycle (reload swaps the resolver; shutdown stops accepting, drains in
// flight queries up to a deadline, then cancels the rest).

import type { RelayConfig } from "../../shared/config/schema.ts";
import { formatHostPort } from "../../shared/config/upstream-url.ts";
import type { Clock } from "../../shared/engine/clock.ts";
import { createCounters } from "../../shared/engine/counters.ts";
import type { Upstream } from "../../shared/engine/upstream.ts";
import { createPolicy } from "../../shared/policy/rules.ts";
import { createCachedResolver } from "../../shared/resolver/cached-resolver.ts";
import { createResolver } from "../../shared/resolver/create-resolver.ts";
import { createLogThrottle } from "../../shared/resolver/log-throttle.ts";
import {
  createPolicyResolver,
  type PolicyResolver,
} from "../../shared/resolver/policy-resolver.ts";
import { type LoadedBlocklists, loadBlocklists } from "./blocklists.ts";
import { type ClientLimits, createClientLimits } from "./client-limits.ts";
import { createPluginChain, type PluginChain } from "./exec-plugin.ts";
import { startStreamListener } from "./listeners/tcp.ts";
import { type Listener, startUdpListener } from "./listeners/udp.ts";
import type { Logger } from "./log.ts";
import { importLuaVm, type LoadLuaPolicy } from "./lua-plugin.ts";
import {
  createRelayMetrics,
  type RelayMetrics,
  renderCacheStats,
  renderPolicyHits,
  renderPoolStats,
} from "./metrics.ts";
import { type OpsServer, type OpsSource, startOpsServer } from "./ops-server.ts";
import { createQueryHandler, type QueryHandler } from "./query-handler.ts";
import { createStatsdReporter, type StatsdReporter } from "./statsd/reporter.ts";
import { buildTransports } from "./transports/build-transports.ts";
import { relayClock } from "./transports/relay-clock.ts";

export interface Relay {
  readonly listeners: readonly Listener[];
  readonly opsPort: number | undefined;
  /** What /metrics, /readyz and /statusz show for this process. */
  readonly ops: OpsSource;
  readonly metrics: RelayMetrics;
  readonly handler: QueryHandler;
  readonly transports: ReadonlyMap<string, Upstream>;
  /** Swaps in a new config's upstreams, routes, ACL and limits. Listeners stay. */
  reload(config: RelayConfig): Promise<void>;
  /** Stops accepting, waits for queries in flight up to `deadlineMs`, closes. */
  shutdown(deadlineMs?: number): Promise<{ drained: boolean }>;
}

interface Core {
  config: RelayConfig;
  resolver: PolicyResolver;
  transports: Map<string, Upstream>;
  /** The same transports counted and feeding route health, for the origin endpoint. */
  tracked: Map<string, Upstream>;
  closeTransports: () => Promise<void>;
  limits: ClientLimits;
}

/** The config's plugins (exec and Lua) as one chain, their failures and print() lines logged, throttled. */
function buildPlugins(
  config: RelayConfig,
  logger: Logger,
  loadLua: LoadLuaPolicy | undefined,
): PluginChain | undefined {
  const pluginLog = createLogThrottle(10_000);
  const printLog = createLogThrottle(10_000);
  if (config.plugins.entries.length === 0) return undefined;
  return createPluginChain(
    config.plugins,
    (plugin, error) => {
      const take = pluginLog.take();
      if (take) {
        logger.warn("plugin failed", {
          plugin,
          code: error.code,
          error: error.message,
          ...(take.suppressed > 0 ? { more_since_last: take.suppressed } : {}),
        });
      }
    },
    {
      ...(loadLua ? { load: loadLua } : {}),
      // A Lua script's print(): a debugging aid, throttled like failures.
      onPrint: (plugin, line) => {
        const take = printLog.take();
        if (take) {
          logger.info("plugin print", {
            plugin,
            line,
            ...(take.suppressed > 0 ? { more_since_last: take.suppressed } : {}),
          });
        }
      },
    },
  );
}

function buildCore(
  config: RelayConfig,
  logger: Logger,
  blocklists: LoadedBlocklists,
  statsd: StatsdReporter | undefined,
  loadLua: LoadLuaPolicy | undefined,
  clock: Clock,
): Core {
  const built = buildTransports(config, clock);
  const transports = built.upstreams;
  const routing = createResolver({
    upstreams: config.upstreams,
    routes: config.routes,
    transports,
    clock,
    ...(statsd ? { counters: statsd.wrapCounters(createCounters()) } : {}),
    onAttemptError: (e) =>
      logger.info("upstream attempt failed", {
        route: e.route,
        upstream: e.upstream,
        error_class: e.errorClass,
        error: e.error,
      }),
  });
  const cached = createCachedResolver(routing, config.cache, () => clock.now(), undefined, {
    clock,
  });
  const plugins = buildPlugins(config, logger, loadLua);
  const resolver = createPolicyResolver(
    cached,
    createPolicy({ rules: config.rules, blocklist: blocklists.set, allowlist: config.allowlist }),
    plugins,
  );
  const limits = createClientLimits({
    qps: config.rate_limit.qps,
    burst: config.rate_limit.burst,
    maxInFlight: config.rate_limit.max_in_flight,
  });
  return {
    config,
    resolver,
    transports,
    tracked: new Map([...transports.keys()].map((name) => [name, routing.upstream(name)!])),
    closeTransports: async () => {
      plugins?.close();
      await built.close();
    },
    limits,
  };
}

/**
 * Health per route with every configured upstream listed: one the tracker
 * has not seen yet (no attempts) counts as up.
 */
function routeHealth(core: Core) {
  return core.resolver.status().map((route, i) => {
    const names = core.config.routes[i]?.upstreams ?? [];
    const seen = new Map(route.upstreams.map((u) => [u.name, u]));
    return {
      ...route,
      upstreams: names.map((name) => seen.get(name) ?? { name, up: true, total: 0 }),
    };
  });
}

async function closeCore(core: Core): Promise<void> {
  await core.resolver.close();
  await core.closeTransports();
}

/** Loads the config's block lists and says what they hold. */
async function loadLists(config: RelayConfig, logger: Logger): Promise<LoadedBlocklists> {
  const lists = await loadBlocklists(config);
  if (config.blocklists.length > 0) {
    logger.info("blocklists loaded", {
      lists: config.blocklists.length,
      names: lists.entries,
      rejected_lines: lists.rejected,
      ms: Math.round(lists.ms),
    });
  }
  return lists;
}

export interface RelayOptions {
  /** Bind listen.metrics here (default true); a worker leaves it to its supervisor. */
  serveOps?: boolean;
  /** Time for the pools, the engine and the cache (tests pass a manual clock). */
  clock?: Clock;
  /** This process's worker slot (workers > 1), for its statsd gauges. */
  worker?: number;
  /** statsd's clock (tests drive flushes with a manual one). */
  statsdClock?: Clock;
}

export async function startRelay(
  config: RelayConfig,
  logger: Logger,
  { serveOps = true, clock = relayClock, worker, statsdClock }: RelayOptions = {},
): Promise<Relay> {
  const lists = await loadLists(config, logger);
  const statsd = createStatsd(config, logger, worker, statsdClock);
  let core = buildCore(config, logger, lists, statsd, await importLuaVm(config.plugins), clock);
  statsd?.watchPools(() => core.transports);
  const metrics = statsd ? statsd.wrapMetrics(createRelayMetrics()) : createRelayMetrics();
  const shutdownController = new AbortController();
  const handler = createQueryHandler({
    allow: () => core.config.allow,
    limits: () => core.limits,
    resolver: () => core.resolver,
    metrics,
    logger,
    shutdown: shutdownController.signal,
  });
  const listeners: Listener[] = [];
  let ops: OpsServer | undefined;
  let ready = false;
  const opsSource = createOpsSource({
    core: () => core,
    ready: () => ready,
    listeners,
    handler,
    metrics,
    statsd,
  });
  try {
    const transports = () => core.tracked;
    await startListeners(config.listen, { handler, metrics, logger, transports }, listeners);
    if (config.listen.metrics && serveOps) {
      ops = await startOpsServer(config.listen.metrics.addr, opsSource);
    }
  } catch (error) {
    for (const listener of listeners) await listener.close();
    await closeCore(core);
    await statsd?.close();
    throw error;
  }
  core.resolver.start();
  ready = true;
  logListening(config, listeners, ops, logger);

  return {
    listeners,
    ops: opsSource,
    metrics,
    handler,
    get transports() {
      return core.transports;
    },
    get opsPort() {
      return ops?.port;
    },
    async reload(next) {
      core = await replaceCore(core, next, logger, statsd, clock);
    },
    async shutdown(deadlineMs = 5000) {
      ready = false;
      for (const l of listeners) l.stop();
      const drained = await drainWithin(handler, deadlineMs);
      if (!drained) {
        shutdownController.abort(new Error("shutting down"));
        await handler.drained();
      }
      for (const l of listeners) await l.close();
      await ops?.close();
      await closeCore(core);
      // After the drain, so the last flush counts every query answered.
      await statsd?.close();
      return { drained };
    },
  };
}

/** The statsd reporter, when metrics.statsd is configured. */
function createStatsd(
  config: RelayConfig,
  logger: Logger,
  worker: number | undefined,
  clock: Clock | undefined,
): StatsdReporter | undefined {
  if (!config.metrics.statsd) return undefined;
  return createStatsdReporter({
    config: config.metrics.statsd,
    logger,
    ...(worker !== undefined ? { worker } : {}),
    ...(clock ? { clock } : {}),
  });
}

interface OpsParts {
  /** The core in use (reload swaps it). */
  core: () => Core;
  ready: () => boolean;
  listeners: readonly Listener[];
  handler: QueryHandler;
  metrics: RelayMetrics;
  statsd: StatsdReporter | undefined;
}

/** What /metrics, /readyz and /statusz show, read from the core in use at each request. */
function createOpsSource({
  core,
  ready,
  listeners,
  handler,
  metrics,
  statsd,
}: OpsParts): OpsSource {
  return {
    metrics: () => {
      const { resolver, transports } = core();
      return metrics.render(
        resolver.counters(),
        renderPoolStats(transports) +
          renderCacheStats(resolver.cacheStats()) +
          renderPolicyHits(resolver.policyHits()),
      );
    },
    ready: () => ready() && routeHealth(core()).every((route) => route.upstreams.some((u) => u.up)),
    status: () => ({
      ready: ready(),
      listeners: listeners.map((l) => ({ name: l.name, address: l.address })),
      in_flight: handler.inFlight,
      routes: routeHealth(core()),
      cache: core().resolver.cacheStats(),
      policy_hits: core().resolver.policyHits(),
      pools: Object.fromEntries(
        [...core().transports].flatMap(([name, t]) => {
          const stats = t.poolStats?.();
          return stats ? [[name, stats]] : [];
        }),
      ),
      ...(statsd ? { statsd: statsd.stats() } : {}),
    }),
  };
}

interface ListenerParts {
  handler: QueryHandler;
  metrics: RelayMetrics;
  logger: Logger;
  /** The transports in use, counted and feeding route health, for the origin listener (reload swaps them). */
  transports: () => ReadonlyMap<string, Upstream>;
}

/**
 * Starts each configured listener, pushing it onto `started` as it binds, so
 * that a caller whose later listener fails can close the ones before it.
 */
async function startListeners(
  listen: RelayConfig["listen"],
  { handler, metrics, logger, transports }: ListenerParts,
  started: Listener[],
): Promise<void> {
  if (listen.udp) started.push(await startUdpListener(listen.udp, handler, logger));
  if (listen.tcp) {
    started.push(
      await startStreamListener({ protocol: "tcp", config: listen.tcp, handler, metrics, logger }),
    );
  }
  if (listen.dot) {
    started.push(
      await startStreamListener({
        protocol: "dot",
        config: listen.dot,
        tls: { cert: listen.dot.cert, key: listen.dot.key },
        handler,
        metrics,
        logger,
      }),
    );
  }
  // The HTTP listeners load only when configured: @hono/node-server reaches
  // for Node's fetch classes (Request, Response) as it loads, about 6 MB of
  // idle memory a relay without DoH or origin listeners does not need.
  if (listen.doh) {
    const { startDohListener } = await import("./listeners/doh.ts");
    started.push(await startDohListener({ config: listen.doh, handler, metrics, logger }));
  }
  if (listen.origin) {
    const { readOriginToken, startOriginListener } = await import("./listeners/origin.ts");
    started.push(
      await startOriginListener({
        config: listen.origin,
        transports,
        token: readOriginToken(listen.origin),
        metrics,
        logger,
      }),
    );
  }
}

function logListening(
  config: RelayConfig,
  listeners: readonly Listener[],
  ops: OpsServer | undefined,
  logger: Logger,
): void {
  for (const l of listeners) logger.info("listening", { listener: l.name, address: l.address });
  if (ops && config.listen.metrics) {
    logger.info("listening", {
      listener: "metrics",
      address: formatHostPort({ ...config.listen.metrics.addr, port: ops.port }),
    });
  }
}

/**
 * The core for a reloaded config, started; the old one is closed once its
 * queries in flight have had their route timeout. Throws on a config it
 * cannot serve (or lists it cannot read), leaving the old core in use.
 */
async function replaceCore(
  old: Core,
  next: RelayConfig,
  logger: Logger,
  statsd: StatsdReporter | undefined,
  clock: Clock,
): Promise<Core> {
  const lists = await loadLists(next, logger);
  const fresh = buildCore(next, logger, lists, statsd, await importLuaVm(next.plugins), clock);
  if (JSON.stringify(next.listen) !== JSON.stringify(old.config.listen)) {
    logger.warn("listen: changes take effect after a restart", {});
  }
  if (JSON.stringify(next.metrics) !== JSON.stringify(old.config.metrics)) {
    logger.warn("metrics: changes take effect after a restart", {});
  }
  fresh.resolver.start();
  // Queries already running on the old resolver finish there (within their
  // route timeout); close it after that.
  const grace = Math.max(0, ...old.config.routes.map((r) => r.timeout)) + 1000;
  setTimeout(() => void closeCore(old), grace).unref();
  logger.info("config reloaded", { upstreams: next.upstreams.map((u) => u.name) });
  return fresh;
}

/** Whether the queries in flight all end within `deadlineMs`. */
async function drainWithin(handler: QueryHandler, deadlineMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const drained = await Promise.race([
    handler.drained().then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), deadlineMs);
    }),
  ]);
  clearTimeout(timer);
  return drained;
}
