import { describe, expect, it } from "vitest";
import { EngineConfigError } from "../../shared/engine/errors.ts";
import { createHealthTracker } from "../../shared/engine/health.ts";
import { createLatencyWindow } from "../../shared/engine/latency-window.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";

function fail(health: ReturnType<typeof createHealthTracker>, name: string, times: number) {
  for (let i = 0; i < times; i++) {
    health.attemptStarted(name);
    health.attemptFailed(name, "connect");
  }
}

describe("passive health", () => {
  it("marks an upstream down after attempt_count consecutive failures, for fail_timeout", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock, attemptCount: 3, failTimeoutMs: 2000 });
    fail(health, "a", 2);
    expect(health.isUp("a")).toBe(true);
    fail(health, "a", 1);
    expect(health.isUp("a")).toBe(false);
    clock.advance(1999);
    expect(health.isUp("a")).toBe(false);
    clock.advance(1);
    expect(health.isUp("a")).toBe(true);
  });

  it("sends a readmitted upstream straight back out on its next failure, until a success resets it", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock, attemptCount: 3, failTimeoutMs: 1000 });
    fail(health, "a", 3);
    clock.advance(1000);
    fail(health, "a", 1);
    expect(health.isUp("a")).toBe(false);
    clock.advance(1000);
    health.attemptStarted("a");
    health.attemptSucceeded("a", 12);
    fail(health, "a", 2);
    expect(health.isUp("a")).toBe(true);
    expect(health.view("a").consecutiveFailures).toBe(2);
  });

  it("never marks an upstream down with attempt_count 0", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock, attemptCount: 0 });
    fail(health, "a", 1000);
    expect(health.isUp("a")).toBe(true);
    expect(health.view("a").consecutiveFailures).toBe(1000);
  });

  it("counts in-flight and total attempts; a cancel is neither success nor failure", () => {
    const health = createHealthTracker({ clock: createManualClock() });
    health.attemptStarted("a");
    health.attemptStarted("a");
    expect(health.view("a")).toMatchObject({ inFlight: 2, total: 2 });
    health.attemptCancelled("a");
    expect(health.view("a")).toMatchObject({ inFlight: 1, total: 2, consecutiveFailures: 0 });
  });

  it("keeps a latency EWMA and a recent p95", () => {
    const health = createHealthTracker({ clock: createManualClock(), ewmaAlpha: 0.5 });
    health.attemptStarted("a");
    health.attemptSucceeded("a", 100);
    health.attemptStarted("a");
    health.attemptSucceeded("a", 50);
    expect(health.view("a").ewmaLatencyMs).toBe(75);
    expect(health.recentLatency("a", 0.95, 3)).toBeUndefined();
    expect(health.recentLatency("a", 0.95)).toBe(100);
  });

  it("is visible as plain data", () => {
    const clock = createManualClock(500);
    const health = createHealthTracker({ clock, attemptCount: 1, failTimeoutMs: 300 });
    health.attemptStarted("a");
    health.attemptSucceeded("a", 20);
    fail(health, "b", 1);
    health.attemptStarted("c");
    const snapshot = health.snapshot();
    expect(JSON.parse(JSON.stringify(snapshot))).toEqual(
      JSON.parse(
        JSON.stringify([
          {
            name: "a",
            up: true,
            consecutiveFailures: 0,
            downUntil: 0,
            ewmaLatencyMs: 20,
            inFlight: 0,
            total: 1,
          },
          {
            name: "b",
            up: false,
            consecutiveFailures: 1,
            downUntil: 800,
            lastErrorCode: "connect",
            lastFailureAt: 500,
            inFlight: 0,
            total: 1,
          },
          { name: "c", up: true, consecutiveFailures: 0, downUntil: 0, inFlight: 1, total: 1 },
        ]),
      ),
    );
    clock.advance(300);
    expect(health.snapshot()[1]).toMatchObject({ up: true, downUntil: 0 });
  });

  it("marks up and down on request (active checks)", () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    health.markDown("a", 5000, "timeout");
    expect(health.isUp("a")).toBe(false);
    expect(health.view("a").lastErrorCode).toBe("timeout");
    health.markUp("a");
    expect(health.isUp("a")).toBe(true);
  });

  it("rejects nonsense options", () => {
    expect(() => createHealthTracker({ attemptCount: -1 })).toThrow(EngineConfigError);
    expect(() => createHealthTracker({ attemptCount: 1.5 })).toThrow(EngineConfigError);
    expect(() => createHealthTracker({ failTimeoutMs: Number.NaN })).toThrow(EngineConfigError);
    expect(() => createHealthTracker({ ewmaAlpha: 0 })).toThrow(EngineConfigError);
  });
});

describe("latency window", () => {
  it("holds the last N samples and answers nearest-rank quantiles", () => {
    const window = createLatencyWindow(20);
    expect(window.quantile(0.95)).toBeUndefined();
    for (let i = 1; i <= 40; i++) window.add(i);
    expect(window.size).toBe(20);
    // samples 21..40: p95 is the 19th of 20, p50 the 10th
    expect(window.quantile(0.95)).toBe(39);
    expect(window.quantile(0.5)).toBe(30);
    expect(window.quantile(0)).toBe(21);
    expect(window.quantile(1)).toBe(40);
  });
});
