// `routes`: zones to upstreams, with the selection policy and the race
// settings. Each runtime may add its own checks (the worker's connection
// limit) through RouteChecks.

import * as z from "zod";
import { POLICY_NAMES, type PolicyName } from "../../../engine/policies.ts";
import { parseDuration } from "../../duration.ts";
import type { ConfigPathSegment } from "../errors.ts";
import {
  domainName,
  identifier,
  intFrom,
  intIn,
  nonEmpty,
  parsedString,
  positiveDuration,
} from "../fields.ts";
import type { Checker } from "../parse.ts";
import { finalizeHealthCheck, type HealthCheckConfig, healthCheckSchema } from "./health-check.ts";
import type { KeyPath } from "./upstreams.ts";

/** The engine's selection policies are the config's `policy` values. */
export const POLICIES = POLICY_NAMES;
export type Policy = PolicyName;

export interface RouteConfig {
  /** Optional; lets a `forward` rule name the route. */
  name?: string;
  /** Lower-case FQDNs with trailing dot (default ["."]). */
  zones: string[];
  /** Upstream names, in order. */
  upstreams: string[];
  /** Default "sequential". */
  policy: Policy;
  /** Upstreams picked per query: set for weighted_random, else the number of upstreams. */
  server_count: number;
  /** Upstreams queried at once (default 1). */
  worker_count: number;
  /** ms between staggered attempts, "auto" (recent p95), or undefined = off. */
  hedge_delay?: number | "auto";
  /** First valid DNS message wins (default false). */
  race: boolean;
  /** With race: only NOERROR/NXDOMAIN end the race (default false). */
  race_continue_on_error: boolean;
  /** Whole-query budget, ms (default 5000). */
  timeout: number;
  /** Failures that mark an upstream down; 0 = never (default 3). */
  attempt_count: number;
  /** How long a down upstream stays down, ms (default 2000). */
  fail_timeout: number;
  health_check?: HealthCheckConfig;
  /** Names that skip this route (normalized); the relay loader adds except_file's names. */
  except: string[];
  /** Log each defective upstream attempt (default false). */
  debug: boolean;
}

export interface RelayRouteConfig extends RouteConfig {
  /** Path of a file of names to except (read by loadRelayConfig, merged into `except`). */
  except_file?: string;
}

export const routeSchema = z.strictObject({
  name: identifier("route names").optional(),
  zones: z
    .array(domainName)
    .min(1, "needs at least one zone")
    .default(() => ["."]),
  upstreams: z.array(z.string()).min(1, "needs at least one upstream"),
  policy: z.enum(POLICIES).default("sequential"),
  server_count: intFrom(1).optional(),
  worker_count: intFrom(1).optional(),
  hedge_delay: parsedString(
    (text) => (text === "auto" ? ("auto" as const) : parseDuration(text)),
    'a duration or "auto"',
  ).optional(),
  race: z.boolean().default(false),
  race_continue_on_error: z.boolean().default(false),
  timeout: positiveDuration.prefault("5s"),
  attempt_count: intIn(0, 1000).default(3),
  fail_timeout: positiveDuration.prefault("2s"),
  health_check: healthCheckSchema.optional(),
  except: z.array(domainName).default(() => []),
  except_file: nonEmpty.optional(),
  debug: z.boolean().default(false),
});

export type RawRoute = z.output<typeof routeSchema>;

/** A runtime's own checks of one route, given the counts worked out for it. */
export type RouteChecks = (
  route: RawRoute,
  at: KeyPath,
  counts: { serverCount: number; workerCount: number },
  check: Checker,
) => void;

export interface RouteContext {
  /** Names of the configured upstreams. */
  readonly upstreams: ReadonlySet<string>;
  /** Whether a name will exist once resolv.conf entries are expanded (the relay's). */
  readonly pending: (name: string) => boolean;
  /** With pending entries there is no default route yet: the names are not all known. */
  readonly hasPending: boolean;
  readonly runtimeChecks?: RouteChecks;
}

function checkRouteUpstreams(route: RawRoute, at: KeyPath, context: RouteContext, check: Checker) {
  const listed = new Set<string>();
  route.upstreams.forEach((name, k) => {
    if (!context.upstreams.has(name) && !context.pending(name)) {
      check.error(at("upstreams", k), `unknown upstream "${name}"`);
    } else if (listed.has(name)) {
      check.error(at("upstreams", k), `upstream "${name}" is listed twice`);
    }
    listed.add(name);
  });
}

/** server_count and worker_count with their defaults, and the checks tying them together. */
function routeCounts(route: RawRoute, at: KeyPath, check: Checker) {
  const count = route.upstreams.length;
  let serverCount = count;
  if (route.server_count !== undefined) {
    if (route.policy !== "weighted_random") {
      check.error(
        at("server_count"),
        `applies only to policy weighted_random (this route's policy is ${route.policy})`,
      );
    } else if (route.server_count > count) {
      check.error(at("server_count"), `must be between 1 and ${count} (the route's upstreams)`);
    } else {
      serverCount = route.server_count;
    }
  }
  const workerCount = route.worker_count ?? 1;
  if (route.worker_count !== undefined && workerCount > serverCount) {
    const bound =
      serverCount < count ? `${serverCount} (server_count)` : `${count} (the route's upstreams)`;
    check.error(at("worker_count"), `must be between 1 and ${bound}`);
  }
  if (route.hedge_delay !== undefined && workerCount < 2) {
    check.error(
      at("hedge_delay"),
      "staggers parallel attempts, so it needs worker_count of 2 or more",
    );
  }
  if (route.race_continue_on_error && !route.race) {
    check.error(at("race_continue_on_error"), "needs race: true");
  }
  return { serverCount, workerCount };
}

function finalizeRoute(
  route: RawRoute,
  at: KeyPath,
  context: RouteContext,
  check: Checker,
): RelayRouteConfig {
  checkRouteUpstreams(route, at, context, check);
  const counts = routeCounts(route, at, check);
  context.runtimeChecks?.(route, at, counts, check);
  const health =
    route.health_check === undefined
      ? undefined
      : finalizeHealthCheck(route.health_check, (...rest) => at("health_check", ...rest), check);
  return {
    ...(route.name !== undefined ? { name: route.name } : {}),
    zones: route.zones,
    upstreams: route.upstreams,
    policy: route.policy,
    server_count: counts.serverCount,
    worker_count: counts.workerCount,
    ...(route.hedge_delay !== undefined ? { hedge_delay: route.hedge_delay } : {}),
    race: route.race,
    race_continue_on_error: route.race_continue_on_error,
    timeout: route.timeout,
    attempt_count: route.attempt_count,
    fail_timeout: route.fail_timeout,
    ...(health !== undefined ? { health_check: health } : {}),
    except: route.except,
    ...(route.except_file !== undefined ? { except_file: route.except_file } : {}),
    debug: route.debug,
  };
}

/** The routes as written, or one route for "." over every upstream when none are. */
export function finalizeRoutes(
  written: RawRoute[] | undefined,
  context: RouteContext,
  check: Checker,
): RelayRouteConfig[] {
  let raw = written;
  if (raw === undefined) {
    // With resolv.conf entries pending the loader's second pass adds it.
    if (context.hasPending || context.upstreams.size === 0) return [];
    raw = [routeSchema.parse({ upstreams: [...context.upstreams] })];
  }
  const routeNames = new Set<string>();
  return raw.map((route, j) => {
    const at = (...rest: ConfigPathSegment[]) => ["routes", j, ...rest];
    if (route.name !== undefined) {
      if (routeNames.has(route.name))
        check.error(at("name"), `duplicate route name "${route.name}"`);
      routeNames.add(route.name);
    }
    return finalizeRoute(route, at, context, check);
  });
}
