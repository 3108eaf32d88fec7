// An in-isolate stand-in for Cloudflare's edge cache (the Cache API), for
// bench/worker.ts. Miniflare's Cache API is a service in the same workerd
// that runs on the isolate's own thread, so the isolate's CPU profile takes
// in its work; on Cloudflare the cache is outside the isolate and only the
// JavaScript side of match and put is billed. This keeps that side (a key,
// a Response to store and to hand back, the body read once) and nothing
// else: entries live in a Map of this isolate.

class StandInCache {
  #entries = new Map();

  async match(request) {
    const key = typeof request === "string" ? request : request.url;
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    return new Response(entry.body, { status: entry.status, headers: entry.headers });
  }

  async put(request, response) {
    const key = typeof request === "string" ? request : request.url;
    const body = await response.arrayBuffer();
    this.#entries.set(key, { body, status: response.status, headers: [...response.headers] });
  }

  async delete(request) {
    return this.#entries.delete(typeof request === "string" ? request : request.url);
  }
}

const standIn = new StandInCache();
Object.defineProperty(globalThis, "caches", {
  value: { default: standIn, open: async () => standIn },
  configurable: true,
  writable: true,
});
