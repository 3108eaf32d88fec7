// Route lookup by zone (README, `routes[]`): the longest matching zone wins; a name on
// that route's except list skips it and falls to the next candidate — another
// route declared for the same zone first, then the next-longer parent zone.
// "." matches every name. One Map probe per label of the query name, up to
// the deepest configured zone.

import { createSuffixSet } from "../policy/suffix-set.ts";
import { canonicalName, labelCount, type NameMatcher, someSuffix } from "./except.ts";

/** What the table needs from a route: its zones and, optionally, its except list. */
export interface RoutableRoute {
  readonly zones: readonly string[];
  /** Names (with everything below them) that skip this route, or a ready matcher. */
  readonly except?: readonly string[] | NameMatcher;
}

export interface RouteMatch<R> {
  readonly route: R;
  /** The route's position in the list given to createRouteTable. */
  readonly index: number;
}

export interface RouteTable<R> {
  /** The route for a query name, or undefined when none applies (answer REFUSED). */
  match(qname: string): RouteMatch<R> | undefined;
}

interface Entry<R> {
  readonly route: R;
  readonly index: number;
  readonly except: NameMatcher | undefined;
}

export function createRouteTable<R extends RoutableRoute>(routes: readonly R[]): RouteTable<R> {
  const byZone = new Map<string, Entry<R>[]>();
  /** The deepest zone's labels: longer suffixes of a query name cannot match. */
  let maxLabels = 0;
  routes.forEach((route, index) => {
    const except = toMatcher(route.except);
    for (const zone of route.zones) {
      const key = canonicalName(zone);
      maxLabels = Math.max(maxLabels, labelCount(key));
      const list = byZone.get(key) ?? [];
      // A route naming one zone twice is still tried once for it.
      if (!list.some((entry) => entry.index === index)) list.push({ route, index, except });
      byZone.set(key, list);
    }
  });
  return {
    match(qname) {
      let found: RouteMatch<R> | undefined;
      const visit = (zone: string) => {
        const entries = byZone.get(zone);
        if (entries === undefined) return false;
        for (const entry of entries) {
          if (entry.except?.matches(qname)) continue;
          found = { route: entry.route, index: entry.index };
          return true;
        }
        return false;
      };
      // Only "." (the usual single route): no suffix of the name to look at.
      if (maxLabels === 0) visit(".");
      else someSuffix(qname, visit, maxLabels);
      return found;
    },
  };
}

function toMatcher(except: RoutableRoute["except"]): NameMatcher | undefined {
  if (except === undefined) return undefined;
  if ("matches" in except) return except;
  return except.length === 0 ? undefined : createSuffixSet(except);
}
