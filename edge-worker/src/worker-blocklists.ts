// Block lists on the worker: each `{ url }` list is fetched once per isolate
// and kept in the Cache API (caches.default) for an hour under a synthetic
// key, so other isolates in the same location reuse it instead of fetching
// again. A Worker cannot read files: `{ path }` lists are the relay's.

import type { BlocklistConfig } from "../../shared/config/schema.ts";
import { parseList } from "../../shared/policy/list-parse.ts";
import type { SuffixSet } from "../../shared/policy/suffix-set.ts";

const CACHE_SECONDS = 3600;

function cacheKey(url: string): string {
  return `https://doh-edge.blocklist.invalid/${encodeURIComponent(url)}`;
}

async function listText(url: string, fetchList: typeof fetch, cache: Cache | undefined) {
  const key = cacheKey(url);
  const hit = await cache?.match(key);
  if (hit) return hit.text();
  const response = await fetchList(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const text = await response.text();
  await cache?.put(
    key,
    new Response(text, { headers: { "cache-control": `max-age=${CACHE_SECONDS}` } }),
  );
  return text;
}

/** Adds every `url` list's names to `set`; resolves with how many names it holds. */
export async function loadWorkerBlocklists(
  lists: readonly BlocklistConfig[],
  set: SuffixSet,
  options: { fetch?: typeof fetch; cache?: Cache | undefined; onError?: (e: unknown) => void } = {},
): Promise<number> {
  const fetchList = options.fetch ?? fetch;
  for (const list of lists) {
    if (!("url" in list)) continue;
    try {
      for (const name of parseList(await listText(list.url, fetchList, options.cache)).names) {
        set.add(name);
      }
    } catch (error) {
      options.onError?.(error);
    }
  }
  return set.size;
}
