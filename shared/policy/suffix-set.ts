// A set of domain names matched by suffix: "ads.example" covers itself and
// every name below it. Names are kept normalized (lower case, no trailing
// dot) in one hash set, so a lookup costs one probe per label of the asked
// name and loading is one insert per entry.

export interface SuffixSet {
  add(name: string): void;
  /** Whether `name` or one of its parents is in the set. */
  matches(name: string): boolean;
  readonly size: number;
}

/** "Ads.Example.COM." → "ads.example.com"; "" for the root. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

export function createSuffixSet(names: Iterable<string> = []): SuffixSet {
  const set = new Set<string>();
  for (const name of names) set.add(normalizeName(name));
  return {
    add(name) {
      set.add(normalizeName(name));
    },
    matches(name) {
      let rest = normalizeName(name);
      for (;;) {
        if (set.has(rest)) return true;
        const dot = rest.indexOf(".");
        if (dot < 0) return false;
        rest = rest.slice(dot + 1);
      }
    },
    get size() {
      return set.size;
    },
  };
}
