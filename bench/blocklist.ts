// Block lists at scale (issue 16), on names shaped like real lists
// (test/support/list-names.ts): a text list of 1,000,000 hosts-format lines
// parsed into the suffix set, against compiled lists of 1,000,000 and
// 5,000,000 names built offline and loaded from disk. Lookups: listed names,
// names below listed ones, and names not listed. Runs inside `npm run bench`
// and alone: `node bench/blocklist.ts [names...]`.

import { readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildCompiledList,
  type NameMatcher,
  openCompiledList,
} from "../shared/policy/compiled-list.ts";
import { parseList } from "../shared/policy/list-parse.ts";
import { createSuffixSet } from "../shared/policy/suffix-set.ts";
import { listNames } from "../test/support/list-names.ts";

export interface BlocklistRow {
  kind: "text" | "compiled";
  names: number;
  /** Compiled: the file's size per name. */
  bytesPerName?: number;
  /** Compiled: offline build time. */
  buildS?: number;
  /** Text: parse and insert; compiled: open the file's bytes (checksum included). */
  loadMs: number;
  listedNs: number;
  belowNs: number;
  missNs: number;
  /** Compiled: the bytes the loaded list holds (its file, read in place). */
  memoryMb?: number;
}

const LOOKUPS = 300_000;

function timeLookups(matcher: NameMatcher, names: string[], expected: boolean): number {
  const t0 = performance.now();
  let hits = 0;
  for (const name of names) if (matcher.matches(name)) hits++;
  const ns = ((performance.now() - t0) * 1e6) / names.length;
  if ((hits === names.length) !== expected || (!expected && hits > 0)) {
    throw new Error(
      `blocklist bench: ${hits} of ${names.length} matched, expected ${expected ? "all" : "none"}`,
    );
  }
  return ns;
}

function probes(names: string[]) {
  const step = Math.max(1, Math.floor(names.length / LOOKUPS));
  const listed = Array.from({ length: LOOKUPS }, (_, i) => names[(i * step) % names.length]!);
  return {
    listed,
    below: listed.map((name) => `cdn.${name}`),
    // Another seed: the same parents are not generated, so none of these is listed.
    missing: listNames(LOOKUPS, 0xbad).map((name) => `miss-${name}`),
  };
}

export async function benchBlocklist(
  compiledSizes = [1_000_000, 5_000_000],
): Promise<BlocklistRow[]> {
  const rows: BlocklistRow[] = [];
  {
    const names = listNames(1_000_000, 16);
    const p = probes(names);
    const text = names.map((name) => `0.0.0.0 ${name}`).join("\n");
    const t0 = performance.now();
    const set = createSuffixSet(parseList(text).names);
    const loadMs = performance.now() - t0;
    rows.push({
      kind: "text",
      names: set.size,
      loadMs,
      listedNs: timeLookups(set, p.listed, true),
      belowNs: timeLookups(set, p.below, true),
      missNs: timeLookups(set, p.missing, false),
    });
  }
  for (const count of compiledSizes) {
    const names = listNames(count, 16);
    const p = probes(names);
    const t0 = performance.now();
    const built = buildCompiledList(names);
    const buildS = (performance.now() - t0) / 1000;
    const file = join(tmpdir(), `doh-edge-bench-${count}.bin`);
    await writeFile(file, built.bytes);
    const bytes = await readFile(file);
    const t1 = performance.now();
    const list = openCompiledList(bytes);
    const loadMs = performance.now() - t1;
    rows.push({
      kind: "compiled",
      names: list.size,
      bytesPerName: built.bytes.length / list.size,
      buildS,
      loadMs,
      listedNs: timeLookups(list, p.listed, true),
      belowNs: timeLookups(list, p.below, true),
      missNs: timeLookups(list, p.missing, false),
      // The matcher reads the file's bytes in place: it holds them and nothing else.
      memoryMb: bytes.byteLength / 2 ** 20,
    });
    await rm(file, { force: true });
  }
  return rows;
}

export function blocklistTable(rows: BlocklistRow[]): string[] {
  return [
    "| list | names | bytes per name | build (s, offline) | load (ms) | lookup listed (ns) | below listed (ns) | not listed (ns) | held (MB) |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.kind} | ${r.names.toLocaleString("en-US")} | ${r.bytesPerName?.toFixed(2) ?? "—"} | ${r.buildS?.toFixed(1) ?? "—"} | ${r.loadMs.toFixed(1)} | ${r.listedNs.toFixed(0)} | ${r.belowNs.toFixed(0)} | ${r.missNs.toFixed(0)} | ${r.memoryMb?.toFixed(1) ?? "—"} |`,
    ),
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sizes = process.argv.slice(2).map(Number);
  const rows = await benchBlocklist(sizes.length > 0 ? sizes : undefined);
  process.stdout.write(`${blocklistTable(rows).join("\n")}\n`);
}
