// The worker's second-level answer cache: the Cache API (caches.default),
// shared by the isolates of a location, under a synthetic GET URL built from
// the config's fingerprint and the cache key (name, type, class, DO, CD) — so
// a POST and a GET of the same question share an entry, and the client's
// message ID never splits them.

import type { SharedCache, SharedEntry } from "../../shared/resolver/cached-resolver.ts";

const BASE = "https://doh-edge.answers.invalid/";

/** FNV-1a, 32 bits: a short, stable name for a config. */
export function fingerprint(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

/**
 * `namespace` (a config fingerprint) keeps answers of one config from being
 * served under another: a config change starts a fresh shared cache.
 */
export function createEdgeCache(cache: Cache, namespace: string): SharedCache {
  const url = (key: string) => `${BASE}${namespace}/${encodeURIComponent(key)}`;
  return {
    async get(key): Promise<SharedEntry | undefined> {
      const response = await cache.match(url(key));
      if (!response) return undefined;
      const storedAt = Number(response.headers.get("x-stored-at"));
      const expiresAt = Number(response.headers.get("x-expires-at"));
      if (!Number.isFinite(storedAt) || !Number.isFinite(expiresAt)) return undefined;
      return { answer: new Uint8Array(await response.arrayBuffer()), storedAt, expiresAt };
    },
    async put(key, entry) {
      const seconds = Math.max(1, Math.ceil((entry.expiresAt - entry.storedAt) / 1000));
      await cache.put(
        url(key),
        new Response(entry.answer, {
          headers: {
            "content-type": "application/dns-message",
            "cache-control": `max-age=${seconds}`,
            "x-stored-at": String(entry.storedAt),
            "x-expires-at": String(entry.expiresAt),
          },
        }),
      );
    },
  };
}
