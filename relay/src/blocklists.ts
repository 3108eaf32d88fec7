// The relay's block lists: files (`path`) read from disk and lists fetched
// from `url`, at startup and on every reload. Text lists are parsed into one
// suffix set; compiled lists (shared/policy/compiled-list.ts, known by their
// magic bytes) are checked and used in place. A list that cannot be read or
// a compiled list that is corrupt fails the (re)load with its key path, like
// any other config error, so a reload keeps the old lists.

import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { ConfigError, type RelayConfig } from "../../shared/config/schema.ts";
import {
  isCompiledList,
  type NameMatcher,
  openCompiledList,
  unionMatchers,
} from "../../shared/policy/compiled-list.ts";
import { parseList } from "../../shared/policy/list-parse.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";

export interface LoadedBlocklists {
  set: NameMatcher;
  entries: number;
  rejected: number;
  ms: number;
}

export async function loadBlocklists(
  config: RelayConfig,
  fetchList: typeof fetch = fetch,
): Promise<LoadedBlocklists> {
  const started = performance.now();
  const text = createSuffixSet();
  const compiled: NameMatcher[] = [];
  let rejected = 0;
  for (const [i, list] of config.blocklists.entries()) {
    if ("asset" in list) continue; // the worker's; the relay's config refuses it
    const at = ["blocklists", i, "path" in list ? "path" : "url"];
    let bytes: Uint8Array;
    try {
      if ("path" in list) bytes = await readFile(list.path);
      else {
        const response = await fetchList(list.url, { signal: AbortSignal.timeout(15_000) });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        bytes = new Uint8Array(await response.arrayBuffer());
      }
    } catch (error) {
      throw new ConfigError([{ path: at, message: `cannot read: ${(error as Error).message}` }]);
    }
    if (isCompiledList(bytes)) {
      try {
        compiled.push(openCompiledList(bytes));
      } catch (error) {
        throw new ConfigError([{ path: at, message: (error as Error).message }]);
      }
      continue;
    }
    const parsed = parseList(new TextDecoder().decode(bytes));
    for (const name of parsed.names) text.add(name);
    rejected += parsed.rejected;
  }
  const set = unionMatchers([text, ...compiled]);
  return { set, entries: set.size, rejected, ms: performance.now() - started };
}
