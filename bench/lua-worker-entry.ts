// The Lua policy bench inside workerd (bench/lua-policy.ts bundles this with
// wrangler and runs it in Miniflare): GET /?script=<name>&domain=<d>&n=<calls>
// times n handle() calls through the worker's hook (edge-worker/src/lua-hook.ts)
// and answers the microseconds per call. Miniflare's workerd advances
// performance.now() while a script runs (Cloudflare's edge does not).

import "../edge-worker/src/workerd-shims.ts";
import { createLuaHook } from "../edge-worker/src/lua-hook.ts";
import balancedns from "../test/fixtures/lua/balancedns-policy.lua";
import cases from "../test/fixtures/lua/policy-cases.lua";

const SCRIPTS: Record<string, string> = {
  "balancedns-policy.lua": balancedns,
  "policy-cases.lua": cases,
};

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const script = url.searchParams.get("script") ?? "balancedns-policy.lua";
    const domain = url.searchParams.get("domain") ?? "www.example.com.";
    const n = Number(url.searchParams.get("n") ?? 1000);
    const max = Number(url.searchParams.get("max") ?? 100_000);
    const t0 = performance.now();
    const lua = createLuaHook(
      {
        on_error: "servfail",
        entries: [{ runtime: "lua", name: "bench", path: script, max_instructions: max }],
      },
      { scripts: SCRIPTS },
    );
    if (!lua) return new Response("no hook", { status: 500 });
    await lua.ready;
    const loadMs = performance.now() - t0;
    const hook = lua.hook;
    const t1 = performance.now();
    let last: unknown;
    for (let i = 0; i < n; i++) last = await hook.decide(domain, 1);
    const usPerCall = ((performance.now() - t1) * 1000) / n;
    return Response.json({ loadMs, usPerCall, last });
  },
};
