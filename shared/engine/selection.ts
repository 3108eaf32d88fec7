// Which upstreams a query tries, in order: the policy's order of those that
// are up; when none is (or the policy pulls every one out), one at random
// anyway rather than no attempt at all.

import type { HealthTracker } from "./health.ts";
import type { Policy } from "./policies.ts";
import type { Member } from "./race-settings.ts";
import { type Random, randomIndex } from "./random.ts";

/** Why one random upstream is tried anyway; undefined for a normal selection. */
export type Spray = "down" | "unavailable" | undefined;

export interface Selection {
  candidates: Member[];
  spray: Spray;
}

export interface SelectionInputs {
  readonly members: readonly Member[];
  readonly policy: Policy;
  readonly health: HealthTracker;
  readonly random: Random;
}

export function createSelector(inputs: SelectionInputs): (now: number) => Selection {
  const { members, policy, health, random } = inputs;
  return (now) => {
    // Filter only when something is down: the common case allocates nothing here.
    let up: readonly Member[] = members;
    for (const m of members) {
      if (!health.isUp(m.name, now)) {
        up = members.filter((x) => health.isUp(x.name, now));
        break;
      }
    }
    if (up.length > 0) {
      const ordered = policy.order(up, { health, random, now });
      if (ordered.length > 0) return { candidates: ordered, spray: undefined };
    }
    const pool = up.length > 0 ? up : members;
    return {
      candidates: [pool[randomIndex(random, pool.length)]!],
      spray: up.length > 0 ? "unavailable" : "down",
    };
  };
}
