// The sections both runtimes take (upstreams, routes, cache, rules,
// blocklists, allowlist, log) and the final checks that do not depend on
// the runtime. Upstreams differ per runtime, so each passes its own schema.

import * as z from "zod";
import { domainName } from "./fields.ts";
import type { Checker } from "./parse.ts";
import {
  type BlocklistConfig,
  blocklistSchema,
  finalizeBlocklists,
} from "./sections/blocklists.ts";
import { type CacheConfig, cacheSchema, finalizeCache } from "./sections/cache.ts";
import { type RelayRouteConfig, routeSchema } from "./sections/routes.ts";
import { finalizeRules, type RuleConfig, ruleSchema } from "./sections/rules.ts";

export interface LogConfig {
  level: "debug" | "info" | "warn" | "error";
}

export interface CommonConfig<U, R> {
  upstreams: U[];
  /** Default: one route for "." over every upstream. */
  routes: R[];
  cache: CacheConfig;
  rules: RuleConfig[];
  blocklists: BlocklistConfig[];
  /** Names never blocked by blocklists. */
  allowlist: string[];
  log: LogConfig;
}

/** The shared sections' schemas around a runtime's upstream entry schema. */
export function commonShape<U extends z.ZodType>(upstream: U) {
  return {
    upstreams: z.array(upstream).min(1, "needs at least one upstream"),
    routes: z.array(routeSchema).optional(),
    cache: cacheSchema.prefault({}),
    rules: z.array(ruleSchema).default(() => []),
    blocklists: z.array(blocklistSchema).default(() => []),
    allowlist: z.array(domainName).default(() => []),
    log: z
      .strictObject({ level: z.enum(["debug", "info", "warn", "error"]).default("info") })
      .prefault({}),
  };
}

type RawShared = z.output<z.ZodObject<ReturnType<typeof commonShape<z.ZodUnknown>>>>;

/** The sections after upstreams and routes, checked against the finished routes. */
export function finalizeShared(
  raw: RawShared,
  routes: readonly RelayRouteConfig[],
  check: Checker,
): Omit<CommonConfig<never, never>, "upstreams" | "routes"> {
  return {
    rules: finalizeRules(raw.rules, routes, check),
    cache: finalizeCache(raw.cache, check),
    blocklists: finalizeBlocklists(raw.blocklists, check),
    allowlist: raw.allowlist,
    log: { level: raw.log.level },
  };
}
