// Block lists on the worker: each `{ url }` list is fetched once per isolate
// and kept in the Cache API (caches.default) for an hour under a synthetic
// key, so other isolates in the same location reuse it instead of fetching
// again. A Worker cannot read files: `{ path }` lists are the relay's.
//
// The load is shared by every request of the isolate, so it follows the rule
// for shared work (shared/engine/shared-work.ts): the request that starts it
// keeps it alive (waitUntil), a query waits for it at most LIST_WAIT_MS,
// looking every LIST_POLL_MS on its own timer, and then answers unfiltered;
// a load that has not settled after LOAD_LOST_MS is taken as lost and started
// again by the next query.

import type { BlocklistConfig } from "../../shared/config/schema.ts";
import type { Clock } from "../../shared/engine/clock.ts";
import {
  type KeepAlive,
  type Tracked,
  track,
  waitAtMost,
} from "../../shared/engine/shared-work.ts";
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
