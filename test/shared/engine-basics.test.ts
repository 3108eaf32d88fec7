import { describe, expect, it } from "vitest";
// Imported through the barrel, so the public entry point loads in both runtimes.
import {
  createCryptoRandom,
  createManualClock,
  createSeededRandom,
  ERROR_CLASSES,
  errorClassOf,
  randomIndex,
  shuffled,
  toUpstreamError,
  UPSTREAM_ERROR_CODES,
  UpstreamError,
} from "../../shared/engine/index.ts";

describe("upstream errors", () => {
  it("map every code to one of the bounded error classes, fanout's names where it has them", () => {
    for (const code of UPSTREAM_ERROR_CODES) expect(ERROR_CLASSES).toContain(errorClassOf(code));
    expect(errorClassOf("connect")).toBe("connect_failed");
    expect(errorClassOf("send")).toBe("request_send_failed");
    expect(errorClassOf("read")).toBe("response_read_failed");
    expect(errorClassOf("malformed_answer")).toBe("response_decode_failed");
    expect(errorClassOf(new UpstreamError("timeout", "a"))).toBe("timeout");
  });

  it("carry the upstream name, code, status and cause", () => {
    const cause = new Error("boom");
    const error = new UpstreamError("http_status", "quad9", undefined, { status: 502, cause });
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({
      code: "http_status",
      upstream: "quad9",
      status: 502,
      cause,
      name: "UpstreamError",
    });
    expect(error.message).toBe("quad9: http status");
  });

  it("wrap untyped rejections: timeouts, aborts, coded errors and anything else", () => {
    const same = new UpstreamError("tls", "a");
    expect(toUpstreamError(same, "b")).toBe(same);
    expect(toUpstreamError(new DOMException("t", "TimeoutError"), "a").code).toBe("timeout");
    expect(toUpstreamError(new DOMException("x", "AbortError"), "a").code).toBe("aborted");
    expect(toUpstreamError(Object.assign(new Error("c"), { code: "connect" }), "a").code).toBe(
      "connect",
    );
    expect(toUpstreamError(Object.assign(new Error("c"), { code: "ECONNREFUSED" }), "a").code).toBe(
      "internal",
    );
    const wrapped = toUpstreamError("a string", "up");
    expect(wrapped).toMatchObject({ code: "internal", upstream: "up", cause: "a string" });
  });
});

describe("manual clock", () => {
  it("fires due timers in time order, then creation order, including ones they schedule", () => {
    const clock = createManualClock(100);
    const log: string[] = [];
    clock.setTimeout(() => log.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => {
      log.push(`a@${clock.now()}`);
      clock.setTimeout(() => log.push(`c@${clock.now()}`), 5);
    }, 10);
    clock.setTimeout(() => log.push(`b2@${clock.now()}`), 20);
    const late = clock.setTimeout(() => log.push("never"), 1000);
    expect(clock.pending()).toBe(4);
    expect(clock.nextDue()).toBe(110);
    clock.advance(50);
    expect(log).toEqual(["a@110", "c@115", "b@120", "b2@120"]);
    expect(clock.now()).toBe(150);
    expect(clock.pending()).toBe(1);
    clock.clearTimeout(late);
    expect(clock.pending()).toBe(0);
    expect(clock.nextDue()).toBeUndefined();
  });

  it("refuses to go backwards", () => {
    expect(() => createManualClock().advance(-1)).toThrow(RangeError);
  });
});

describe("random", () => {
  it("repeats the same sequence for the same seed and stays in [0, 1)", () => {
    const a = createSeededRandom(42);
    const b = createSeededRandom(42);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b.next()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(xs).size).toBeGreaterThan(990);
    expect(createSeededRandom(43).next()).not.toBe(xs[0]);
  });

  it("draws crypto randomness in [0, 1)", () => {
    const r = createCryptoRandom();
    const xs = Array.from({ length: 200 }, () => r.next());
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(xs).size).toBeGreaterThan(190);
  });

  it("picks indexes in range and shuffles into a permutation", () => {
    const r = createSeededRandom(1);
    for (let i = 0; i < 100; i++) expect(randomIndex(r, 3)).toBeLessThan(3);
    expect(randomIndex({ next: () => 0.9999999999999999 }, 3)).toBe(2);
    const items = [1, 2, 3, 4, 5];
    const out = shuffled(items, r);
    expect(out.slice().sort()).toEqual(items);
    expect(items).toEqual([1, 2, 3, 4, 5]);
  });
});
