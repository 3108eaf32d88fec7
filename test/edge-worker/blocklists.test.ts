// Block lists on the worker, inside workerd: fetched from a URL once, kept in
// the Cache API, applied with the allowlist, through the worker's DoH surface.

import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import type { AssetsBinding } from "../../edge-worker/src/env.ts";
import { handle } from "../../edge-worker/src/index.ts";
import {
  createListLoader,
  LIST_WAIT_MS,
  LOAD_LOST_MS,
  listBody,
  loadWorkerBlocklists,
} from "../../edge-worker/src/worker-blocklists.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { EDE_OPTION_CODE, Rcode, readEdns, readRcode } from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";

const doh = `http://127.0.0.1:${inject("dohPort")}`;
/** The static assets of the test worker (vitest.config.ts: test/fixtures/worker-assets). */
const assets = (env as { ASSETS?: AssetsBinding }).ASSETS;

async function ask(config: unknown, name: string, bindings: Record<string, unknown> = {}) {
  const query = buildQuery(name, 1, { id: 99, ednsUdpSize: 1232 });
  const response = await handle(
    new Request(`https://edge.test/dns-query?dns=${encodeBase64Url(query)}`),
    {
      DOH_CONFIG: config,
      ...bindings,
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
    const kept: Promise<unknown>[] = [];
    const first = await loadWorkerBlocklists([{ url }], {
      fetch: counting,
      cache: caches.default,
      keepAlive: (work) => kept.push(work),
    });
    expect(kept).toHaveLength(1); // the Cache API put, after the list is in use
    await Promise.all(kept);
    const second = await loadWorkerBlocklists([{ url }], {
      fetch: counting,
      cache: caches.default,
    });
    expect(fetches).toBe(1);
    expect(second.matches("x.blocked.example.test")).toBe(true);
    expect(second.size).toBe(first.size);
  });

  it("loads a compiled list by URL beside a text list (issue 16), from the Cache API the second time", async () => {
    const config = {
      upstreams: [{ name: "a", url: `${doh}/a/dns-query` }],
      blocklists: [{ url: `${doh}/lists/hosts.txt` }, { url: `${doh}/lists/compiled-1.bin` }],
    };
    const blocked = await ask(config, "x.compiled-blocked.example.test.");
    expect(readRcode(blocked)).toBe(Rcode.NXDOMAIN);
    expect(readEdns(blocked)?.options.find((o) => o.code === EDE_OPTION_CODE)?.data[1]).toBe(15);
    expect(readRcode(await ask(config, "blocked.example.test."))).toBe(Rcode.NXDOMAIN);
    expect(readRcode(await ask(config, "www.example.test."))).toBe(Rcode.NOERROR);
    let fetches = 0;
    const counting: typeof fetch = (input, init) => {
      fetches++;
      return fetch(input, init);
    };
    const url = `${doh}/lists/compiled-cache-${Date.now()}.bin`;
    const kept: Promise<unknown>[] = [];
    const first = await loadWorkerBlocklists([{ url }], {
      fetch: counting,
      cache: caches.default,
      keepAlive: (work) => kept.push(work),
    });
    await Promise.all(kept); // verified, then put in the Cache API a chunk at a time
    // The put wrote views of the list in use: its bytes are still there.
    expect(first.matches("compiled-blocked.example.test")).toBe(true);
    const again = await loadWorkerBlocklists([{ url }], { fetch: counting, cache: caches.default });
    expect([fetches, again.size, again.matches("compiled-blocked.example.test")]).toEqual([
      1,
      1,
      true,
    ]);
  });

  it("loads a compiled list from the worker's static assets (the ASSETS binding)", async () => {
    const config = {
      upstreams: [{ name: "a", url: `${doh}/a/dns-query` }],
      blocklists: [{ asset: "/lists/blocked.bin" }],
    };
    const blocked = await ask(config, "x.asset-blocked.example.test.", { ASSETS: assets });
    expect(readRcode(blocked)).toBe(Rcode.NXDOMAIN);
    expect(readEdns(blocked)?.options.find((o) => o.code === EDE_OPTION_CODE)?.data[1]).toBe(15);
    expect(readRcode(await ask(config, "www.example.test.", { ASSETS: assets }))).toBe(
      Rcode.NOERROR,
    );
    const errors: unknown[] = [];
    const missing = await loadWorkerBlocklists(
      [{ asset: "/lists/missing.bin" }, { asset: "/lists/blocked.bin" }],
      { assets, onError: (error) => errors.push(error) },
    );
    expect(errors.map(String)).toEqual(["Error: asset /lists/missing.bin: HTTP 404"]);
    expect(missing.matches("asset-blocked.example.test")).toBe(true);
    const unbound: unknown[] = [];
    await loadWorkerBlocklists([{ asset: "/lists/blocked.bin" }], {
      onError: (error) => unbound.push(error),
    });
    expect(String(unbound[0])).toMatch(/asset \/lists\/blocked\.bin: no ASSETS binding/);
  });

  it("leaves out a corrupt compiled list with one line naming it, and keeps serving with the others", async () => {
    const errors: unknown[] = [];
    const kept: Promise<unknown>[] = [];
    const matcher = await loadWorkerBlocklists(
      [{ url: `${doh}/lists/corrupt-1.bin` }, { url: `${doh}/lists/hosts.txt` }],
      { onError: (error) => errors.push(error), keepAlive: (work) => kept.push(work) },
    );
    await Promise.all(kept);
    expect(errors.map(String)).toEqual([
      `Error: ${doh}/lists/corrupt-1.bin: compiled block list: checksum mismatch (the file is corrupt)`,
    ]);
    expect(matcher.matches("compiled-blocked.example.test")).toBe(false);
    expect(matcher.matches("blocked.example.test")).toBe(true);
    const config = {
      upstreams: [{ name: "a", url: `${doh}/a/dns-query` }],
      blocklists: [{ url: `${doh}/lists/corrupt-2.bin` }],
    };
    expect(readRcode(await ask(config, "www.example.test."))).toBe(Rcode.NOERROR);
  });
});

/** A byte stream of `bytes` that says it is `declared` bytes long. */
function declaring(bytes: Uint8Array, declared: number): Response {
  const { readable, writable } = new FixedLengthStream(bytes.length);
  const writer = writable.getWriter();
  // A reader that cancels (a body too long) fails the writes: that is expected.
  writer
    .write(bytes)
    .then(() => writer.close())
    .catch(() => {});
  return new Response(readable, { headers: { "content-length": String(declared) } });
}

describe("a list's body, read into one buffer of its declared length", () => {
  const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => i % 251);

  it("reads a byte stream of declared length whole", async () => {
    expect(await listBody(declaring(bytes, bytes.length))).toEqual(bytes);
  });

  it("refuses a body longer than its content-length", async () => {
    await expect(listBody(declaring(bytes, bytes.length - 10))).rejects.toThrow(
      /longer than its content-length of 69990 bytes/,
    );
  });

  it("gives what came of a body shorter than it declared", async () => {
    expect(await listBody(declaring(bytes, bytes.length + 10))).toEqual(bytes);
  });

  it("reads a body with no declared length, or not a byte stream, the plain way", async () => {
    expect(await listBody(new Response(bytes))).toEqual(bytes);
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    });
    const plain = new Response(stream, { headers: { "content-length": String(bytes.length) } });
    expect(await listBody(plain)).toEqual(bytes);
  });
});

describe("a compiled list's checksum, verified after the list is in use (issue 16)", () => {
  it("answers with the list at once, drops a corrupt one when its check ends, logs one line, and never caches it", async () => {
    const url = `${doh}/lists/corrupt-deferred-${Date.now()}.bin`;
    const errors: unknown[] = [];
    const kept: Promise<unknown>[] = [];
    const slices: (() => void)[] = [];
    let fetches = 0;
    const counting: typeof fetch = (input, init) => {
      fetches++;
      return fetch(input, init);
    };
    const matcher = await loadWorkerBlocklists([{ url }, { url: `${doh}/lists/hosts.txt` }], {
      fetch: counting,
      cache: caches.default,
      onError: (error) => errors.push(error),
      keepAlive: (work) => kept.push(work),
      verifyWordsPerSlice: 4, // the one-name filter has 36 words: nine slices
      pause: () => new Promise<void>((resolve) => slices.push(resolve)),
    });
    // In use while its check runs, which waits between slices.
    expect([matcher.size > 1, errors, slices.length]).toEqual([true, [], 1]);
    let done = false;
    void Promise.all(kept).then(() => {
      done = true;
    });
    while (!done) {
      slices.shift()?.();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    expect(errors.map(String)).toEqual([
      `Error: ${url}: compiled block list: checksum mismatch (the file is corrupt)`,
    ]);
    expect(matcher.matches("compiled-blocked.example.test")).toBe(false);
    expect(matcher.matches("blocked.example.test")).toBe(true); // the text list stays
    // Not put in the Cache API: the next load fetches it again.
    await loadWorkerBlocklists([{ url }], { fetch: counting, cache: caches.default });
    expect(fetches).toBe(2);
  });

  it("keeps a sound list once its check passes", async () => {
    const slices: (() => void)[] = [];
    const kept: Promise<unknown>[] = [];
    const matcher = await loadWorkerBlocklists([{ url: `${doh}/lists/compiled-2.bin` }], {
      keepAlive: (work) => kept.push(work),
      verifyWordsPerSlice: 4,
      pause: async () => {
        slices.push(() => {});
      },
    });
    expect(matcher.matches("compiled-blocked.example.test")).toBe(true);
    await Promise.all(kept);
    expect(slices).toHaveLength(8); // paused between the nine slices
    expect([matcher.size, matcher.matches("compiled-blocked.example.test")]).toEqual([1, true]);
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
