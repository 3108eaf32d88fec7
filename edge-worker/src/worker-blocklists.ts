// Block lists on the worker: each `{ url }` list, text or compiled, is
// fetched once per isolate and kept in the Cache API (caches.default) for an
// hour under a synthetic key, so other isolates in the same location reuse it
// instead of fetching again. A Worker cannot read files: `{ path }` lists
// are the relay's.
//
// The load is shared by every request of the isolate, so it follows the rule
// for shared work (shared/engine/shared-work.ts): the request that starts it
// keeps it alive (waitUntil), a query waits for it at most LIST_WAIT_MS,
// looking every LIST_POLL_MS on its own timer, and then answers unfiltered;
// a load that has not settled after LOAD_LOST_MS is taken as lost and started
// again by the next query.

import type { BlocklistConfig } from "../../shared/config/schema/sections/blocklists.ts";
import type { Clock } from "../../shared/engine/clock.ts";
import {
  type KeepAlive,
  type Tracked,
  track,
  waitAtMost,
} from "../../shared/engine/shared-work.ts";
import {
  isCompiledList,
  type NameMatcher,
  openCompiledList,
  unionMatchers,
} from "../../shared/policy/compiled-list.ts";
import { parseList } from "../../shared/policy/list-parse.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";
import type { AssetsBinding } from "./env.ts";

const CACHE_SECONDS = 3600;

function cacheKey(url: string): string {
  return `https://doh-edge.blocklist.invalid/${encodeURIComponent(url)}`;
}

async function listBytes(
  url: string,
  fetchList: typeof fetch,
  cache: Cache | undefined,
): Promise<Uint8Array> {
  const key = cacheKey(url);
  const hit = await cache?.match(key);
  if (hit) return new Uint8Array(await hit.arrayBuffer());
  const response = await fetchList(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  await cache?.put(
    key,
    new Response(bytes, { headers: { "cache-control": `max-age=${CACHE_SECONDS}` } }),
  );
  return bytes;
}

/** A static asset's bytes: it ships with the deploy, so no Cache API copy. */
async function assetBytes(path: string, assets: AssetsBinding | undefined): Promise<Uint8Array> {
  if (!assets) {
    throw new Error(`asset ${path}: no ASSETS binding (add [assets] to wrangler.toml, README)`);
  }
  const response = await assets.fetch(new Request(new URL(path, "https://assets.invalid")));
  if (!response.ok) throw new Error(`asset ${path}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/**
 * Every `url` and `asset` list as one matcher: text lists parsed into a suffix set,
 * compiled lists (shared/policy/compiled-list.ts, told by their magic bytes)
 * opened in place. A list that cannot be fetched, or a compiled list that is
 * corrupt, is reported through onError and left out; the others still apply.
 */
export async function loadWorkerBlocklists(
  lists: readonly BlocklistConfig[],
  options: {
    fetch?: typeof fetch;
    cache?: Cache | undefined;
    assets?: AssetsBinding | undefined;
    onError?: (e: unknown) => void;
  } = {},
): Promise<NameMatcher> {
  const fetchList = options.fetch ?? fetch;
  const text = createSuffixSet();
  const compiled: NameMatcher[] = [];
  for (const list of lists) {
    if ("path" in list) continue;
    const source = "url" in list ? list.url : `asset ${list.asset}`;
    try {
      const bytes =
        "url" in list
          ? await listBytes(list.url, fetchList, options.cache)
          : await assetBytes(list.asset, options.assets);
      if (isCompiledList(bytes)) {
        try {
          compiled.push(openCompiledList(bytes));
        } catch (error) {
          throw new Error(`${source}: ${(error as Error).message}`);
        }
        continue;
      }
      for (const name of parseList(new TextDecoder().decode(bytes)).names) text.add(name);
    } catch (error) {
      options.onError?.(error);
    }
  }
  return unionMatchers([text, ...compiled]);
}

/** How long a query waits for its isolate's lists before answering unfiltered. */
export const LIST_WAIT_MS = 1000;
/** How often a waiting query looks whether the lists have loaded. */
const LIST_POLL_MS = 10;
/** A load still pending this long is taken as lost (waitUntil keeps work ~30 s). */
export const LOAD_LOST_MS = 30_000;

export interface ListLoader {
  /** Starts the load unless it is done or running (and not taken as lost). */
  start(): void;
  /**
   * Undefined once the lists are loaded; otherwise starts the load if needed
   * and resolves when it is done or after LIST_WAIT_MS, whichever is first.
   */
  ready(): Promise<void> | undefined;
}

export function createListLoader(
  load: () => Promise<unknown>,
  options: { keepAlive: KeepAlive; clock: Clock; waitMs?: number; lostAfterMs?: number },
): ListLoader {
  const { keepAlive, clock } = options;
  const waitMs = options.waitMs ?? LIST_WAIT_MS;
  const lostAfterMs = options.lostAfterMs ?? LOAD_LOST_MS;
  let loaded = false;
  let running: { work: Tracked<void>; startedAt: number } | undefined;

  function start() {
    if (loaded || (running && clock.now() - running.startedAt < lostAfterMs)) return;
    const work = track(
      load().then(
        () => {
          loaded = true;
        },
        () => {
          if (running?.work === work) running = undefined; // the next query tries again
        },
      ),
    );
    running = { work, startedAt: clock.now() };
    keepAlive(work.promise);
  }

  return {
    start,
    ready() {
      if (loaded) return undefined;
      start();
      return waitAtMost(running!.work, { clock, ms: waitMs, pollMs: LIST_POLL_MS }).then(() => {});
    },
  };
}
