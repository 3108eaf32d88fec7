import { describe, expect, it } from "vitest";
import { Rcode, readQuestion } from "../../shared/dns/wire.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import { createHealthTracker } from "../../shared/engine/health.ts";
import { createHealthChecker, type Probe } from "../../shared/engine/health-check.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import { createDnsProbe, createHttpProbe } from "../../shared/engine/probes.ts";
import { createSeededRandom } from "../../shared/engine/random.ts";
import { type Behaviour, createFakeUpstream } from "./support/fake-upstream.ts";
import { runFor, settle } from "./support/time.ts";

describe("active health check", () => {
  it("marks upstreams down when the probe fails and up again when it passes", async () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    const healthy: Record<string, boolean> = { a: true, b: false };
    const upstreams = ["a", "b"].map((name) => createFakeUpstream(name, clock, { rcode: 0 }));
    const probe: Probe = async (u) => healthy[u.name];
    const checker = createHealthChecker({ upstreams, health, probe, clock, intervalMs: 1000 });
    checker.start();
    await settle();
    expect([health.isUp("a"), health.isUp("b")]).toEqual([true, false]);
    expect(health.view("b").lastErrorCode).toBe("probe_failed");
    healthy.b = true;
    healthy.a = false;
    await runFor(clock, 1000);
    expect([health.isUp("a"), health.isUp("b")]).toEqual([false, true]);
    checker.stop();
    expect(clock.pending()).toBe(0);
    expect(checker.running).toBe(false);
  });

  it("counts a probe that ignores its signal as timed out, and keeps the rounds going", async () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    const upstream = createFakeUpstream("stuck", clock, { rcode: 0 });
    let probes = 0;
    const probe: Probe = () => {
      probes++;
      return new Promise(() => {}); // never settles, ignores the signal
    };
    const checker = createHealthChecker({
      upstreams: [upstream],
      health,
      probe,
      clock,
      intervalMs: 1000,
      timeoutMs: 300,
    });
    checker.start();
    await runFor(clock, 300);
    expect(health.isUp("stuck")).toBe(false);
    expect(health.view("stuck").lastErrorCode).toBe("timeout");
    await runFor(clock, 1300);
    expect(probes).toBe(2);
    checker.stop();
    expect(clock.pending()).toBe(0);
  });

  it("stop() mid-probe aborts the probe, clears every timer and ignores its result", async () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    const upstream = createFakeUpstream("u", clock, { hang: true });
    const signals: AbortSignal[] = [];
    const probe: Probe = async (u, signal) => {
      signals.push(signal);
      await u.query(new Uint8Array(12), signal);
      return true;
    };
    const checker = createHealthChecker({
      upstreams: [upstream],
      health,
      probe,
      clock,
      intervalMs: 1000,
    });
    checker.start();
    await settle();
    expect(clock.pending()).toBeGreaterThan(0);
    checker.stop();
    await settle();
    expect(clock.pending()).toBe(0);
    expect(signals[0]!.aborted).toBe(true);
    expect(upstream.inFlight).toBe(0);
    expect(health.isUp("u")).toBe(true); // the aborted probe did not count
  });

  it("keeps an upstream down only for downForMs when no later probe passes", async () => {
    const clock = createManualClock();
    const health = createHealthTracker({ clock });
    const upstream = createFakeUpstream("u", clock, { rcode: 0 });
    const checker = createHealthChecker({
      upstreams: [upstream],
      health,
      probe: async () => false,
      clock,
      intervalMs: 1000,
      downForMs: 500,
    });
    await checker.checkNow();
    expect(health.isUp("u")).toBe(false);
    clock.advance(500);
    expect(health.isUp("u")).toBe(true);
    expect(clock.pending()).toBe(0);
  });
});

describe("probes", () => {
  it("the DNS probe sends `. NS` and passes on any valid response", async () => {
    const clock = createManualClock();
    const seen: string[] = [];
    const script = (_call: number, query: Uint8Array): Behaviour => {
      const q = readQuestion(query);
      seen.push(`${q.name} ${q.type}`);
      return { rcode: Rcode.REFUSED };
    };
    const upstream = createFakeUpstream("u", clock, script);
    const probe = createDnsProbe({ random: createSeededRandom(1) });
    const result = probe(upstream, new AbortController().signal);
    await settle();
    clock.advance(0);
    expect(await result).toBe(true);
    expect(seen).toEqual([". 2"]);
  });

  it("the DNS probe fails on a wrong ID or a transport error", async () => {
    const clock = createManualClock();
    const probe = createDnsProbe({ random: createSeededRandom(1) });
    for (const behaviour of [{ rcode: 0, id: 1 }, { error: "connect" }] as Behaviour[]) {
      const upstream = createFakeUpstream("u", clock, behaviour);
      const result = probe(upstream, new AbortController().signal);
      result.catch(() => {});
      await settle();
      clock.advance(0);
      await expect(result).rejects.toBeInstanceOf(UpstreamError);
    }
  });

  it("the HTTP probe passes on 200-399 and fails otherwise, without following redirects", async () => {
    const inits: RequestInit[] = [];
    const urls: string[] = [];
    let status = 200;
    const fakeFetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
      urls.push(String(input));
      inits.push(init ?? {});
      return new Response(status === 204 || status === 302 ? null : "body", { status });
    }) as typeof fetch;
    const probe = createHttpProbe({ url: (u) => `http://${u.name}:8080/health`, fetch: fakeFetch });
    const upstream = createFakeUpstream("host", createManualClock(), { rcode: 0 });
    const signal = new AbortController().signal;
    const outcomes: Record<number, boolean | undefined> = {};
    for (status of [200, 204, 302, 404, 500]) outcomes[status] = await probe(upstream, signal);
    expect(outcomes).toEqual({ 200: true, 204: true, 302: true, 404: false, 500: false });
    expect(urls[0]).toBe("http://host:8080/health");
    expect(inits[0]).toMatchObject({ redirect: "manual", signal });
  });
});
