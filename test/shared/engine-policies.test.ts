import { describe, expect, it } from "vitest";
import { Rcode } from "../../shared/dns/wire.ts";
import { EngineConfigError } from "../../shared/engine/errors.ts";
import { createHealthTracker } from "../../shared/engine/health.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import { createPolicy, type PolicyContext, weightedPicks } from "../../shared/engine/policies.ts";
import { createSeededRandom } from "../../shared/engine/random.ts";
import type { Behaviour } from "./support/fake-upstream.ts";
import { createHarness } from "./support/race-harness.ts";
import { runFor } from "./support/time.ts";

const candidates = (...names: string[]) => names.map((name) => ({ name, weight: 100 }));

function context(seed = 1) {
  const clock = createManualClock();
  const health = createHealthTracker({ clock });
  const ctx = (): PolicyContext => ({ health, random: createSeededRandom(seed), now: clock.now() });
  return { clock, health, ctx };
}

const names = (list: readonly { name: string }[]) => list.map((c) => c.name);

describe("weighted_random", () => {
  it("picks in proportion to weight: 10,000 seeded first picks within ±2 percentage points", () => {
    const weights = { a: 10, b: 30, c: 60 };
    const list = Object.entries(weights).map(([name, weight]) => ({ name, weight }));
    const random = createSeededRandom(20240501);
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    const n = 10_000;
    for (let i = 0; i < n; i++) counts[weightedPicks(list, 1, random)[0]!.name]!++;
    for (const [name, weight] of Object.entries(weights)) {
      expect(Math.abs((counts[name]! / n) * 100 - weight)).toBeLessThanOrEqual(2);
    }
  });

  it("picks server_count distinct upstreams without replacement", () => {
    const { ctx } = context(5);
    const policy = createPolicy({ name: "weighted_random", serverCount: 2 });
    const list = [
      { name: "a", weight: 1 },
      { name: "b", weight: 50 },
      { name: "c", weight: 100 },
    ];
    for (let i = 0; i < 200; i++) {
      const picked = names(policy.order(list, ctx()));
      expect(picked).toHaveLength(2);
      expect(new Set(picked).size).toBe(2);
    }
    expect(names(createPolicy("weighted_random").order(list, ctx())).sort()).toEqual([
      "a",
      "b",
      "c",
    ]);
  });

  it("rejects a server_count that is not a positive integer", () => {
    expect(() => createPolicy({ name: "weighted_random", serverCount: 0 })).toThrow(
      EngineConfigError,
    );
  });
});

describe("order policies", () => {
  it("sequential keeps the declared order", () => {
    const { ctx } = context();
    expect(names(createPolicy("sequential").order(candidates("a", "b", "c"), ctx()))).toEqual([
      "a",
      "b",
      "c",
    ]);
  });

  it("round_robin starts one further along on each query", () => {
    const { ctx } = context();
    const policy = createPolicy("round_robin");
    const firsts = Array.from(
      { length: 6 },
      () => policy.order(candidates("a", "b", "c"), ctx())[0]!.name,
    );
    expect(firsts).toEqual(["a", "b", "c", "a", "b", "c"]);
    expect(names(policy.order(candidates("a", "b", "c"), ctx()))).toEqual(["a", "b", "c"]);
  });

  it("round_robin spreads queries evenly over upstreams through the engine", async () => {
    const ok: Behaviour = { rcode: Rcode.NOERROR, after: 1 };
    const h = createHarness({ a: ok, b: ok, c: ok }, { policy: "round_robin" });
    for (let i = 0; i < 9; i++) await h.resolve();
    expect([h.fakes.a!.calls, h.fakes.b!.calls, h.fakes.c!.calls]).toEqual([3, 3, 3]);
  });

  it("random puts each upstream first about equally often (3,000 seeded orders, ±3 points)", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    const random = createSeededRandom(99);
    const policy = createPolicy("random");
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 3000; i++) {
      const order = policy.order(candidates("a", "b", "c"), { health, random, now: 0 });
      expect(names(order).sort()).toEqual(["a", "b", "c"]);
      counts[order[0]!.name]!++;
    }
    for (const n of Object.values(counts))
      expect(Math.abs(n / 30 - 100 / 3)).toBeLessThanOrEqual(3);
  });

  it("least_outstanding puts the upstream with the fewest attempts in flight first", () => {
    const { health, ctx } = context();
    health.attemptStarted("a");
    health.attemptStarted("a");
    health.attemptStarted("c");
    expect(
      names(createPolicy("least_outstanding").order(candidates("a", "b", "c"), ctx())),
    ).toEqual(["b", "c", "a"]);
  });

  it("least_outstanding sends concurrent queries to idle upstreams first", async () => {
    const h = createHarness(
      { a: { rcode: Rcode.NOERROR, after: 100 }, b: { rcode: Rcode.NOERROR, after: 100 } },
      { policy: "least_outstanding" },
    );
    const first = h.race.resolve(h.query());
    const second = h.race.resolve(h.query());
    // the second query starts while the first is still in flight on one of them
    expect([h.fakes.a!.calls, h.fakes.b!.calls]).toEqual([1, 1]);
    await runFor(h.clock, 200);
    const upstreams = [await first, await second].map((r) => (r.ok ? r.upstream : r.error.code));
    expect(upstreams.sort()).toEqual(["a", "b"]);
  });

  it("least_total picks the upstream that has been sent the fewest queries so far", async () => {
    const { health, ctx } = context();
    for (let i = 0; i < 5; i++) health.attemptStarted("a");
    health.attemptStarted("b");
    expect(names(createPolicy("least_total").order(candidates("a", "b", "c"), ctx()))).toEqual([
      "c",
      "b",
      "a",
    ]);
    const ok: Behaviour = { rcode: Rcode.NOERROR, after: 1 };
    const h = createHarness({ x: ok, y: ok, z: ok }, { policy: "least_total" });
    h.health.attemptStarted("x");
    h.health.attemptCancelled("x");
    for (let i = 0; i < 8; i++) await h.resolve();
    // x had a head start of one, so the eight queries even the totals out at three each.
    expect([h.fakes.x!.calls, h.fakes.y!.calls, h.fakes.z!.calls]).toEqual([2, 3, 3]);
  });

  it("fastest tries untried upstreams first, then the lowest latency EWMA", () => {
    const { health, ctx } = context();
    const policy = createPolicy({ name: "fastest", exploreRate: 0 });
    health.attemptStarted("a");
    health.attemptSucceeded("a", 50);
    health.attemptStarted("b");
    health.attemptSucceeded("b", 10);
    expect(names(policy.order(candidates("a", "b", "c"), ctx()))).toEqual(["c", "b", "a"]);
    health.attemptStarted("c");
    health.attemptSucceeded("c", 30);
    expect(names(policy.order(candidates("a", "b", "c"), ctx()))).toEqual(["b", "c", "a"]);
  });

  it("fastest settles on the quickest upstream through the engine", async () => {
    const h = createHarness(
      {
        slow: { rcode: Rcode.NOERROR, after: 80 },
        quick: { rcode: Rcode.NOERROR, after: 5 },
        medium: { rcode: Rcode.NOERROR, after: 30 },
      },
      { policy: { name: "fastest", exploreRate: 0 } },
    );
    for (let i = 0; i < 10; i++) await h.resolve();
    // one exploratory query each, then every query to the quickest
    expect([h.fakes.slow!.calls, h.fakes.quick!.calls, h.fakes.medium!.calls]).toEqual([1, 8, 1]);
  });

  it("fastest explores another upstream first at about its explore rate (2,000 orders, 20% ±3 points)", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    for (const [name, ms] of [
      ["a", 5],
      ["b", 50],
      ["c", 90],
    ] as const) {
      health.attemptStarted(name);
      health.attemptSucceeded(name, ms);
    }
    const policy = createPolicy({ name: "fastest", exploreRate: 0.2 });
    const random = createSeededRandom(4);
    let explored = 0;
    for (let i = 0; i < 2000; i++) {
      if (policy.order(candidates("a", "b", "c"), { health, random, now: 0 })[0]!.name !== "a")
        explored++;
    }
    expect(Math.abs(explored / 20 - 20)).toBeLessThanOrEqual(3);
  });

  it("rejects an unknown policy name with the list of known ones", () => {
    expect(() => createPolicy("fanciest" as never)).toThrow(
      /unknown policy "fanciest".*sequential/,
    );
  });
});

describe("failover", () => {
  it("skips a failing primary within one fail_timeout and readmits it after", async () => {
    let primaryFails = true;
    const h = createHarness(
      {
        primary: (): Behaviour =>
          primaryFails ? { error: "connect", after: 1 } : { rcode: Rcode.NOERROR, after: 1 },
        secondary: { rcode: Rcode.NOERROR, after: 1 },
      },
      { policy: "failover", healthOptions: { attemptCount: 3, failTimeoutMs: 2000 } },
    );
    expect((await h.resolve()).result).toMatchObject({
      ok: true,
      upstream: "secondary",
      attempts: 2,
    });
    for (let i = 0; i < 5; i++) {
      expect((await h.resolve()).result).toMatchObject({
        ok: true,
        upstream: "secondary",
        attempts: 1,
      });
      await runFor(h.clock, 100);
    }
    expect(h.fakes.primary!.calls).toBe(1);
    primaryFails = false;
    await runFor(h.clock, 2000);
    expect((await h.resolve()).result).toMatchObject({
      ok: true,
      upstream: "primary",
      attempts: 1,
    });
    expect((await h.resolve()).result).toMatchObject({ ok: true, upstream: "primary" });
  });
});

describe("availability", () => {
  it("pulls a failing upstream out for exponentially growing periods and resets on success", async () => {
    let aFails = true;
    const h = createHarness(
      {
        a: (): Behaviour => (aFails ? { error: "connect" } : { rcode: Rcode.NOERROR }),
        b: { rcode: Rcode.NOERROR },
      },
      {
        policy: "availability",
        healthOptions: { attemptCount: 0, backoffBaseMs: 1000, backoffMaxMs: 8000 },
        seed: 11,
      },
    );
    // The order is random: query until a has been tried (and has failed) once.
    while (h.fakes.a!.calls === 0) await h.resolve();
    expect(h.health.availableAt("a") - h.clock.now()).toBe(1000); // first failure: the base period
    const callsBefore = h.fakes.a!.calls;
    for (let i = 0; i < 10; i++) await h.resolve();
    expect(h.fakes.a!.calls).toBe(callsBefore); // pulled out within the period
    await runFor(h.clock, 1000);
    while (h.fakes.a!.calls === callsBefore) await h.resolve();
    expect(h.health.availableAt("a") - h.clock.now()).toBe(2000); // second failure: twice as long
    await runFor(h.clock, 2000);
    aFails = false;
    const callsAfter = h.fakes.a!.calls;
    while (h.fakes.a!.calls === callsAfter) await h.resolve();
    expect(h.health.availableAt("a")).toBe(0);
  });

  it("caps the pull-out period at backoffMaxMs", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock, backoffBaseMs: 100, backoffMaxMs: 1000 });
    for (let i = 0; i < 20; i++) health.attemptFailed("a", "connect");
    expect(health.availableAt("a")).toBe(1000);
  });
});
