import { describe, expect, it } from "vitest";
import { Rcode } from "../../shared/dns/wire.ts";
import { createHealthTracker } from "../../shared/engine/health.ts";
import { hedgeDelayFor } from "../../shared/engine/hedge.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import type { Behaviour } from "./support/fake-upstream.ts";
import { createHarness } from "./support/race-harness.ts";

describe("hedge_delay", () => {
  it("starts the second attempt only after the hedge delay", async () => {
    const h = createHarness(
      { first: { rcode: Rcode.NOERROR, after: 300 }, second: { rcode: Rcode.NOERROR, after: 10 } },
      { workerCount: 2, hedgeDelayMs: 100 },
    );
    const { result, elapsed } = await h.resolve();
    expect(h.fakes.second!.startedAt[0]! - h.fakes.first!.startedAt[0]!).toBe(100);
    expect(result).toMatchObject({ ok: true, upstream: "second", attempts: 2 });
    expect(elapsed).toBe(110);
    expect(h.fakes.first!.signals[0]!.aborted).toBe(true);
    expect(h.clock.pending()).toBe(0);
  });

  it("never starts the second attempt when the first answers before the delay", async () => {
    const h = createHarness(
      { first: { rcode: Rcode.NOERROR, after: 50 }, second: { rcode: Rcode.NOERROR, after: 1 } },
      { workerCount: 2, hedgeDelayMs: 100 },
    );
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: true, upstream: "first", attempts: 1 });
    expect(h.fakes.second!.calls).toBe(0);
    expect(h.clock.pending()).toBe(0);
  });

  it("starts the next candidate at once when an attempt fails, and hedges from that start", async () => {
    const h = createHarness(
      {
        a: { error: "connect", after: 20 },
        b: { hang: true },
        c: { rcode: Rcode.NOERROR, after: 5 },
      },
      { workerCount: 3, hedgeDelayMs: 100 },
    );
    const { result } = await h.resolve();
    expect(h.fakes.b!.startedAt[0]).toBe(1020);
    expect(h.fakes.c!.startedAt[0]).toBe(1120);
    expect(result).toMatchObject({ ok: true, upstream: "c" });
  });

  it("keeps in-flight attempts at worker_count and maxConcurrentAttempts while hedging", async () => {
    const scripts: Record<string, Behaviour> = {};
    for (let i = 0; i < 8; i++) scripts[`u${i}`] = { hang: true };
    const h = createHarness(scripts, {
      workerCount: 6,
      maxConcurrentAttempts: 3,
      hedgeDelayMs: 10,
      timeoutMs: 1000,
    });
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: false, error: { code: "timeout" }, attempts: 3 });
    expect(h.tracker.max).toBe(3);
    expect(h.fakes.u2!.startedAt[0]! - h.fakes.u0!.startedAt[0]!).toBe(20);
    expect(h.clock.pending()).toBe(0);
  });

  it("auto uses the upstream's recent p95, and a fallback until it has enough samples", () => {
    const health = createHealthTracker({ clock: createManualClock() });
    expect(hedgeDelayFor("auto", health, "a", { fallbackMs: 80 })).toBe(80);
    for (let i = 1; i <= 20; i++) {
      health.attemptStarted("a");
      health.attemptSucceeded("a", i * 10);
    }
    expect(hedgeDelayFor("auto", health, "a")).toBe(190);
    expect(hedgeDelayFor(25, health, "a")).toBe(25);
  });

  it("auto hedges after the first upstream's recent p95 in a query", async () => {
    const h = createHarness(
      {
        first: (call): Behaviour =>
          call < 4 ? { rcode: Rcode.NOERROR, after: 40 } : { hang: true },
        second: { rcode: Rcode.NOERROR, after: 5 },
      },
      { workerCount: 2, hedgeDelayMs: "auto", autoHedge: { minSamples: 4, fallbackMs: 1000 } },
    );
    for (let i = 0; i < 4; i++) {
      expect((await h.resolve()).result).toMatchObject({
        ok: true,
        upstream: "first",
        attempts: 1,
      });
    }
    expect(h.fakes.second!.calls).toBe(0);
    // first's recent p95 is now 40 ms (not the 1000 ms fallback), so the hedge goes out after 40 ms
    const { result, elapsed } = await h.resolve();
    expect(result).toMatchObject({ ok: true, upstream: "second", attempts: 2 });
    expect(h.fakes.second!.startedAt[0]! - h.fakes.first!.startedAt[4]!).toBe(40);
    expect(elapsed).toBe(45);
  });
});
