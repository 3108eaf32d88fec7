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

/**
 * The body, or undefined when it is longer than `max`. Read with a BYOB
 * reader into a buffer that grows to `max` + 1 bytes and, past that, is read
 * into again and dropped: a long body (a block list) leaves no garbage in
 * the isolate, since on Cloudflare it would not pass through it at all.
 */
async function readUpTo(response, max) {
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(1024);
  let size = 0;
  for (;;) {
    if (size === buffer.byteLength && size <= max) {
      const grown = new Uint8Array(Math.min(size * 2, max + 1));
      grown.set(new Uint8Array(buffer));
      buffer = grown.buffer;
    }
    const room = size <= max ? new Uint8Array(buffer, size) : new Uint8Array(buffer);
    const { done, value } = await reader.read(room);
    buffer = value ? value.buffer : buffer; // a BYOB read hands the buffer back
    if (done) break;
    size += value.byteLength;
  }
  return size > max ? undefined : new Uint8Array(buffer, 0, size);
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
