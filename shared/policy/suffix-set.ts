// The one set of domain names matched by suffix on label boundaries:
// "ads.example" covers itself and every name below it, "." covers every name.
// Block lists, allow lists, rules' `suffix` and routes' except lists all use
// it. Names are kept canonical (lower case, one trailing dot) in one hash set,
// so a lookup costs one probe per label of the asked name (someSuffix, which
// does not split a label at an escaped dot) and loading is one insert a name.

import { canonicalName, someSuffix } from "../config/except.ts";

export interface SuffixSet {
  add(name: string): void;
  /** Whether `name` or one of its parents is in the set. */
  matches(name: string): boolean;
  readonly size: number;
}

/**
 * "Ads.Example.COM." → "ads.example.com"; "" for the root. The form compiled
 * lists hash (compiled-list.ts) and rules' exact names are kept in.
 */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

export function createSuffixSet(names: Iterable<string> = []): SuffixSet {
  const set = new Set<string>();
  for (const name of names) set.add(canonicalName(name));
  const has = (suffix: string) => set.has(suffix);
  return {
    add(name) {
      set.add(canonicalName(name));
    },
    matches(name) {
      return set.size > 0 && someSuffix(name, has);
    },
    get size() {
      return set.size;
    },
  };
}
