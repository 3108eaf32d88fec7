// The block list at scale: 1,000,000 generated hosts-format lines parsed and
// loaded into the suffix set, then 1,000,000 lookups (a third exact hits, a
// third names below listed ones, a third misses). Runs inside `npm run bench`
// and alone: `node bench/blocklist.ts`.

import { fileURLToPath } from "node:url";
import { parseList } from "../shared/policy/list-parse.ts";
import { createSuffixSet } from "../shared/policy/suffix-set.ts";

export interface BlocklistBench {
  entries: number;
  parseMs: number;
  loadMs: number;
  lookups: number;
  lookupNs: number;
  heapMb: number;
}

export function benchBlocklist(entries = 1_000_000, lookups = 1_000_000): BlocklistBench {
  const lines: string[] = [];
  for (let i = 0; i < entries; i++) lines.push(`0.0.0.0 host${i}.tracker${i % 997}.example`);
  const text = lines.join("\n");
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const parsed = parseList(text);
  const t1 = performance.now();
  const set = createSuffixSet(parsed.names);
  const t2 = performance.now();
  const names: string[] = [];
  for (let i = 0; i < lookups; i++) {
    const n = (i * 7919) % entries;
    names.push(
      i % 3 === 0
        ? `host${n}.tracker${n % 997}.example`
        : i % 3 === 1
          ? `cdn.x.host${n}.tracker${n % 997}.example`
          : `www.site${n}.example`,
    );
  }
  let hits = 0;
  const t3 = performance.now();
  for (const name of names) if (set.matches(name)) hits++;
  const t4 = performance.now();
  if (hits !== Math.ceil(lookups / 3) + Math.ceil((lookups - 1) / 3)) {
    throw new Error(`blocklist bench: ${hits} hits, expected two thirds of ${lookups}`);
  }
  return {
    entries: set.size,
    parseMs: t1 - t0,
    loadMs: t2 - t1,
    lookups,
    lookupNs: ((t4 - t3) * 1e6) / lookups,
    heapMb: (process.memoryUsage().heapUsed - heap0) / 2 ** 20,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = benchBlocklist();
  process.stdout.write(
    `blocklist: ${r.entries} names, parse ${r.parseMs.toFixed(0)} ms, load ${r.loadMs.toFixed(0)} ms, ` +
      `${r.lookupNs.toFixed(0)} ns per lookup over ${r.lookups}, heap +${r.heapMb.toFixed(0)} MB\n`,
  );
}
