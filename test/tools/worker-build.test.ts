// Issue 16's bundle target and the Lua opt-in, on what `wrangler deploy`
// uploads: the default build (wrangler.toml's define DOH_EDGE_LUA = false)
// is at most 250 KiB with no Lua VM in it, and refuses a Lua config in one
// line saying how to build with Lua; the Lua build (--define
// DOH_EDGE_LUA:true) carries the VM and answers through the bundled
// policy.lua. Both run in workerd (Miniflare); the upstream is a fetch
// handler in this process.

import { readFile, rm } from "node:fs/promises";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeMessage, encodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import {
  bundleModules,
  LUA_DEFINE,
  type WranglerBuild,
  wranglerBuild,
} from "../support/wrangler-build.ts";

/** Issue 16's target for the default upload, KiB. */
const MAX_UPLOAD_KIB = 250;
/** fengari's library openers keep their property names through minifying. */
const VM_MARKER = /luaopen_(base|string|fengari)/;

const LUA_CONFIG = {
  upstreams: [{ name: "a", url: "https://upstream.test/dns-query" }],
  cache: { size: 0 },
  // A VM that fails a call answers SERVFAIL, not the upstream's answer.
  plugins: {
    on_error: "servfail",
    entries: [{ name: "policy", runtime: "lua", path: "policy.lua" }],
  },
};

/** The upstream: every question answered with 192.0.2.1. */
async function upstream(request: Request): Promise<Response> {
  const query = decodeMessage(new Uint8Array(await request.arrayBuffer()));
  const answers = (query.questions ?? []).map((q) => ({
    name: q.name,
    type: "A",
    ttl: 60,
    data: "192.0.2.1",
  }));
  const body = encodeMessage({ ...query, type: "response", flags: 0x0100, answers });
  return new Response(body, { headers: { "content-type": "application/dns-message" } });
}

/** One DoH POST for www.example.test A to `build` with `config`. */
async function ask(build: WranglerBuild, config: unknown) {
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          name: "doh-edge",
          ...bundleModules(build.script),
          compatibilityDate: "2026-10-20",
          compatibilityFlags: ["nodejs_compat"],
          bindings: { DOH_CONFIG: JSON.stringify(config) },
          outboundService: upstream,
        },
      ],
    }),
  );
  try {
    const response = await mf.dispatchFetch("http://edge.test/dns-query", {
      method: "POST",
      headers: { "content-type": "application/dns-message" },
      body: buildQuery("www.example.test.", 1, { id: 7 }),
    });
    return { status: response.status, body: new Uint8Array(await response.arrayBuffer()) };
  } finally {
    await mf.dispose();
  }
}

describe("the worker as wrangler uploads it", () => {
  let plain: WranglerBuild;
  let lua: WranglerBuild;

  beforeAll(async () => {
    [plain, lua] = await Promise.all([wranglerBuild(), wranglerBuild({ args: LUA_DEFINE })]);
  }, 120_000);

  afterAll(async () => {
    for (const build of [plain, lua]) {
      if (build) await rm(build.dir, { recursive: true, force: true });
    }
  });

  it(`the default build is at most ${MAX_UPLOAD_KIB} KiB and has no Lua VM; the Lua build has it`, async () => {
    expect(plain.uploadKiB).toBeLessThanOrEqual(MAX_UPLOAD_KIB);
    expect(await readFile(plain.script, "utf8")).not.toMatch(VM_MARKER);
    expect(await readFile(lua.script, "utf8")).toMatch(VM_MARKER);
    expect(lua.uploadKiB).toBeGreaterThan(plain.uploadKiB + 150);
  });

  it("the default build refuses a Lua entry in one line naming its key and how to build with Lua", async () => {
    const { status, body } = await ask(plain, LUA_CONFIG);
    expect(status).toBe(500);
    expect(new TextDecoder().decode(body)).toBe(
      "configuration error: plugins.entries[0].runtime: this worker was built without the Lua VM; deploy with `npx wrangler deploy --define DOH_EDGE_LUA:true` (README, Plugins)\n",
    );
  }, 30_000);

  it("the Lua build runs the bundled policy.lua and answers", async () => {
    const { status, body } = await ask(lua, LUA_CONFIG);
    expect(status).toBe(200);
    const answer = decodeMessage(body);
    expect(answer.rcode).toBe("NOERROR");
    expect((answer.answers ?? []).map((r) => r.data)).toEqual(["192.0.2.1"]);
  }, 30_000);
});
