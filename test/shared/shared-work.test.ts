// Work shared between requests, as the worker needs it (shared/engine/
// shared-work.ts): a model of Workers' request contexts on a manual clock —
// a timer belongs to the request that set it and never fires once that
// request has ended — and the three users: waitAtMost, the race's
// self-contained queries, and the cached resolver's coalescing.

import { describe, expect, it } from "vitest";
import type { CacheConfig } from "../../shared/config/schema.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId } from "../../shared/dns/wire.ts";
import type { Clock } from "../../shared/engine/clock.ts";
import { createManualClock, type ManualClock } from "../../shared/engine/manual-clock.ts";
import { createRace, type RaceResult } from "../../shared/engine/race.ts";
import { track, waitAtMost } from "../../shared/engine/shared-work.ts";
import { createCachedResolver } from "../../shared/resolver/cached-resolver.ts";
import type { ResolveOutcome, Resolver } from "../../shared/resolver/create-resolver.ts";
import { respond } from "./support/dns-messages.ts";
import { createFakeUpstream } from "./support/fake-upstream.ts";
import { runFor, settle } from "./support/time.ts";

/**
 * A manual clock whose timers belong to the request current when they were
 * set; end(request) drops them, as Workers do when a request ends.
 */
function requestClock(manual: ManualClock) {
  let current = "none";
  const owners = new Map<unknown, string>();
  const clock: Clock = {
    now: () => manual.now(),
    setTimeout(fn, ms) {
      const owner = current;
      const handle = manual.setTimeout(() => {
        owners.delete(handle);
        const previous = current;
        current = owner;
        try {
          fn();
        } finally {
          current = previous;
        }
      }, ms);
      owners.set(handle, owner);
      return handle;
    },
    clearTimeout(handle) {
      owners.delete(handle);
      manual.clearTimeout(handle);
    },
  };
  return {
    clock,
    /** Runs `fn` as request `name`. */
    as<T>(name: string, fn: () => T): T {
      const previous = current;
      current = name;
      try {
        return fn();
      } finally {
        current = previous;
      }
    },
    end(name: string) {
      for (const [handle, owner] of owners) {
        if (owner === name) clock.clearTimeout(handle);
      }
    },
  };
}

describe("waitAtMost", () => {
  it("gives up after its bound on its own timer, and takes the value when it comes first", async () => {
    const clock = createManualClock(0);
    const never = track(new Promise<number>(() => {}));
    const gaveUp = waitAtMost(never, { clock, ms: 100 });
    await runFor(clock, 100);
    expect(await gaveUp).toEqual({ settled: false });
    expect(clock.pending()).toBe(0);

    let finish!: (n: number) => void;
    const soon = track(new Promise<number>((resolve) => (finish = resolve)));
    const waited = waitAtMost(soon, { clock, ms: 100 });
    finish(7);
    expect(await waited).toEqual({ settled: true, value: 7 });
    expect(clock.pending()).toBe(0);
  });

  it("with pollMs learns the result from its own timer, never from the promise", async () => {
    const clock = createManualClock(0);
    let finish!: (n: number) => void;
    const work = track(new Promise<number>((resolve) => (finish = resolve)));
    let at: number | undefined;
    void waitAtMost(work, { clock, ms: 1000, pollMs: 25 }).then(() => {
      at = clock.now();
    });
    await runFor(clock, 30);
    finish(1);
    await settle();
    expect(at).toBeUndefined(); // settled at 30, but nothing of this waiter's ran yet
    await runFor(clock, 20);
    expect(at).toBe(50);
    expect(clock.pending()).toBe(0);
  });

  it("rejects with the signal's reason when its asker leaves", async () => {
    const clock = createManualClock(0);
    const controller = new AbortController();
    const waited = waitAtMost(track(new Promise(() => {})), {
      clock,
      ms: 1000,
      signal: controller.signal,
    });
    controller.abort(new Error("client gone"));
    await expect(waited).rejects.toThrow("client gone");
    expect(clock.pending()).toBe(0);
  });
});

describe("race: a query's deadline when the request that set a timer has ended", () => {
  async function secondQueryAfterFirstRequestEnds(selfContainedQueries: boolean) {
    const manual = createManualClock(0);
    const requests = requestClock(manual);
    const hang = createFakeUpstream("hang", requests.clock, { hang: true });
    const race = createRace({
      upstreams: [hang],
      timeoutMs: 1000,
      clock: requests.clock,
      selfContainedQueries,
    });
    const a = new AbortController();
    requests.as("A", () => race.resolve(buildQuery("a.test", 1, { id: 1 }), a.signal));
    await runFor(manual, 100);
    let second: RaceResult | undefined;
    requests.as("B", () =>
      race.resolve(buildQuery("b.test", 1, { id: 2 })).then((r) => {
        second = r;
      }),
    );
    // Request A ends (its client went away): its timers never fire.
    a.abort();
    requests.end("A");
    await runFor(manual, 2000);
    return second;
  }

  it("self-contained queries: the second query still times out at its own deadline", async () => {
    expect(await secondQueryAfterFirstRequestEnds(true)).toMatchObject({
      ok: false,
      error: { code: "timeout" },
    });
  });

  it("(why) with the route's shared timer, set by the first request, it never would", async () => {
    expect(await secondQueryAfterFirstRequestEnds(false)).toBeUndefined();
  });

  it("a self-contained query ends at its caller's abort and cancels its attempt", async () => {
    const clock = createManualClock(0);
    const hang = createFakeUpstream("hang", clock, { hang: true });
    const race = createRace({ upstreams: [hang], clock, selfContainedQueries: true });
    const controller = new AbortController();
    const result = race.resolve(buildQuery("y.test", 1, { id: 3 }), controller.signal);
    await runFor(clock, 50);
    controller.abort();
    expect(await result).toMatchObject({ ok: false, error: { code: "aborted" } });
    expect(hang.signals[0]!.aborted).toBe(true);
    expect(clock.pending()).toBe(0);
  });

  it("self-contained queries clear their own timer and listener when they finish", async () => {
    const clock = createManualClock(0);
    const fast = createFakeUpstream("fast", clock, { rcode: Rcode.NOERROR, after: 10 });
    const race = createRace({ upstreams: [fast], clock, selfContainedQueries: true });
    const controller = new AbortController();
    const result = race.resolve(buildQuery("x.test", 1, { id: 9 }), controller.signal);
    await runFor(clock, 10);
    expect(await result).toMatchObject({ ok: true, rcode: Rcode.NOERROR });
    expect(clock.pending()).toBe(0);
    controller.abort(); // a late abort reaches nothing
    expect(fast.aborted).toBe(0);
  });
});

const CACHE: CacheConfig = {
  size: 100,
  min_ttl: 0,
  max_ttl: 86_400_000,
  negative_ttl: 3_600_000,
  servfail_ttl: 5000,
  serve_stale: false,
};

/** A resolver whose n-th call answers after `delays[n]` ms (or never). */
function scriptedResolver(clock: Clock, delays: (number | "never")[]) {
  const signals: AbortSignal[] = [];
  const resolver: Resolver = {
    resolve(query, signal) {
      const delay = delays[signals.length] ?? 0;
      signals.push(signal ?? new AbortController().signal);
      return new Promise<ResolveOutcome>((resolve) => {
        if (delay === "never") return;
        clock.setTimeout(
          () =>
            resolve({
              kind: "answer",
              answer: respond(query, Rcode.NOERROR),
              route: "r",
              upstream: "u",
            }),
          delay,
        );
      });
    },
    resolveRoute: (_name, query, signal) => resolver.resolve(query, signal),
    counters: () => ({}),
    status: () => [],
    start() {},
    async close() {},
  };
  return { resolver, signals };
}

describe("coalescing across requests (the worker's SharingOptions)", () => {
  it("a query that joined a resolution whose request ended gives up at the bound and resolves anew, and later ones join that", async () => {
    const clock = createManualClock(0);
    const scripted = scriptedResolver(clock, ["never", 50]);
    const kept: Promise<unknown>[] = [];
    const cached = createCachedResolver(scripted.resolver, CACHE, () => clock.now(), undefined, {
      keepAlive: (work) => kept.push(work),
      joinTimeoutMs: 1000,
      joinPollMs: 10,
      clock,
    });
    const ask = (id: number) => cached.resolve(buildQuery("same.test", 1, { id }));
    void ask(1); // its work is lost: it never settles
    await runFor(clock, 100);
    const second = ask(2);
    await runFor(clock, 899);
    const third = ask(3); // still joins the lost one: the bound is from its start
    await runFor(clock, 1);
    // Both gave up at 1000; one started anew, the other joined it.
    expect(scripted.signals).toHaveLength(2);
    const fourth = ask(4); // joins the second's resolution
    await runFor(clock, 60);
    const answers = await Promise.all([second, third, fourth]);
    expect(answers.map((o) => readId(o.answer))).toEqual([2, 3, 4]);
    expect(answers.every((o) => o.kind === "answer")).toBe(true);
    expect(scripted.signals).toHaveLength(2);
    expect(kept).toHaveLength(2); // every shared resolution was kept alive
  });

  it("with keepAlive, the resolution runs on (and fills the cache) when every asker has gone", async () => {
    const clock = createManualClock(0);
    const scripted = scriptedResolver(clock, [50]);
    const cached = createCachedResolver(scripted.resolver, CACHE, () => clock.now(), undefined, {
      keepAlive: () => {},
      clock,
    });
    const gone = new AbortController();
    void cached.resolve(buildQuery("kept.test", 1, { id: 1 }), gone.signal);
    gone.abort();
    await settle();
    expect(scripted.signals[0]!.aborted).toBe(false);
    await runFor(clock, 50);
    const later = await cached.resolve(buildQuery("kept.test", 1, { id: 2 }));
    expect(later).toMatchObject({ upstream: "cache" });
    // One resolution with a live signal (the gone asker's own answer is an aborted one).
    expect(scripted.signals.filter((s) => !s.aborted)).toHaveLength(1);
  });

  it("without keepAlive (the relay), the last asker to leave cancels it", async () => {
    const clock = createManualClock(0);
    const scripted = scriptedResolver(clock, [50]);
    const cached = createCachedResolver(scripted.resolver, CACHE, () => clock.now());
    const gone = new AbortController();
    void cached.resolve(buildQuery("gone.test", 1, { id: 1 }), gone.signal);
    gone.abort();
    await settle();
    expect(scripted.signals[0]!.aborted).toBe(true);
  });
});
