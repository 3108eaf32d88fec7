// The relay's block lists: files (`path`) read from disk and lists fetched
// from `url`, parsed into one suffix set at startup and on every reload. A
// list that cannot be read fails the (re)load with its key path, like any
// other config error.

import { readFile } from "node:fs/promises";
import { ConfigError, type RelayConfig } from "../../shared/config/schema.ts";
import { parseList } from "../../shared/policy/list-parse.ts";
import { createSuffixSet, type SuffixSet } from "../../shared/policy/suffix-set.ts";

export interface LoadedBlocklists {
  set: SuffixSet;
  entries: number;
  rejected: number;
  ms: number;
}

export async function loadBlocklists(
  config: RelayConfig,
  fetchList: typeof fetch = fetch,
): Promise<LoadedBlocklists> {
  const started = performance.now();
  const set = createSuffixSet();
  let rejected = 0;
  for (const [i, list] of config.blocklists.entries()) {
    let text: string;
    try {
      if ("path" in list) text = await readFile(list.path, "utf8");
      else {
        const response = await fetchList(list.url, { signal: AbortSignal.timeout(15_000) });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        text = await response.text();
      }
    } catch (error) {
      const key = "path" in list ? "path" : "url";
      throw new ConfigError([
        { path: ["blocklists", i, key], message: `cannot read: ${(error as Error).message}` },
      ]);
    }
    const parsed = parseList(text);
    for (const name of parsed.names) set.add(name);
    rejected += parsed.rejected;
  }
  return { set, entries: set.size, rejected, ms: performance.now() - started };
}
