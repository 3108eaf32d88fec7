// `rules`: answers decided before the cache (block, local_data, rewrite,
// forward), first match wins.

import * as z from "zod";
import type { ConfigPathSegment } from "../errors.ts";
import { domainName, intIn, ipText, oneOrMany, qtype } from "../fields.ts";
import type { Checker } from "../parse.ts";
import type { KeyPath } from "./upstreams.ts";

/**
 * A rule matches when the name is one of `name`, or under one of `suffix`
 * (either, when both are given; any name when neither is), and the qtype is
 * in `qtype` (any when empty).
 */
export interface RuleMatch {
  name: string[];
  suffix: string[];
  qtype: number[];
}

/**
 * Rules run before the cache, first match wins.
 * - block: NXDOMAIN, or `block_with: null_ip` (0.0.0.0 / ::).
 * - local_data: answers from `ips` (A/AAAA), `txt`, or a `cname`, with `ttl`
 *   seconds (default 60).
 * - rewrite: asks for `rewrite_domain` and/or `rewrite_type` instead.
 * - forward: sends the query to the route named `route`, skipping zone lookup.
 */
export type RuleConfig =
  | { match: RuleMatch; action: "block"; block_with: "nxdomain" | "null_ip" }
  | {
      match: RuleMatch;
      action: "local_data";
      ips: string[];
      txt: string[];
      cname?: string;
      ttl: number;
    }
  | { match: RuleMatch; action: "rewrite"; rewrite_domain?: string; rewrite_type?: number }
  | { match: RuleMatch; action: "forward"; route: string };

export const ruleSchema = z.strictObject({
  match: z.strictObject({
    name: oneOrMany(domainName, "a domain name").optional(),
    suffix: oneOrMany(domainName, "a domain name").optional(),
    qtype: oneOrMany(qtype, "a query type").optional(),
  }),
  action: z.enum(["block", "local_data", "rewrite", "forward"]),
  block_with: z.enum(["nxdomain", "null_ip"]).optional(),
  ips: oneOrMany(ipText, "an IP address").optional(),
  txt: oneOrMany(z.string(), "a string").optional(),
  cname: domainName.optional(),
  ttl: intIn(0, 2_147_483_647).optional(),
  rewrite_domain: domainName.optional(),
  rewrite_type: qtype.optional(),
  route: z.string().optional(),
});

type RawRule = z.output<typeof ruleSchema>;

/** The keys each action takes beside match and action. */
const RULE_KEYS = {
  block: ["block_with"],
  local_data: ["ips", "txt", "cname", "ttl"],
  rewrite: ["rewrite_domain", "rewrite_type"],
  forward: ["route"],
} as const;

function localData(rule: RawRule, match: RuleMatch, at: KeyPath, check: Checker): RuleConfig {
  const ips = rule.ips ?? [];
  const txt = rule.txt ?? [];
  if (ips.length === 0 && txt.length === 0 && rule.cname === undefined) {
    check.error(at(), "local_data needs ips, txt or cname");
  }
  if (rule.cname !== undefined && (ips.length > 0 || txt.length > 0)) {
    check.error(at("cname"), "a CNAME cannot sit beside other data; use cname alone, or ips/txt");
  }
  return {
    match,
    action: "local_data",
    ips,
    txt,
    ...(rule.cname !== undefined ? { cname: rule.cname } : {}),
    ttl: rule.ttl ?? 60,
  };
}

function finalizeRule(
  rule: RawRule,
  at: KeyPath,
  routeNames: ReadonlySet<string>,
  check: Checker,
): RuleConfig {
  const { name, suffix, qtype } = rule.match;
  const match: RuleMatch = { name: name ?? [], suffix: suffix ?? [], qtype: qtype ?? [] };
  if (name === undefined && suffix === undefined && qtype === undefined) {
    check.error(at("match"), "needs name, suffix or qtype");
  }
  for (const [action, keys] of Object.entries(RULE_KEYS)) {
    if (action === rule.action) continue;
    for (const key of keys) {
      if (rule[key] !== undefined) check.error(at(key), `only action ${action} takes ${key}`);
    }
  }
  switch (rule.action) {
    case "block":
      return { match, action: "block", block_with: rule.block_with ?? "nxdomain" };
    case "local_data":
      return localData(rule, match, at, check);
    case "rewrite":
      if (rule.rewrite_domain === undefined && rule.rewrite_type === undefined) {
        check.error(at(), "rewrite needs rewrite_domain or rewrite_type");
      }
      return {
        match,
        action: "rewrite",
        ...(rule.rewrite_domain !== undefined ? { rewrite_domain: rule.rewrite_domain } : {}),
        ...(rule.rewrite_type !== undefined ? { rewrite_type: rule.rewrite_type } : {}),
      };
    case "forward":
      if (rule.route === undefined) {
        check.error(at("route"), "required: the name of the route to forward to");
      } else if (!routeNames.has(rule.route)) {
        check.error(at("route"), `unknown route "${rule.route}" (give the route a name)`);
      }
      return { match, action: "forward", route: rule.route ?? "" };
  }
}

export function finalizeRules(
  raw: RawRule[],
  routes: readonly { name?: string }[],
  check: Checker,
): RuleConfig[] {
  const routeNames = new Set(routes.flatMap((r) => (r.name === undefined ? [] : [r.name])));
  return raw.map((rule, i) => {
    const at = (...rest: ConfigPathSegment[]) => ["rules", i, ...rest];
    return finalizeRule(rule, at, routeNames, check);
  });
}
