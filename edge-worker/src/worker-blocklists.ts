// Block lists on the worker: each `{ url }` list, text or compiled, is
// fetched once per isolate and kept in the Cache API (caches.default) for an
// hour under a synthetic key, so other isolates in the same location reuse it
// instead of fetching again. `{ asset }` lists are read from the static
// assets (the ASSETS binding). A Worker cannot read files: `{ path }` lists
// are the relay's.
//
// The load is shared by every request of the isolate, so it follows the rule
// for shared work (shared/engine/shared-work.ts): the request that starts it
// keeps it alive (waitUntil), a query waits for it at most LIST_WAIT_MS,
// looking every LIST_POLL_MS on its own timer, and then answers unfiltered;
// a load that has not settled after LOAD_LOST_MS is taken as lost and started
// again by the next query.
//
// A list's bytes are read once (listBody) and a compiled list is viewed in
// place. What can wait for the first answer does (issue 16), as background
// work kept alive with the load's keepAlive:
//   - a compiled list answers as soon as its header and length check out;
//     its checksum is verified right after, in slices between queries. On a
//     mismatch the list is dropped: from then on no query uses it, and one
//     line naming it is logged (onError). So a corrupt file may decide the
//     queries answered while its check runs (tens of ms on a cold isolate),
//     never silently and never after;
//   - a fetched `{ url }` list goes into the Cache API only once it has
//     opened (parsed, or verified), so no isolate reuses a corrupt copy, and
//     is written 1 MiB at a time from the bytes in use, never copied.

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
  openCompiledListUnverified,
  unionMatchers,
} from "../../shared/policy/compiled-list.ts";
import { parseList } from "../../shared/policy/list-parse.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";
import type { AssetsBinding } from "./env.ts";

const CACHE_SECONDS = 3600;
/** Words of a compiled list checked per slice of its verification (about a millisecond). */
export const VERIFY_WORDS_PER_SLICE = 1 << 18;
/** Bytes per write when a list goes into the Cache API. */
const PUT_CHUNK_BYTES = 1 << 20;

function cacheKey(url: string): string {
  return `https://doh-edge.blocklist.invalid/${encodeURIComponent(url)}`;
}

/**
 * A list's body. With a declared length it is read straight into one buffer
 * of that length (a BYOB reader): arrayBuffer() gathers the chunks and then
 * joins them, so at its peak it held a 23 MB list twice (workerd's peak
 * memory +40 MB). A body longer than it declared is refused.
 */
export async function listBody(response: Response): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  let reader: ReadableStreamBYOBReader | undefined;
  try {
    if (response.body && Number.isSafeInteger(declared) && declared > 0) {
      reader = response.body.getReader({ mode: "byob" });
    }
  } catch {
    // not a byte stream: read it whole below
  }
  if (!reader) return new Uint8Array(await response.arrayBuffer());
  let buffer = new ArrayBuffer(declared);
  let size = 0;
  for (;;) {
    // Once full, one more byte's room: it must come back done.
    const intoList = size < declared;
    const { done, value } = await reader.read(
      intoList ? new Uint8Array(buffer, size) : new Uint8Array(1),
    );
    if (intoList && value) buffer = value.buffer; // a BYOB read hands the buffer back
    if (done) break;
    if (!intoList) {
      await reader.cancel();
      throw new Error(`body longer than its content-length of ${declared} bytes`);
    }
    size += value.byteLength;
  }
  return new Uint8Array(buffer, 0, size);
}

/** A list's bytes, and for a fresh fetch how to keep them in the Cache API. */
interface ListBytes {
  bytes: Uint8Array;
  store?: (() => Promise<void>) | undefined;
}

async function listBytes(
  url: string,
  fetchList: typeof fetch,
  cache: Cache | undefined,
): Promise<ListBytes> {
  const key = cacheKey(url);
  const hit = await cache?.match(key);
  if (hit) return { bytes: await listBody(hit) };
  const response = await fetchList(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const bytes = await listBody(response);
  return { bytes, store: cache && (() => putInChunks(cache, key, bytes)) };
}

/**
 * Puts `bytes` in the cache a chunk at a time. A chunk is a view of the list
 * in use: workerd reads a written view without detaching or copying its
 * buffer (test/edge-worker/blocklists.test.ts looks up the list after its put),
 * so the put costs the isolate no second copy, not even as garbage.
 */
async function putInChunks(cache: Cache, key: string, bytes: Uint8Array): Promise<void> {
  const { readable, writable } = new FixedLengthStream(bytes.length);
  const put = cache.put(
    key,
    new Response(readable, { headers: { "cache-control": `max-age=${CACHE_SECONDS}` } }),
  );
  const writer = writable.getWriter();
  const write = async () => {
    for (let at = 0; at < bytes.length; at += PUT_CHUNK_BYTES) {
      await writer.write(bytes.subarray(at, at + PUT_CHUNK_BYTES));
    }
    await writer.close();
  };
  await Promise.all([put, write()]);
}

/** A static asset's bytes: it ships with the deploy, so no Cache API copy. */
async function assetBytes(path: string, assets: AssetsBinding | undefined): Promise<ListBytes> {
  if (!assets) {
    throw new Error(`asset ${path}: no ASSETS binding (add [assets] to wrangler.toml, README)`);
  }
  const response = await assets.fetch(new Request(new URL(path, "https://assets.invalid")));
  if (!response.ok) throw new Error(`asset ${path}: HTTP ${response.status}`);
  return { bytes: await listBody(response) };
}

/** Yields to queries between verification slices (a macrotask: timers and I/O run). */
const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export interface LoadOptions {
  fetch?: typeof fetch;
  cache?: Cache | undefined;
  assets?: AssetsBinding | undefined;
  onError?: (e: unknown) => void;
  /** Keeps the background work (checksums, Cache API puts) running: the worker's waitUntil. */
  keepAlive?: KeepAlive;
  /** Between verification slices; a macrotask by default. */
  pause?: () => Promise<void>;
  /** Words per verification slice (VERIFY_WORDS_PER_SLICE by default). */
  verifyWordsPerSlice?: number;
}

/**
 * A compiled list that answers now and is dropped if its checksum, verified
 * in slices by the returned work, does not match.
 */
function openDeferred(
  bytes: Uint8Array,
  pause: () => Promise<void>,
  wordsPerSlice: number,
): { matcher: NameMatcher; verified: Promise<void> } {
  const opened = openCompiledListUnverified(bytes);
  let dropped = false;
  const verified = (async () => {
    const steps = opened.verify(wordsPerSlice);
    try {
      while (!steps.next().done) await pause();
    } catch (error) {
      dropped = true;
      throw error;
    }
  })();
  const { matches, size } = opened.matcher;
  return {
    matcher: {
      matches: (name) => !dropped && matches(name),
      get size() {
        return dropped ? 0 : size;
      },
    },
    verified,
  };
}

/**
 * Every `url` and `asset` list as one matcher: text lists parsed into a suffix set,
 * compiled lists (shared/policy/compiled-list.ts, told by their magic bytes)
 * opened in place and verified in the background (see the top of this file).
 * A list that cannot be fetched, or a compiled list that is corrupt, is
 * reported through onError and left out; the others still apply.
 */
export async function loadWorkerBlocklists(
  lists: readonly BlocklistConfig[],
  options: LoadOptions = {},
): Promise<NameMatcher> {
  const fetchList = options.fetch ?? fetch;
  const keepAlive = options.keepAlive ?? (() => {});
  const onError = options.onError ?? (() => {});
  const text = createSuffixSet();
  const compiled: NameMatcher[] = [];
  for (const list of lists) {
    if ("path" in list) continue;
    const source = "url" in list ? list.url : `asset ${list.asset}`;
    const named = (error: unknown) => new Error(`${source}: ${(error as Error).message}`);
    try {
      const { bytes, store } =
        "url" in list
          ? await listBytes(list.url, fetchList, options.cache)
          : await assetBytes(list.asset, options.assets);
      if (isCompiledList(bytes)) {
        let opened: ReturnType<typeof openDeferred>;
        try {
          opened = openDeferred(
            bytes,
            options.pause ?? nextTask,
            options.verifyWordsPerSlice ?? VERIFY_WORDS_PER_SLICE,
          );
        } catch (error) {
          throw named(error);
        }
        compiled.push(opened.matcher);
        keepAlive(
          opened.verified.then(
            () => store?.().catch((error: unknown) => onError(named(error))),
            (error: unknown) => onError(named(error)),
          ),
        );
        continue;
      }
      for (const name of parseList(new TextDecoder().decode(bytes)).names) text.add(name);
      if (store) keepAlive(store().catch((error: unknown) => onError(named(error))));
    } catch (error) {
      onError(error);
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
