// Block lists on the worker, inside workerd: fetched from a URL once, kept in
// the Cache API, applied with the allowlist, through the worker's DoH surface.

import { describe, expect, inject, it } from "vitest";
import { handle } from "../../edge-worker/src/index.ts";
import { loadWorkerBlocklists } from "../../edge-worker/src/worker-blocklists.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EDE_OPTION_CODE, Rcode, readEdns, readRcode } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";

const doh = `http://127.0.0.1:${inject("dohPort")}`;

async function ask(config: unknown, name: string) {
  const query = buildQuery(name, 1, { id: 99, ednsUdpSize: 1232 });
  const response = await handle(
    new Request(`https://edge.test/dns-query?dns=${encodeBase64Url(query)}`),
    {
      DOH_CONFIG: config,
    },
  );
  return new Uint8Array(await response.arrayBuffer());
}

describe("worker block lists", () => {
  it("blocks listed names (EDE 15) and spares the allowlist, over DoH", async () => {
    const config = {
      upstreams: [{ name: "a", url: `${doh}/a/dns-query` }],
      blocklists: [{ url: `${doh}/lists/hosts.txt` }],
      allowlist: ["listed.corp.test"],
    };
    const blocked = await ask(config, "sub.blocked.example.test.");
    expect(readRcode(blocked)).toBe(Rcode.NXDOMAIN);
    expect(readEdns(blocked)?.options.find((o) => o.code === EDE_OPTION_CODE)?.data[1]).toBe(15);
    const allowed = await ask(config, "listed.corp.test.");
    expect(readEdns(allowed)?.options.some((o) => o.code === EDE_OPTION_CODE) ?? false).toBe(false);
    expect(readRcode(await ask(config, "www.example.test."))).toBe(Rcode.NOERROR);
  });

  it("fetches a list once and serves the next load from the Cache API", async () => {
    let fetches = 0;
    const url = `${doh}/lists/cache-proof-${Date.now()}.txt`;
    const counting: typeof fetch = (input, init) => {
      fetches++;
      return fetch(input, init);
    };
    const first = createSuffixSet();
    const second = createSuffixSet();
    await loadWorkerBlocklists([{ url }], first, { fetch: counting, cache: caches.default });
    await loadWorkerBlocklists([{ url }], second, { fetch: counting, cache: caches.default });
    expect(fetches).toBe(1);
    expect(second.matches("x.blocked.example.test")).toBe(true);
    expect(second.size).toBe(first.size);
  });
});
