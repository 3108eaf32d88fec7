// An upstream used outside a race (the relay's origin endpoint) still counts
// its attempts and feeds route health, on the manual clock: answers by rcode
// and latency, failures by error class, a wrong answer as a failure, and the
// caller giving up as a cancel that says nothing against the upstream.

import { describe, expect, it } from "vitest";
import { createCounters } from "../../shared/engine/counters.ts";
import { createHealthTracker } from "../../shared/engine/health.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import { createTrackedUpstream } from "../../shared/engine/tracked-upstream.ts";
import { buildQuery } from "./support/dns-messages.ts";
import { createFakeUpstream, type Script } from "./support/fake-upstream.ts";
import { runUntil } from "./support/time.ts";

function setup(script: Script) {
  const clock = createManualClock();
  const counters = createCounters();
  const healths = [createHealthTracker({ clock }), createHealthTracker({ clock })];
  const fake = createFakeUpstream("up", clock, script);
  const tracked = createTrackedUpstream(fake, { counters, healths, clock });
  const ask = (signal = new AbortController().signal) =>
    tracked.query(buildQuery("tracked.test", 1, { id: 77 }), signal);
  const health = (i: number) => healths[i]!.view("up");
  return { clock, counters, tracked, ask, health, fake };
}

describe("tracked upstream", () => {
  it("counts an answer with its rcode and latency, in counters and every route's health", async () => {
    const { clock, counters, ask, health } = setup({ rcode: 3, after: 40 });
    const answer = await runUntil(clock, ask());
    expect(answer[3]! & 0x0f).toBe(3);
    const counted = counters.snapshot().up;
    expect(counted).toMatchObject({ request: 1, success: 1, cancel: 0, rcodes: { 3: 1 } });
    expect(counted?.latency.count).toBe(1);
    for (const i of [0, 1]) expect(health(i)).toMatchObject({ total: 1, ewmaLatencyMs: 40 });
  });

  it("counts a failure under its error class and marks it in health", async () => {
    const { clock, counters, ask, health } = setup({ error: "connect", after: 5 });
    await expect(runUntil(clock, ask())).rejects.toMatchObject({ code: "connect" });
    expect(counters.snapshot().up).toMatchObject({ request: 1, errors: { connect_failed: 1 } });
    expect(health(1)).toMatchObject({ consecutiveFailures: 1, lastErrorCode: "connect" });
  });

  it("fails an answer to another question, as a race would", async () => {
    const { clock, counters, ask, health } = setup({ rcode: 0, name: "other.test" });
    await expect(runUntil(clock, ask())).rejects.toMatchObject({ code: "question_mismatch" });
    expect(counters.snapshot().up).toMatchObject({ success: 0, errors: { question_mismatch: 1 } });
    expect(health(0).lastErrorCode).toBe("question_mismatch");
  });

  it("counts the caller giving up as a cancel, not against the upstream", async () => {
    const { clock, counters, ask, health } = setup({ hang: true });
    const controller = new AbortController();
    const pending = ask(controller.signal);
    controller.abort();
    await expect(runUntil(clock, pending)).rejects.toMatchObject({ code: "aborted" });
    expect(counters.snapshot().up).toMatchObject({ request: 1, cancel: 1, errors: {} });
    expect(health(0)).toMatchObject({ consecutiveFailures: 0, inFlight: 0 });
  });
});
