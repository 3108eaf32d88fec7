import { describe, expect, it } from "vitest";
import { EdeCode, Rcode, readEdns, readHeader, readId, readRcode } from "../../shared/dns/wire.ts";
import { UpstreamError } from "../../shared/engine/errors.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import { createRace, toServfail } from "../../shared/engine/race.ts";
import { createSeededRandom } from "../../shared/engine/random.ts";
import { buildQuery, respond } from "./support/dns-messages.ts";
import { type Behaviour, createFakeUpstream } from "./support/fake-upstream.ts";
import { createHarness } from "./support/race-harness.ts";
import { runUntil, settle } from "./support/time.ts";

const ERROR_RCODES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

describe("race engine: winner rules", () => {
  it("always succeeds while one upstream cycles through every error RCODE and another answers", async () => {
    const h = createHarness(
      {
        broken: ERROR_RCODES.map((rcode): Behaviour => ({ rcode, after: 5 })),
        good: { rcode: Rcode.NOERROR, after: 40 },
      },
      { workerCount: 2 },
    );
    for (let i = 0; i < ERROR_RCODES.length * 2; i++) {
      const { result } = await h.resolve();
      expect(result).toMatchObject({ ok: true, rcode: Rcode.NOERROR, upstream: "good" });
    }
    const snap = h.counters.snapshot();
    expect(snap.broken!.rcodes).toEqual(Object.fromEntries(ERROR_RCODES.map((r) => [r, 2])));
    expect(snap.broken!.win).toBe(0);
    expect(snap.good!.win).toBe(ERROR_RCODES.length * 2);
  });

  it("forwards NXDOMAIN when every upstream says NXDOMAIN, after all attempts ended", async () => {
    const h = createHarness(
      {
        a: { rcode: Rcode.NXDOMAIN, after: 30 },
        b: { rcode: Rcode.NXDOMAIN, after: 10 },
        c: { rcode: Rcode.NXDOMAIN, after: 20 },
      },
      { workerCount: 3 },
    );
    const { result, elapsed } = await h.resolve();
    expect(result).toMatchObject({ ok: true, rcode: Rcode.NXDOMAIN, upstream: "b", attempts: 3 });
    expect(elapsed).toBe(30);
    if (result.ok) expect(readRcode(result.answer)).toBe(Rcode.NXDOMAIN);
  });

  it("prefers NOERROR over SERVFAIL and NXDOMAIN that came first", async () => {
    const h = createHarness(
      {
        a: { rcode: Rcode.SERVFAIL, after: 10 },
        b: { rcode: Rcode.NXDOMAIN, after: 20 },
        c: { rcode: Rcode.NOERROR, after: 30 },
      },
      { workerCount: 3 },
    );
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: true, rcode: Rcode.NOERROR, upstream: "c" });
  });

  it("falls back to NXDOMAIN over SERVFAIL and REFUSED, and to SERVFAIL over REFUSED", async () => {
    const three = createHarness(
      {
        a: { rcode: Rcode.SERVFAIL, after: 10 },
        b: { rcode: Rcode.REFUSED, after: 20 },
        c: { rcode: Rcode.NXDOMAIN, after: 30 },
      },
      { workerCount: 3 },
    );
    expect((await three.resolve()).result).toMatchObject({
      ok: true,
      rcode: Rcode.NXDOMAIN,
      upstream: "c",
    });
    const two = createHarness(
      { a: { rcode: Rcode.REFUSED, after: 10 }, b: { rcode: Rcode.SERVFAIL, after: 20 } },
      { workerCount: 2 },
    );
    expect((await two.resolve()).result).toMatchObject({
      ok: true,
      rcode: Rcode.SERVFAIL,
      upstream: "b",
    });
  });

  describe("SERVFAIL fast, NOERROR slow", () => {
    const scripts = {
      fast: { rcode: Rcode.SERVFAIL, after: 10 },
      slow: { rcode: Rcode.NOERROR, after: 50 },
    };

    it("default: waits for the NOERROR", async () => {
      const h = createHarness(scripts, { workerCount: 2 });
      const { result, elapsed } = await h.resolve();
      expect(result).toMatchObject({ ok: true, rcode: Rcode.NOERROR, upstream: "slow" });
      expect(elapsed).toBe(50);
    });

    it("race: the SERVFAIL wins at once and the slow attempt is cancelled", async () => {
      const h = createHarness(scripts, { workerCount: 2, race: true });
      const { result, elapsed } = await h.resolve();
      expect(result).toMatchObject({ ok: true, rcode: Rcode.SERVFAIL, upstream: "fast" });
      expect(elapsed).toBe(10);
      expect(h.fakes.slow!.signals[0]!.aborted).toBe(true);
      expect(h.counters.snapshot().slow).toMatchObject({ request: 1, cancel: 1, success: 0 });
    });

    it("race + race_continue_on_error: SERVFAIL does not end the race, NOERROR does", async () => {
      const h = createHarness(scripts, { workerCount: 2, race: true, raceContinueOnError: true });
      const { result, elapsed } = await h.resolve();
      expect(result).toMatchObject({ ok: true, rcode: Rcode.NOERROR, upstream: "slow" });
      expect(elapsed).toBe(50);
    });
  });

  it("race + race_continue_on_error: a fast NXDOMAIN ends the race", async () => {
    const h = createHarness(
      { fast: { rcode: Rcode.NXDOMAIN, after: 10 }, slow: { rcode: Rcode.NOERROR, after: 50 } },
      { workerCount: 2, race: true, raceContinueOnError: true },
    );
    const { result, elapsed } = await h.resolve();
    expect(result).toMatchObject({ ok: true, rcode: Rcode.NXDOMAIN, upstream: "fast" });
    expect(elapsed).toBe(10);
  });

  it("default mode: a held NXDOMAIN is returned when the query times out waiting for others", async () => {
    const h = createHarness(
      { a: { rcode: Rcode.NXDOMAIN, after: 10 }, b: { hang: true } },
      { workerCount: 2, timeoutMs: 1000 },
    );
    const { result, elapsed } = await h.resolve();
    expect(result).toMatchObject({ ok: true, rcode: Rcode.NXDOMAIN, upstream: "a" });
    expect(elapsed).toBe(1000);
    expect(h.counters.snapshot().b!.errors).toEqual({ timeout: 1 });
  });
});

describe("race engine: attempts and candidates", () => {
  it("answers every query while an upstream drops every other one, with attempt_count 0", async () => {
    const h = createHarness(
      {
        flaky: (call): Behaviour =>
          call % 2 === 0 ? { hang: true } : { rcode: Rcode.NOERROR, after: 5 },
        backup: { rcode: Rcode.NOERROR, after: 5 },
      },
      { healthOptions: { attemptCount: 0 }, timeouts: { flaky: 200 }, timeoutMs: 2000 },
    );
    const winners: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { result } = await h.resolve();
      expect(result.ok).toBe(true);
      if (result.ok) winners.push(result.upstream);
    }
    // Never marked down: it got every query and answered half of them itself.
    expect(h.fakes.flaky!.calls).toBe(20);
    expect(winners.filter((w) => w === "flaky")).toHaveLength(10);
    expect(h.health.isUp("flaky")).toBe(true);
  });

  it("runs worker_count attempts at once and moves to the next candidate when one fails", async () => {
    const h = createHarness(
      {
        a: { error: "connect", after: 10 },
        b: { hang: true },
        c: { rcode: Rcode.NOERROR, after: 10 },
        d: { rcode: Rcode.NOERROR, after: 1 },
      },
      { workerCount: 2 },
    );
    const pending = h.race.resolve(h.query());
    await settle();
    expect([h.fakes.a!.calls, h.fakes.b!.calls, h.fakes.c!.calls]).toEqual([1, 1, 0]);
    const result = await runUntil(h.clock, pending);
    expect(result).toMatchObject({ ok: true, upstream: "c", attempts: 3 });
    expect(h.fakes.c!.startedAt[0]).toBe(1010);
    expect(h.fakes.d!.calls).toBe(0);
    expect(h.tracker.max).toBe(2);
    expect(h.fakes.b!.signals[0]!.aborted).toBe(true);
  });

  it("server_count 1 contacts exactly one upstream per query", async () => {
    const h = createHarness(
      {
        a: { rcode: Rcode.SERVFAIL, after: 1 },
        b: { rcode: Rcode.SERVFAIL, after: 1 },
        c: { rcode: Rcode.SERVFAIL, after: 1 },
      },
      { workerCount: 3, policy: { name: "weighted_random", serverCount: 1 } },
    );
    for (let i = 1; i <= 30; i++) {
      const { result } = await h.resolve();
      expect(result).toMatchObject({ ok: true, rcode: Rcode.SERVFAIL, attempts: 1 });
      expect(h.totalCalls()).toBe(i);
    }
  });

  it("uses an upstream's own timeout to move on to the next one", async () => {
    const h = createHarness(
      { slow: { hang: true }, next: { rcode: Rcode.NOERROR, after: 5 } },
      { timeouts: { slow: 300 }, timeoutMs: 5000 },
    );
    const { result, elapsed } = await h.resolve();
    expect(result).toMatchObject({ ok: true, upstream: "next" });
    expect(elapsed).toBe(305);
    expect(h.fakes.slow!.signals[0]!.aborted).toBe(true);
    expect(h.attemptErrors.map((e) => [e.upstream, e.errorClass])).toEqual([["slow", "timeout"]]);
  });

  it("treats a wrong ID as a failed attempt, then takes the right one", async () => {
    const h = createHarness(
      {
        liar: (call): Behaviour =>
          call === 0 ? { rcode: Rcode.NOERROR, id: 0xbeef } : { rcode: Rcode.NOERROR },
        honest: { rcode: Rcode.NOERROR, after: 20 },
      },
      { healthOptions: { attemptCount: 5 } },
    );
    const first = await h.resolve();
    expect(first.result).toMatchObject({ ok: true, upstream: "honest" });
    if (first.result.ok) expect(readId(first.result.answer)).toBe(readId(first.query));
    const second = await h.resolve();
    expect(second.result).toMatchObject({ ok: true, upstream: "liar" });
    expect(h.counters.snapshot().liar).toMatchObject({
      request: 2,
      success: 1,
      errors: { id_mismatch: 1 },
    });
    expect(h.attemptErrors.map((e) => e.errorClass)).toEqual(["id_mismatch"]);
  });

  it("rejects answers to another question and bytes that are not a DNS response", async () => {
    const h = createHarness(
      {
        other: { rcode: Rcode.NOERROR, name: "elsewhere.example." },
        garbage: { bytes: Uint8Array.from([1, 2, 3]) },
        good: { rcode: Rcode.NOERROR, after: 5 },
      },
      { workerCount: 3 },
    );
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: true, upstream: "good" });
    const snap = h.counters.snapshot();
    expect(snap.other!.errors).toEqual({ question_mismatch: 1 });
    expect(snap.garbage!.errors).toEqual({ response_decode_failed: 1 });
  });

  it("accepts an error response without a question section", async () => {
    const h = createHarness({ a: { rcode: Rcode.FORMERR, noQuestion: true } });
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: true, rcode: Rcode.FORMERR });
  });
});

describe("race engine: failure, timeouts and cancellation", () => {
  it("returns a SERVFAIL-ready failure when every upstream times out, right at the timeout", async () => {
    const h = createHarness(
      { a: { hang: true }, b: { hang: true } },
      { workerCount: 2, timeoutMs: 1500 },
    );
    const query = buildQuery("example.com.", 1, { id: 77, ednsUdpSize: 1232 });
    const { result, elapsed } = await h.resolve(query);
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(elapsed).toBeLessThanOrEqual(1510);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toBeInstanceOf(UpstreamError);
    expect(result.error.code).toBe("timeout");
    expect(result.error.errors.map((e) => e.code)).toEqual(["timeout", "timeout"]);
    expect(result.ede.code).toBe(EdeCode.NO_REACHABLE_AUTHORITY);
    const servfail = toServfail(query, result);
    expect(readHeader(servfail)).toMatchObject({ id: 77, qr: true });
    expect(readRcode(servfail)).toBe(Rcode.SERVFAIL);
    const ede = readEdns(servfail)?.options.find((o) => o.code === 15);
    expect(ede && (ede.data[0]! << 8) | ede.data[1]!).toBe(EdeCode.NO_REACHABLE_AUTHORITY);
    expect(h.clock.pending()).toBe(0);
    expect(h.totalInFlight()).toBe(0);
  });

  it("reports all_failed with NETWORK_ERROR when every attempt fails fast", async () => {
    const h = createHarness(
      { a: { error: "connect", after: 1 }, b: { error: "tls", after: 2 } },
      { workerCount: 1, timeoutMs: 5000 },
    );
    const { result, elapsed } = await h.resolve();
    expect(elapsed).toBe(3);
    expect(result).toMatchObject({ ok: false, attempts: 2, ede: { code: EdeCode.NETWORK_ERROR } });
    if (!result.ok) {
      expect(result.error.code).toBe("all_failed");
      expect(result.ede.text).toContain("connect_failed");
    }
  });

  it("cancels every loser through its own signal and leaves no timers or attempts behind", async () => {
    const h = createHarness(
      {
        winner: { rcode: Rcode.NOERROR, after: 10 },
        hanger: { hang: true },
        slow: { rcode: Rcode.NOERROR, after: 50 },
      },
      { workerCount: 3, timeouts: { hanger: 1000, slow: 1000 } },
    );
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: true, upstream: "winner" });
    expect(h.clock.pending()).toBe(0);
    expect(h.totalInFlight()).toBe(0);
    expect(h.fakes.hanger!.signals[0]!.aborted).toBe(true);
    expect(h.fakes.slow!.signals[0]!.aborted).toBe(true);
    expect(h.fakes.winner!.signals[0]!.aborted).toBe(false);
    // one signal per attempt, not one shared signal
    expect(new Set(Object.values(h.fakes).map((f) => f.signals[0])).size).toBe(3);
    const snap = h.counters.snapshot();
    expect(snap.hanger).toMatchObject({ cancel: 1, errors: {} });
    expect(snap.slow).toMatchObject({ cancel: 1, errors: {} });
    expect(h.attemptErrors).toEqual([]);
    expect(h.health.view("hanger").inFlight).toBe(0);
  });

  it("respects the caller's abort: resolves aborted, cancels attempts, reports no defects", async () => {
    const h = createHarness({ a: { hang: true }, b: { hang: true } }, { workerCount: 2 });
    const controller = new AbortController();
    const pending = h.race.resolve(h.query(), controller.signal);
    h.clock.setTimeout(() => controller.abort(), 100);
    const result = await runUntil(h.clock, pending);
    expect(result).toMatchObject({ ok: false, error: { code: "aborted" }, attempts: 2 });
    expect(h.clock.now()).toBe(1100);
    expect(h.fakes.a!.signals[0]!.aborted && h.fakes.b!.signals[0]!.aborted).toBe(true);
    expect(h.clock.pending()).toBe(0);
    expect(h.totalInFlight()).toBe(0);
    expect(h.attemptErrors).toEqual([]);
    expect(h.counters.snapshot().a).toMatchObject({ request: 1, cancel: 1 });
  });

  it("times out each query at its own deadline from one timer, and keeps none when idle", async () => {
    const h = createHarness({ a: { hang: true } }, { timeoutMs: 1000 });
    const first = h.race.resolve(h.query());
    h.clock.advance(300);
    const second = h.race.resolve(h.query());
    h.clock.advance(300);
    const third = h.race.resolve(h.query());
    // One timer however many queries are waiting.
    expect(h.clock.pending()).toBe(1);
    const settled: number[] = [];
    for (const [i, p] of [first, second, third].entries()) {
      void p.then((r) => {
        expect(r).toMatchObject({ ok: false, error: { code: "timeout" } });
        settled.push(i);
      });
    }
    h.clock.advance(399); // t = 999 after the first started
    await settle();
    expect(settled).toEqual([]);
    h.clock.advance(1);
    await settle();
    expect(settled).toEqual([0]);
    h.clock.advance(299);
    await settle();
    expect(settled).toEqual([0]);
    h.clock.advance(1);
    await settle();
    expect(settled).toEqual([0, 1]);
    h.clock.advance(300);
    await settle();
    expect(settled).toEqual([0, 1, 2]);
    expect(h.clock.pending()).toBe(0);
    expect(h.totalInFlight()).toBe(0);
  });

  it("a query that ends early leaves the later ones their full timeout", async () => {
    const h = createHarness({ a: { hang: true } }, { timeoutMs: 1000 });
    const cancel = new AbortController();
    const early = h.race.resolve(h.query(), cancel.signal);
    h.clock.advance(100);
    cancel.abort();
    expect(await early).toMatchObject({ ok: false, error: { code: "aborted" } });
    h.clock.advance(400);
    let settledAt: number | undefined;
    const later = h.race.resolve(h.query()).then((r) => {
      settledAt = h.clock.now();
      return r;
    });
    h.clock.advance(999); // past the early query's deadline, short of the later one's
    await settle();
    expect(settledAt).toBeUndefined();
    h.clock.advance(1);
    expect(await later).toMatchObject({ ok: false, error: { code: "timeout" } });
    expect(settledAt).toBe(1000 + 1500);
    expect(h.clock.pending()).toBe(0);
  });

  it("ends exactly the queries of a caller signal shared by many when it aborts", async () => {
    const h = createHarness({ a: { hang: true } }, { timeoutMs: 5000 });
    const shared = new AbortController();
    const other = new AbortController();
    const onShared = [0, 1, 2].map(() => h.race.resolve(h.query(), shared.signal));
    const onOther = h.race.resolve(h.query(), other.signal);
    const unsignalled = h.race.resolve(h.query());
    const done: string[] = [];
    for (const [i, p] of onShared.entries()) void p.then(() => done.push(`shared${i}`));
    void onOther.then(() => done.push("other"));
    void unsignalled.then(() => done.push("none"));
    h.clock.advance(100);
    shared.abort(new Error("going away"));
    await settle();
    expect(done.sort()).toEqual(["shared0", "shared1", "shared2"]);
    for (const p of onShared) {
      expect(await p).toMatchObject({ ok: false, error: { code: "aborted" }, attempts: 1 });
    }
    // The others still run, and the shared signal's queries were cancelled upstream.
    expect(h.totalInFlight()).toBe(2);
    other.abort();
    await settle();
    expect(done).toContain("other");
    expect(done).not.toContain("none");
    const late = await h.resolve(h.query(), shared.signal);
    expect(late.result).toMatchObject({ ok: false, error: { code: "aborted" }, attempts: 0 });
    h.clock.advance(5000);
    expect(await unsignalled).toMatchObject({ ok: false, error: { code: "timeout" } });
    expect(h.clock.pending()).toBe(0);
    expect(h.totalInFlight()).toBe(0);
  });

  it("does not start anything for a signal that is already aborted", async () => {
    const h = createHarness({ a: { rcode: Rcode.NOERROR } });
    const { result } = await h.resolve(h.query(), AbortSignal.abort());
    expect(result).toMatchObject({ ok: false, error: { code: "aborted" }, attempts: 0 });
    expect(h.totalCalls()).toBe(0);
    expect(h.clock.pending()).toBe(0);
  });

  it("answers a query that is not a DNS message with bad_query, without attempts", async () => {
    const h = createHarness({ a: { rcode: Rcode.NOERROR } });
    const { result } = await h.resolve(Uint8Array.from([1, 2, 3]));
    expect(result).toMatchObject({ ok: false, error: { code: "bad_query" }, attempts: 0 });
    expect(h.totalCalls()).toBe(0);
  });

  it("never has more than maxConcurrentAttempts in flight, whatever worker_count says", async () => {
    const scripts: Record<string, Behaviour> = {};
    for (let i = 0; i < 10; i++) scripts[`u${i}`] = { error: "read", after: 5 + i };
    const h = createHarness(scripts, { workerCount: 10, maxConcurrentAttempts: 3 });
    const { result } = await h.resolve();
    expect(result).toMatchObject({ ok: false, attempts: 10 });
    expect(h.tracker.max).toBe(3);
  });

  it("calls the debug hook for defective attempts only", async () => {
    const h = createHarness(
      {
        broken: { error: "connect", after: 1 },
        winner: { rcode: Rcode.NOERROR, after: 5 },
        loser: { rcode: Rcode.NOERROR, after: 50 },
      },
      { workerCount: 3 },
    );
    await h.resolve();
    expect(h.attemptErrors.map((e) => [e.upstream, e.errorClass, e.error.code])).toEqual([
      ["broken", "connect_failed", "connect"],
    ]);
  });

  it("keeps going when the debug hook throws", async () => {
    const h = createHarness(
      { broken: { error: "connect" }, good: { rcode: Rcode.NOERROR, after: 5 } },
      {
        onAttemptError: () => {
          throw new Error("logger broke");
        },
      },
    );
    expect((await h.resolve()).result).toMatchObject({ ok: true, upstream: "good" });
  });
});

describe("race engine: health", () => {
  it("skips an upstream marked down and sprays one at random when all are down", async () => {
    const h = createHarness(
      { a: { error: "connect" }, b: { error: "connect", after: 1 } },
      { healthOptions: { attemptCount: 1, failTimeoutMs: 10_000 } },
    );
    const first = await h.resolve();
    expect(first.result).toMatchObject({
      ok: false,
      attempts: 2,
      ede: { code: EdeCode.NETWORK_ERROR },
    });
    expect(h.health.isUp("a") || h.health.isUp("b")).toBe(false);
    const second = await h.resolve();
    expect(second.result).toMatchObject({
      ok: false,
      attempts: 1,
      ede: { code: EdeCode.NOT_READY, text: "all upstreams down" },
    });
    expect(h.totalCalls()).toBe(3);
  });
});

describe("race engine as an Upstream", () => {
  it("resolves query() with the winner's bytes and rejects with the failure's UpstreamError", async () => {
    const clock = createManualClock();
    const good = createFakeUpstream("good", clock, { rcode: Rcode.NOERROR, after: 5 });
    const bad = createFakeUpstream("bad", clock, { error: "connect", after: 5 });
    const ok = createRace({ name: "ok", upstreams: [good], clock, random: createSeededRandom(1) });
    const failing = createRace({
      name: "failing",
      upstreams: [bad],
      clock,
      random: createSeededRandom(1),
    });
    const query = buildQuery("example.com.", 1, { id: 9 });
    const answer = await runUntil(clock, ok.query(query, new AbortController().signal));
    expect(answer).toEqual(respond(query, Rcode.NOERROR));
    const rejected = runUntil(clock, failing.query(query, new AbortController().signal));
    await expect(rejected).rejects.toMatchObject({ code: "all_failed", upstream: "failing" });
  });

  it("nests: a race of races picks the answer of the inner race that answers", async () => {
    const clock = createManualClock();
    const random = createSeededRandom(3);
    const innerA = createRace({
      name: "inner-a",
      upstreams: [createFakeUpstream("a1", clock, { error: "connect", after: 1 })],
      clock,
      random,
    });
    const innerB = createRace({
      name: "inner-b",
      upstreams: [createFakeUpstream("b1", clock, { rcode: Rcode.NOERROR, after: 3 })],
      clock,
      random,
    });
    const outer = createRace({ name: "outer", upstreams: [innerA, innerB], clock, random });
    const result = await runUntil(clock, outer.resolve(buildQuery("example.org.", 28, { id: 4 })));
    expect(result).toMatchObject({ ok: true, upstream: "inner-b", attempts: 2 });
    expect(outer.counters.snapshot()["inner-a"]!.errors).toEqual({ other: 1 });
  });

  it("close() ends queries in flight with `closed`, refuses new ones, and closes owned upstreams", async () => {
    const clock = createManualClock();
    const hang = createFakeUpstream("hang", clock, { hang: true });
    const race = createRace({
      upstreams: [hang],
      clock,
      random: createSeededRandom(1),
      ownsUpstreams: true,
    });
    const pending = race.resolve(buildQuery("example.com.", 1));
    await race.close();
    expect(await pending).toMatchObject({
      ok: false,
      error: { code: "closed" },
      ede: { code: EdeCode.NOT_READY },
    });
    expect(await race.resolve(buildQuery("example.com.", 1))).toMatchObject({
      ok: false,
      error: { code: "closed" },
    });
    expect(hang.closed).toBe(true);
    expect(hang.signals[0]!.aborted).toBe(true);
    expect(clock.pending()).toBe(0);
  });

  it("with selfContainedQueries, close() refuses new queries and leaves those in flight to their own deadlines", async () => {
    const clock = createManualClock();
    const hang = createFakeUpstream("hang", clock, { hang: true });
    const race = createRace({
      upstreams: [hang],
      clock,
      timeoutMs: 500,
      selfContainedQueries: true,
    });
    const pending = race.resolve(buildQuery("example.com.", 1));
    await race.close();
    expect(await race.resolve(buildQuery("example.com.", 1))).toMatchObject({
      ok: false,
      error: { code: "closed" },
    });
    let settled = false;
    void pending.then(() => {
      settled = true;
    });
    await settle();
    expect(settled).toBe(false);
    clock.advance(500);
    expect(await pending).toMatchObject({ ok: false, error: { code: "timeout" } });
    expect(clock.pending()).toBe(0);
  });

  it("rejects bad options when the route is built", () => {
    const clock = createManualClock();
    const u = createFakeUpstream("u", clock, { rcode: 0 });
    expect(() => createRace({ upstreams: [] })).toThrow(/no upstreams/);
    expect(() => createRace({ upstreams: [u, u] })).toThrow(/twice/);
    expect(() => createRace({ upstreams: [u], workerCount: 0 })).toThrow(/worker_count/);
    expect(() => createRace({ upstreams: [u], timeoutMs: -1 })).toThrow(/timeout/);
    expect(() => createRace({ upstreams: [{ upstream: u, weight: 101 }] })).toThrow(/weight/);
    expect(() => createRace({ upstreams: [u], raceContinueOnError: true })).toThrow(/needs race/);
    expect(() => createRace({ upstreams: [u], hedgeDelayMs: -5 })).toThrow(/hedge_delay/);
  });
});
