// Block lists on the worker, inside workerd: fetched from a URL once, kept in
// the Cache API, applied with the allowlist, through the worker's DoH surface.

import { describe, expect, inject, it } from "vitest";
import { handle } from "../../edge-worker/src/index.ts";
import {
  createListLoader,
  LIST_WAIT_MS,
  LOAD_LOST_MS,
  loadWorkerBlocklists,
} from "../../edge-worker/src/worker-blocklists.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EDE_OPTION_CODE, Rcode, readEdns, readRcode } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
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

describe("worker block list loader (shared by the isolate's requests)", () => {
  /** Lets queued promise callbacks run. */
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  it("keeps the load alive, lets a query wait at most LIST_WAIT_MS, and restarts a lost load", async () => {
    const clock = createManualClock(0);
    const kept: Promise<unknown>[] = [];
    const finishes: (() => void)[] = [];
    const loader = createListLoader(() => new Promise<void>((resolve) => finishes.push(resolve)), {
      keepAlive: (work) => kept.push(work),
      clock,
    });
    loader.start(); // the isolate's first request, whatever it asks
    expect(finishes).toHaveLength(1);
    expect(kept).toHaveLength(1);
    let waited = false;
    void loader.ready()!.then(() => {
      waited = true;
    });
    clock.advance(LIST_WAIT_MS - 1);
    await settle();
    expect(waited).toBe(false);
    clock.advance(1);
    await settle();
    expect(waited).toBe(true); // gave up: this query goes on unfiltered
    // The first load never settles (its request ended without it): after
    // LOAD_LOST_MS the next query starts another, kept alive by its own request.
    clock.advance(LOAD_LOST_MS - LIST_WAIT_MS - 1);
    void loader.ready();
    expect(finishes).toHaveLength(1);
    clock.advance(1);
    const ready = loader.ready()!;
    expect(finishes).toHaveLength(2);
    expect(kept).toHaveLength(2);
    finishes[1]!();
    await settle();
    clock.advance(10); // the waiter looks on its own timer
    await ready;
    expect(loader.ready()).toBeUndefined(); // loaded: no wait, no timer
  });
});
