// Selection policies: for one query, the order in which upstreams are tried.
// The engine hands a policy only the upstreams that are up; a policy may
// return fewer (weighted_random's server_count, availability's pull-outs).

import { EngineConfigError } from "./errors.ts";
import type { HealthTracker } from "./health.ts";
import { type Random, randomIndex, shuffled } from "./random.ts";

export const POLICY_NAMES = [
  "sequential",
  "round_robin",
  "random",
  "weighted_random",
  "least_outstanding",
  "least_total",
  "failover",
  "availability",
  "fastest",
] as const;

export type PolicyName = (typeof POLICY_NAMES)[number];

export type PolicyConfig =
  | { name: "weighted_random"; serverCount?: number }
  | { name: "fastest"; exploreRate?: number }
  | { name: Exclude<PolicyName, "weighted_random" | "fastest"> };

export interface PolicyCandidate {
  readonly name: string;
  /** Load factor 1-100 (weighted_random). */
  readonly weight: number;
}

export interface PolicyContext {
  readonly health: HealthTracker;
  readonly random: Random;
  readonly now: number;
}

export interface Policy {
  readonly name: PolicyName;
  order<T extends PolicyCandidate>(candidates: readonly T[], ctx: PolicyContext): T[];
}

const by =
  <T>(key: (item: T) => number) =>
  (a: T, b: T) =>
    key(a) - key(b);

/** Picks `count` of `items` without replacement, each pick proportional to weight. */
export function weightedPicks<T extends PolicyCandidate>(
  items: readonly T[],
  count: number,
  random: Random,
): T[] {
  const left = items.slice();
  let total = left.reduce((sum, item) => sum + item.weight, 0);
  const out: T[] = [];
  while (out.length < count && left.length > 0) {
    let point = random.next() * total;
    let i = 0;
    while (i < left.length - 1 && point >= left[i]!.weight) {
      point -= left[i]!.weight;
      i++;
    }
    const [picked] = left.splice(i, 1);
    total -= picked!.weight;
    out.push(picked!);
  }
  return out;
}

function sequential(): Policy {
  return { name: "sequential", order: (candidates) => candidates.slice() };
}

function roundRobin(): Policy {
  let turn = 0;
  return {
    name: "round_robin",
    order(candidates) {
      if (candidates.length === 0) return [];
      const start = turn++ % candidates.length;
      if (turn >= 0x40000000) turn = 0;
      return [...candidates.slice(start), ...candidates.slice(0, start)];
    },
  };
}

function random(): Policy {
  return { name: "random", order: (candidates, ctx) => shuffled(candidates, ctx.random) };
}

function weightedRandom(serverCount: number | undefined): Policy {
  if (serverCount !== undefined && (!Number.isInteger(serverCount) || serverCount < 1)) {
    throw new EngineConfigError(`server_count must be a positive integer, got ${serverCount}`);
  }
  return {
    name: "weighted_random",
    order: (candidates, ctx) =>
      weightedPicks(candidates, serverCount ?? candidates.length, ctx.random),
  };
}

function leastOutstanding(): Policy {
  // Shuffled first so ties are broken at random (the sort is stable).
  return {
    name: "least_outstanding",
    order: (candidates, ctx) =>
      shuffled(candidates, ctx.random).sort(by((c) => ctx.health.view(c.name).inFlight)),
  };
}

function leastTotal(): Policy {
  // Ties in declared order, so equal totals take turns deterministically.
  return {
    name: "least_total",
    order: (candidates, ctx) => candidates.slice().sort(by((c) => ctx.health.view(c.name).total)),
  };
}

function failover(): Policy {
  // Declared order, except that an upstream which failed within the last
  // fail_timeout goes behind the others until that time has passed (or it
  // succeeds again), even before attempt_count marks it down.
  return {
    name: "failover",
    order(candidates, ctx) {
      const recentlyFailed = (name: string) => {
        const h = ctx.health.view(name);
        return (
          h.consecutiveFailures > 0 &&
          h.lastFailureAt !== undefined &&
          ctx.now < h.lastFailureAt + ctx.health.failTimeoutMs
        );
      };
      const primary = candidates.filter((c) => !recentlyFailed(c.name));
      const demoted = candidates.filter((c) => recentlyFailed(c.name));
      return [...primary, ...demoted];
    },
  };
}

function availability(): Policy {
  // dotproxy's Availability: random among those not pulled out; a failing
  // upstream is out for base * 2^(failures-1) (see HealthTracker.availableAt).
  return {
    name: "availability",
    order: (candidates, ctx) =>
      shuffled(
        candidates.filter((c) => ctx.health.availableAt(c.name) <= ctx.now),
        ctx.random,
      ),
  };
}

function fastest(exploreRate: number): Policy {
  if (!(exploreRate >= 0 && exploreRate <= 1)) {
    throw new EngineConfigError(`explore rate must be in [0, 1], got ${exploreRate}`);
  }
  // Untried upstreams first (declared order), then by latency EWMA. With
  // probability exploreRate a random other upstream goes first, so one slow
  // sample (a cold connection) does not exclude an upstream for good.
  return {
    name: "fastest",
    order(candidates, ctx) {
      const latency = (c: PolicyCandidate) => ctx.health.view(c.name).ewmaLatencyMs ?? -1;
      const out = candidates.slice().sort(by(latency));
      if (out.length > 1 && exploreRate > 0 && ctx.random.next() < exploreRate) {
        const i = 1 + randomIndex(ctx.random, out.length - 1);
        const [explored] = out.splice(i, 1);
        out.unshift(explored!);
      }
      return out;
    },
  };
}

/** A fresh policy instance (its own round-robin turn and so on). */
export function createPolicy(config: PolicyName | PolicyConfig): Policy {
  const c: PolicyConfig = typeof config === "string" ? ({ name: config } as PolicyConfig) : config;
  switch (c.name) {
    case "sequential":
      return sequential();
    case "round_robin":
      return roundRobin();
    case "random":
      return random();
    case "weighted_random":
      return weightedRandom(c.serverCount);
    case "least_outstanding":
      return leastOutstanding();
    case "least_total":
      return leastTotal();
    case "failover":
      return failover();
    case "availability":
      return availability();
    case "fastest":
      return fastest(c.exploreRate ?? 0.05);
    default:
      throw new EngineConfigError(
        `unknown policy "${(c as { name: string }).name}" (one of ${POLICY_NAMES.join(", ")})`,
      );
  }
}
