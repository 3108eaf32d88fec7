// statsd's in-memory side: counters summed per flush, gauges as set, timers
// sampled down to a bounded reservoir with a rate that keeps the count
// right, and lines packed into packets under the size limit.

import { describe, expect, it } from "vitest";
import { createStatsdRegistry, packLines, segment } from "../../relay/src/statsd/registry.ts";
import { createSeededRandom } from "../../shared/engine/random.ts";

const registry = (over: { sampleRate?: number; timerSamples?: number; prefix?: string } = {}) =>
  createStatsdRegistry({
    prefix: over.prefix ?? "p",
    sampleRate: over.sampleRate ?? 1,
    timerSamples: over.timerSamples ?? 100,
    random: createSeededRandom(7),
  });

describe("statsd registry", () => {
  it("sums counters between drains and sends only the ones that moved", () => {
    const r = registry();
    const a = r.counter("a");
    expect(r.counter("a")).toBe(a);
    a.add();
    a.add(4);
    r.counter("b");
    expect(r.drain()).toEqual(["p.a:5|c"]);
    expect(r.drain()).toEqual([]);
    a.add(2);
    expect(r.drain()).toEqual(["p.a:2|c"]);
  });

  it("sends gauges set since the last drain, a negative one via 0", () => {
    const r = registry({ prefix: "" });
    r.gauge("g", 3);
    r.gauge("g", 4);
    r.gauge("neg", -2);
    expect(r.drain()).toEqual(["g:4|g", "neg:0|g", "neg:-2|g"]);
    expect(r.drain()).toEqual([]);
  });

  it("sends every timer sample while under the cap, without a rate", () => {
    const r = registry();
    const t = r.timer("lat");
    for (const ms of [1, 2.5, 0.1234567]) t.record(ms);
    expect(r.drain()).toEqual(["p.lat:1|ms", "p.lat:2.5|ms", "p.lat:0.123|ms"]);
    expect(r.drain()).toEqual([]);
  });

  it("keeps at most timer_samples per flush, with a rate of kept / seen", () => {
    const r = registry({ timerSamples: 10 });
    const t = r.timer("lat");
    for (let i = 0; i < 1000; i++) t.record(i);
    const lines = r.drain();
    expect(lines).toHaveLength(10);
    for (const line of lines) expect(line).toMatch(/^p\.lat:\d+\|ms\|@0\.01$/);
    // A uniform sample of 0…999, not the first ten.
    const values = lines.map((l) => Number(l.slice(6, l.indexOf("|"))));
    expect(Math.max(...values)).toBeGreaterThan(100);
  });

  it("applies sample_rate to timers only, and the rate line says so", () => {
    const r = registry({ sampleRate: 0.5 });
    const t = r.timer("lat");
    const c = r.counter("n");
    for (let i = 0; i < 100; i++) {
      t.record(1);
      c.add();
    }
    const lines = r.drain();
    expect(lines[0]).toBe("p.n:100|c");
    const timers = lines.slice(1);
    expect(timers.length).toBeGreaterThan(30);
    expect(timers.length).toBeLessThan(70);
    for (const line of timers) expect(line).toBe("p.lat:1|ms|@0.5");
  });

  it("makes configured names safe as one dotted segment", () => {
    expect(segment("dns.google")).toBe("dns_google");
    expect(segment("a-b_c9")).toBe("a-b_c9");
    expect(segment("x:y|z@w")).toBe("x_y_z_w");
  });
});

describe("packLines", () => {
  it("joins lines with newlines into packets no longer than the limit", () => {
    const lines = Array.from({ length: 200 }, (_, i) => `doh_relay.upstream.u${i}.requests:${i}|c`);
    const packets = packLines(lines, 512);
    for (const p of packets) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(512);
    expect(packets.join("\n").split("\n")).toEqual(lines);
    // Full packets: only the last may be short by more than one line.
    const longest = Math.max(...lines.map((l) => l.length));
    for (const p of packets.slice(0, -1)) expect(p.length).toBeGreaterThan(512 - longest - 1);
  });

  it("sends a line longer than the limit alone, and nothing for no lines", () => {
    expect(packLines(["a:1|c", "x".repeat(20), "b:1|c"], 10)).toEqual([
      "a:1|c",
      "x".repeat(20),
      "b:1|c",
    ]);
    expect(packLines([], 1432)).toEqual([]);
  });
});
