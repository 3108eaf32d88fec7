// The policy decision for one question (README, "`cache`, `rules`,
// `blocklists`, `allowlist`"): rules first, in order, first match wins; then
// the block lists unless the allowlist exempts the name (or a parent).
// BalanceDNS's actions: block, local_data, rewrite, forward; "pass" lets the
// query through to the cache and the routes.

import type { RuleConfig } from "../config/schema.ts";
import { rrTypeName } from "../dns/codes.ts";
import type { NameMatcher } from "./compiled-list.ts";
import { createSuffixSet, normalizeName, type SuffixSet } from "./suffix-set.ts";

export type Decision =
  | { action: "pass" }
  | { action: "block"; with: "nxdomain" | "null_ip"; source: "rule" | "blocklist" }
  | { action: "local_data"; ips: string[]; txt: string[]; cname?: string | undefined; ttl: number }
  | { action: "rewrite"; name?: string | undefined; qtype?: string | undefined }
  | { action: "forward"; route: string };

export interface Policy {
  decide(name: string, qtype: number): Decision;
  /** Decisions taken so far, by action ("block" counts rule and list blocks). */
  hits(): Record<string, number>;
}

export interface PolicyOptions {
  rules: readonly RuleConfig[];
  /** Text lists (a SuffixSet), compiled lists, or both (unionMatchers). */
  blocklist?: NameMatcher | undefined;
  allowlist?: readonly string[];
}

interface CompiledRule {
  names: Set<string>;
  suffixes: SuffixSet | undefined;
  qtypes: Set<number>;
  decision: Decision;
}

function compile(rule: RuleConfig): CompiledRule {
  const { match } = rule;
  let decision: Decision;
  switch (rule.action) {
    case "block":
      decision = { action: "block", with: rule.block_with, source: "rule" };
      break;
    case "local_data":
      decision = {
        action: "local_data",
        ips: rule.ips,
        txt: rule.txt,
        cname: rule.cname,
        ttl: rule.ttl,
      };
      break;
    case "rewrite":
      decision = {
        action: "rewrite",
        name: rule.rewrite_domain,
        qtype: rule.rewrite_type === undefined ? undefined : rrTypeName(rule.rewrite_type),
      };
      break;
    case "forward":
      decision = { action: "forward", route: rule.route };
      break;
  }
  return {
    names: new Set(match.name.map(normalizeName)),
    suffixes: match.suffix.length > 0 ? createSuffixSet(match.suffix) : undefined,
    qtypes: new Set(match.qtype),
    decision,
  };
}

function matches(rule: CompiledRule, name: string, qtype: number): boolean {
  if (rule.qtypes.size > 0 && !rule.qtypes.has(qtype)) return false;
  const anyName = rule.names.size === 0 && rule.suffixes === undefined;
  return anyName || rule.names.has(name) || (rule.suffixes?.matches(name) ?? false);
}

const PASS: Decision = { action: "pass" };

export function createPolicy(options: PolicyOptions): Policy {
  const rules = options.rules.map(compile);
  const allow = createSuffixSet(options.allowlist ?? []);
  const blocklist = options.blocklist;
  const counts: Record<string, number> = {};
  const count = (decision: Decision) => {
    counts[decision.action] = (counts[decision.action] ?? 0) + 1;
    return decision;
  };
  return {
    decide(name, qtype) {
      if (rules.length === 0 && !(blocklist && blocklist.size > 0)) return PASS;
      const normalized = normalizeName(name);
      for (const rule of rules) if (matches(rule, normalized, qtype)) return count(rule.decision);
      if (
        blocklist &&
        blocklist.size > 0 &&
        blocklist.matches(normalized) &&
        !allow.matches(normalized)
      ) {
        return count({ action: "block", with: "nxdomain", source: "blocklist" });
      }
      return PASS;
    },
    hits: () => ({ ...counts }),
  };
}
