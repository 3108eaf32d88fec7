import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createCounters } from "../../shared/engine/counters.ts";
import { ERROR_CLASSES, UPSTREAM_ERROR_CODES } from "../../shared/engine/errors.ts";
import { POLICY_NAMES, type PolicyName } from "../../shared/engine/policies.ts";
import type { RaceResult } from "../../shared/engine/race.ts";
import type { Behaviour } from "./support/fake-upstream.ts";
import { createHarness } from "./support/race-harness.ts";
import { runUntil } from "./support/time.ts";

const delay = fc.integer({ min: 0, max: 400 });
const behaviour: fc.Arbitrary<Behaviour> = fc.oneof(
  fc.record({ rcode: fc.integer({ min: 0, max: 10 }), after: delay }),
  fc.record({
    error: fc.constantFrom(...UPSTREAM_ERROR_CODES.filter((c) => c !== "all_failed")),
    after: delay,
  }),
  fc.record({ rcode: fc.constant(0), after: delay, id: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ bytes: fc.uint8Array({ maxLength: 20 }), after: delay }),
  fc.constant({ hang: true as const }),
);

const scenario = fc.record({
  scripts: fc.array(fc.array(behaviour, { minLength: 1, maxLength: 5 }), {
    minLength: 1,
    maxLength: 4,
  }),
  workerCount: fc.integer({ min: 1, max: 4 }),
  maxConcurrentAttempts: fc.integer({ min: 1, max: 4 }),
  race: fc.boolean(),
  continueOnError: fc.boolean(),
  hedgeDelayMs: fc.option(
    fc.oneof(fc.integer({ min: 0, max: 200 }), fc.constant("auto" as const)),
    {
      nil: undefined,
    },
  ),
  policy: fc.constantFrom(...POLICY_NAMES),
  attemptCount: fc.integer({ min: 0, max: 3 }),
  queries: fc.integer({ min: 1, max: 6 }),
  concurrent: fc.boolean(),
  abortAt: fc.option(fc.integer({ min: 0, max: 300 }), { nil: undefined }),
  seed: fc.integer(),
});

describe("counters", () => {
  it("keep fanout's accounting invariants over random upstream behaviours (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const scripts: Record<string, Behaviour[]> = {};
        s.scripts.forEach((script, i) => {
          scripts[`u${i}`] = script;
        });
        const h = createHarness(scripts, {
          workerCount: s.workerCount,
          maxConcurrentAttempts: s.maxConcurrentAttempts,
          race: s.race,
          raceContinueOnError: s.race && s.continueOnError,
          hedgeDelayMs: s.hedgeDelayMs,
          policy: s.policy as PolicyName,
          healthOptions: { attemptCount: s.attemptCount, failTimeoutMs: 500 },
          timeoutMs: 1000,
          seed: s.seed,
        });
        const results: RaceResult[] = [];
        const run = async () => {
          const controller = new AbortController();
          const timer =
            s.abortAt === undefined
              ? undefined
              : h.clock.setTimeout(() => controller.abort(), s.abortAt);
          results.push(await h.race.resolve(h.query(), controller.signal));
          h.clock.clearTimeout(timer);
        };
        if (s.concurrent) {
          await runUntil(h.clock, Promise.all(Array.from({ length: s.queries }, run)));
        } else {
          for (let i = 0; i < s.queries; i++) await runUntil(h.clock, run());
        }

        expect(results).toHaveLength(s.queries);
        const snapshot = h.counters.snapshot();
        let wins = 0;
        for (const c of Object.values(snapshot)) {
          const errors = Object.values(c.errors).reduce((a, b) => a + b, 0);
          expect(c.request).toBe(errors + c.cancel + c.success);
          expect(Object.values(c.rcodes).reduce((a, b) => a + b, 0)).toBe(c.success);
          expect(c.win).toBeLessThanOrEqual(c.success);
          expect(c.latency.count).toBe(c.success);
          expect(c.latency.buckets.at(-1)!.count).toBe(c.success);
          for (const k of Object.keys(c.errors)) expect(ERROR_CLASSES).toContain(k);
          wins += c.win;
        }
        // exactly one win per successful query
        expect(wins).toBe(results.filter((r) => r.ok).length);
        for (const r of results) {
          if (!r.ok) expect(["all_failed", "timeout", "aborted"]).toContain(r.error.code);
        }
        expect(h.totalInFlight()).toBe(0);
        expect(h.clock.pending()).toBe(0);
        expect(h.tracker.max).toBeLessThanOrEqual(
          Math.min(s.workerCount, s.maxConcurrentAttempts) * s.queries,
        );
        for (const u of h.health.snapshot()) expect(u.inFlight).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it("sorts latencies into cumulative histogram buckets", () => {
    const counters = createCounters([10, 100]);
    counters.attemptStarted("a");
    counters.attemptSucceeded("a", 0, 3);
    counters.attemptStarted("a");
    counters.attemptSucceeded("a", 3, 10);
    counters.attemptStarted("a");
    counters.attemptSucceeded("a", 0, 700);
    counters.won("a");
    counters.attemptStarted("a");
    counters.attemptFailed("a", "timeout");
    counters.attemptStarted("a");
    counters.attemptCancelled("a");
    expect(counters.snapshot().a).toEqual({
      request: 5,
      errors: { timeout: 1 },
      cancel: 1,
      success: 3,
      win: 1,
      rcodes: { 0: 2, 3: 1 },
      latency: {
        sumMs: 713,
        count: 3,
        buckets: [
          { le: 10, count: 2 },
          { le: 100, count: 2 },
          { le: Number.POSITIVE_INFINITY, count: 3 },
        ],
      },
    });
  });
});
