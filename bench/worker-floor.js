// A floor for the worker's cache miss (bench/worker.ts): the least a Worker
// can do to forward a DoH POST — read the body, fetch the upstream with an
// abort signal and a timer, read the answer, respond — and, with
// `floor: "fetch+cache"` in DOH_CONFIG, a Cache API match before and a put
// after, as the worker's shared answer cache does. Nothing else: no parsing,
// rules, cache keys or engine. Run in the same workerd as the worker, its
// CPU over /healthz is what the same I/O costs here without our code.

let sequence = 0;
/** DOH_CONFIG, parsed once per isolate as the worker does. */
let config;

export default {
  async fetch(request, env, ctx) {
    if (new URL(request.url).pathname === "/healthz") return new Response("ok\n");
    config ??= JSON.parse(env.DOH_CONFIG);
    const withCache = config.floor === "fetch+cache";
    const query = await request.arrayBuffer();
    const key = `https://floor.invalid/${sequence++}`;
    if (withCache) {
      const hit = await caches.default.match(key);
      if (hit) return hit;
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 5000);
    const upstream = await fetch(config.upstreams[0].url, {
      method: "POST",
      headers: { "content-type": "application/dns-message", accept: "application/dns-message" },
      body: query,
      signal: abort.signal,
    });
    const answer = await upstream.arrayBuffer();
    clearTimeout(timer);
    if (withCache) {
      const stored = new Response(answer, { headers: { "cache-control": "max-age=300" } });
      ctx.waitUntil(caches.default.put(key, stored));
    }
    return new Response(answer, { headers: { "content-type": "application/dns-message" } });
  },
};
