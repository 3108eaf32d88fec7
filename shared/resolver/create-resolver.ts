// One query in, one answer out, the same in both runtimes: route by zone
// (except lists), then the route's race over its upstreams. Transports are
// injected: each runtime builds the Upstreams it can speak.

import { formatHostPort } from "../config/ip.ts";
import type { RouteConfig, UpstreamConfig } from "../config/schema.ts";
import { createRouteTable } from "../config/zones.ts";
import { forUpstream, fromUpstream } from "../dns/edns-options.ts";
import {
  buildErrorResponse,
  DnsWireError,
  EdeCode,
  type Question,
  Rcode,
  readQuestion,
} from "../dns/wire.ts";
import { type Clock, systemClock } from "../engine/clock.ts";
import { type Counters, createCounters, type UpstreamCounterSnapshot } from "../engine/counters.ts";
import { type ErrorClass, UpstreamError } from "../engine/errors.ts";
import { createHealthTracker, type UpstreamHealth } from "../engine/health.ts";
import { createHealthChecker, type HealthChecker } from "../engine/health-check.ts";
import type { PolicyConfig } from "../engine/policies.ts";
import { createDnsProbe, createHttpProbe } from "../engine/probes.ts";
import {
  createRace,
  type Race,
  type RaceConfig,
  type RaceMember,
  type RaceOptions,
  toServfail,
} from "../engine/race.ts";
import { createCryptoRandom, type Random } from "../engine/random.ts";
import { createTrackedUpstream } from "../engine/tracked-upstream.ts";
import type { Upstream } from "../engine/upstream.ts";

export interface ResolverOptions {
  upstreams: readonly UpstreamConfig[];
  routes: readonly RouteConfig[];
  /** The transports, by upstream name (built by the runtime). */
  transports: ReadonlyMap<string, Upstream>;
  /** Cap on attempts in flight per query (the worker's platform limit). */
  maxConcurrentAttempts?: number;
  /** True: each query arms its own deadline timer and abort listener (the worker; see RaceOptions). */
  selfContainedQueries?: boolean;
  clock?: Clock;
  random?: Random;
  fetch?: typeof fetch;
  /** Defective attempts of routes with `debug: true`. */
  onAttemptError?: (event: AttemptErrorEvent) => void;
  /** Per-upstream accounting (default: a fresh createCounters()); the relay's statsd wraps it. */
  counters?: Counters;
}

export interface AttemptErrorEvent {
  route: string;
  upstream: string;
  errorClass: ErrorClass;
  error: UpstreamError;
}

export type ResolveOutcome =
  | {
      kind: "answer";
      answer: Uint8Array;
      route: string;
      upstream: string;
      /** The answer's full RCODE, when the resolver has read it already. */
      rcode?: number;
    }
  | { kind: "servfail"; answer: Uint8Array; route: string; error: UpstreamError }
  | { kind: "refused" | "formerr"; answer: Uint8Array };

export interface RouteStatus {
  name: string;
  zones: string[];
  policy: string;
  upstreams: UpstreamHealth[];
}

export interface Resolver {
  /**
   * Answers a query: the winning answer (with the query's ID), SERVFAIL with
   * an EDE when every attempt failed, REFUSED when no route applies, FORMERR
   * when the question cannot be read. Throws only for a message shorter
   * than a DNS header (nothing to answer). `question` is the query's, when
   * the caller has read it already (readQuestion), so it is not read twice.
   */
  resolve(query: Uint8Array, signal?: AbortSignal, question?: Question): Promise<ResolveOutcome>;
  /** Per upstream, across routes (fanout's accounting). */
  counters(): Record<string, UpstreamCounterSnapshot>;
  status(): RouteStatus[];
  /** Answers through the route named `name` (a `forward` rule), skipping zone lookup. */
  resolveRoute(name: string, query: Uint8Array, signal?: AbortSignal): Promise<ResolveOutcome>;
  /** Starts active health checks. */
  start(): void;
  close(): Promise<void>;
}

interface BuiltRoute {
  name: string;
  config: RouteConfig;
  race: Race;
  checker: HealthChecker | undefined;
}

const routeName = (route: RouteConfig, index: number) =>
  route.name ?? `${index}:${route.zones.join(",")}`;

function policyOf(route: RouteConfig): PolicyConfig {
  return route.policy === "weighted_random"
    ? { name: "weighted_random", serverCount: route.server_count }
    : { name: route.policy };
}

/** What the routes of one resolver share. */
interface RouteContext {
  options: ResolverOptions;
  byName: ReadonlyMap<string, UpstreamConfig>;
  counters: Counters;
  clock: Clock;
  random: Random;
}

/** The resolver createResolver builds: also lends its upstreams out, tracked. */
export interface RoutingResolver extends Resolver {
  /**
   * The transport of upstream `name` for use outside a route (the relay's
   * origin endpoint), counted and feeding the health of every route it
   * serves in; undefined for an unknown name.
   */
  upstream(name: string): Upstream | undefined;
}

/** Each transport counted and feeding the health of the routes it serves in. */
function trackedUpstreams(
  routes: readonly BuiltRoute[],
  context: RouteContext,
): Map<string, Upstream> {
  return new Map(
    [...context.options.transports].map(([name, transport]) => {
      const healths = routes
        .filter((r) => r.config.upstreams.includes(name))
        .map((r) => r.race.health);
      const options = { counters: context.counters, healths, clock: context.clock };
      return [name, createTrackedUpstream(transport, options)];
    }),
  );
}

export function createResolver(options: ResolverOptions): RoutingResolver {
  const context: RouteContext = {
    options,
    byName: new Map(options.upstreams.map((u) => [u.name, u])),
    counters: options.counters ?? createCounters(),
    clock: options.clock ?? systemClock,
    random: options.random ?? createCryptoRandom(),
  };
  const routes = options.routes.map((route, index) => buildRoute(route, index, context));
  const tracked = trackedUpstreams(routes, context);
  const table = createRouteTable(
    routes.map((r) => ({ ...r, zones: r.config.zones, except: r.config.except })),
  );

  return {
    resolve(query, signal, question) {
      try {
        const qname = questionName(query, question);
        if (qname === undefined) {
          return Promise.resolve({
            kind: "formerr",
            answer: buildErrorResponse(query, Rcode.FORMERR),
          });
        }
        const match = table.match(qname);
        if (!match) return Promise.resolve(refusedOutcome(query));
        return raceOn(match.route, query, signal);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    async resolveRoute(name, query, signal) {
      const route = routes.find((r) => r.config.name === name);
      if (!route) return noSuchRouteOutcome(name, query);
      return raceOn(route, query, signal);
    },
    counters: () => context.counters.snapshot(),
    upstream: (name) => tracked.get(name),
    status: () =>
      routes.map((r) => ({
        name: r.name,
        zones: r.config.zones,
        policy: r.config.policy,
        upstreams: r.race.health.snapshot(),
      })),
    start() {
      for (const r of routes) r.checker?.start();
    },
    async close() {
      for (const r of routes) r.checker?.stop();
      await Promise.all(routes.map((r) => r.race.close()));
    },
  };
}

/** A route's race over its upstreams, and its health checker if it has one. */
function buildRoute(route: RouteConfig, index: number, context: RouteContext): BuiltRoute {
  const name = routeName(route, index);
  const members = raceMembers(name, route, context);
  const health = createHealthTracker({
    attemptCount: route.attempt_count,
    failTimeoutMs: route.fail_timeout,
    clock: context.clock,
  });
  const race = createRace({
    name,
    upstreams: members,
    policy: policyOf(route),
    workerCount: route.worker_count,
    timeoutMs: route.timeout,
    race: route.race,
    raceContinueOnError: route.race_continue_on_error,
    ...(route.hedge_delay !== undefined ? { hedgeDelayMs: route.hedge_delay } : {}),
    ...platformLimits(context.options),
    health,
    counters: context.counters,
    clock: context.clock,
    random: context.random,
    ...attemptErrorReporter(name, route, context.options),
  });
  const checker = route.health_check
    ? createHealthChecker({
        upstreams: members.map((m) => m.upstream),
        health,
        intervalMs: route.health_check.interval,
        timeoutMs: route.health_check.timeout,
        clock: context.clock,
        probe: healthProbe(route.health_check, context),
      })
    : undefined;
  return { name, config: route, race, checker };
}

/** The route's upstreams as the race sees them: transport, weight and timeout. */
function raceMembers(name: string, route: RouteConfig, context: RouteContext): RaceMember[] {
  return route.upstreams.map((upstreamName) => {
    const upstream = context.options.transports.get(upstreamName);
    if (!upstream) throw new Error(`route ${name}: no transport for upstream "${upstreamName}"`);
    const config = context.byName.get(upstreamName);
    return { upstream, weight: config?.weight ?? 100, timeoutMs: config?.timeout };
  });
}

/** The runtime's limits on a query's attempts, when it sets any. */
function platformLimits(
  options: ResolverOptions,
): Pick<RaceOptions, "maxConcurrentAttempts" | "selfContainedQueries"> {
  return {
    ...(options.maxConcurrentAttempts !== undefined
      ? { maxConcurrentAttempts: options.maxConcurrentAttempts }
      : {}),
    ...(options.selfContainedQueries !== undefined
      ? { selfContainedQueries: options.selfContainedQueries }
      : {}),
  };
}

/** Reports the defective attempts of a route with `debug: true`, named after the route. */
function attemptErrorReporter(
  name: string,
  route: RouteConfig,
  options: ResolverOptions,
): Pick<RaceConfig, "onAttemptError"> {
  const onAttemptError = options.onAttemptError;
  if (!route.debug || !onAttemptError) return {};
  return {
    onAttemptError: (upstream: string, errorClass: ErrorClass, error: UpstreamError) =>
      onAttemptError({ route: name, upstream, errorClass, error }),
  };
}

/** The probe a route's health check sends: a DNS query, or an HTTP GET to each upstream's host. */
function healthProbe(check: NonNullable<RouteConfig["health_check"]>, context: RouteContext) {
  if (check.kind === "dns") {
    return createDnsProbe({
      name: check.query.name,
      type: check.query.qtype,
      random: context.random,
    });
  }
  return createHttpProbe({
    url: (u) => {
      // Every member is a configured upstream: byName has it.
      const host = context.byName.get(u.name)!.url.host;
      return `http://${formatHostPort({ host, port: check.port })}${check.path}`;
    },
    ...(context.options.fetch ? { fetch: context.options.fetch } : {}),
  });
}

/**
 * The query's name: from `question` when the caller has read it, else from
 * the query. Undefined when a full header holds no readable question (a
 * FORMERR); throws for a message shorter than a header.
 */
function questionName(query: Uint8Array, question: Question | undefined): string | undefined {
  try {
    return question?.name ?? readQuestion(query).name;
  } catch (error) {
    if (error instanceof DnsWireError && query.length >= 12) return undefined;
    throw error;
  }
}

function refusedOutcome(query: Uint8Array): ResolveOutcome {
  return {
    kind: "refused",
    answer: buildErrorResponse(query, Rcode.REFUSED, {
      ede: { code: EdeCode.NOT_SUPPORTED, text: "no route for this name" },
    }),
  };
}

function noSuchRouteOutcome(name: string, query: Uint8Array): ResolveOutcome {
  return {
    kind: "servfail",
    answer: buildErrorResponse(query, Rcode.SERVFAIL, {
      ede: { code: EdeCode.OTHER, text: `no route named ${name}` },
    }),
    route: name,
    error: new UpstreamError("internal", name, `no route named ${name}`),
  };
}

// The OPT is hop-by-hop (edns-options.ts): the query's is rewritten once,
// before every attempt, and the winning answer's before the cache sees it.
function raceOn(
  route: BuiltRoute,
  query: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<ResolveOutcome> {
  let upstreamQuery: Uint8Array;
  try {
    upstreamQuery = forUpstream(query);
  } catch {
    // RFC 6891 §7: a malformed OPT is a format error.
    return Promise.resolve({ kind: "formerr", answer: buildErrorResponse(query, Rcode.FORMERR) });
  }
  return route.race.resolve(upstreamQuery, signal).then((result): ResolveOutcome => {
    if (!result.ok) {
      return {
        kind: "servfail",
        answer: toServfail(query, result),
        route: route.name,
        error: result.error,
      };
    }
    let answer: Uint8Array;
    try {
      answer = fromUpstream(result.answer);
    } catch {
      return malformedOptOutcome(route.name, result.upstream, query);
    }
    return {
      kind: "answer",
      answer,
      route: route.name,
      upstream: result.upstream,
      rcode: result.rcode,
    };
  });
}

/** SERVFAIL for a winning answer whose OPT cannot be rewritten. */
function malformedOptOutcome(route: string, upstream: string, query: Uint8Array): ResolveOutcome {
  return {
    kind: "servfail",
    answer: buildErrorResponse(query, Rcode.SERVFAIL, {
      ede: { code: EdeCode.INVALID_DATA, text: "malformed OPT in the upstream answer" },
    }),
    route,
    error: new UpstreamError(
      "malformed_answer",
      upstream,
      `${upstream}: answer OPT cannot be rewritten`,
    ),
  };
}
