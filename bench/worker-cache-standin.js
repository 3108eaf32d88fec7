// An in-isolate stand-in for Cloudflare's edge cache (the Cache API), for
// bench/worker.ts. Miniflare's Cache API is a service in the same workerd
// that runs on the isolate's own thread, so the isolate's CPU profile takes
// in its work; on Cloudflare the cache is outside the isolate and only the
// JavaScript side of match and put is billed. This keeps that side (a key,
// a Response to store and to hand back, the body read once) and nothing
// else: entries live in a Map of this isolate, up to 64 KiB each (answers);
// a bigger body (a block list) is read and dropped, since on Cloudflare it
// would leave the isolate.

const MAX_KEPT_BYTES = 64 * 1024;

/** The body, or undefined (all of it read, a chunk at a time) when it is longer than `max`. */
async function readUpTo(response, max) {
  const chunks = [];
  let size = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size <= max) chunks.push(chunk);
    }
  }
  if (size > max) return undefined;
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

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
    const body = await readUpTo(response, MAX_KEPT_BYTES);
    if (!body) return;
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
