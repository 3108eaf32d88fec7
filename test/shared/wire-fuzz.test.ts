// CI's short bounded pass of the wire fuzzer (npm run fuzz runs 1,000,000),
// and every input a fuzz run ever flagged, kept as a regression fixture.

import { describe, expect, it } from "vitest";
import { createSeededRandom } from "../../shared/engine/random.ts";
import regressions from "../fixtures/fuzz/regressions.json" with { type: "json" };
import { fromHex } from "../fixtures/packets/captured.ts";
import { crashOf, fuzzWire, mutate, SEEDS } from "../fuzz/wire-fuzz.ts";

describe("wire fuzzing", () => {
  it("10,000 mutated messages: no crash (only DnsWireError), no hang", () => {
    // A hang here is an input that blows up the parser's work (seconds), not a
    // slow moment: shared CI machines stall a single input for ~0.7 s.
    const result = fuzzWire({ inputs: 10_000, seed: 20261123, hangMs: 2_000 });
    expect(result.findings).toEqual([]);
    expect(result.inputs).toBe(10_000);
  });

  it("mutations really change the input", () => {
    const random = createSeededRandom(7);
    const seed = SEEDS[0] as Uint8Array;
    const changed = Array.from({ length: 200 }, () =>
      mutate(seed, random, SEEDS[1] as Uint8Array),
    ).filter((m) => m.length !== seed.length || m.some((b, i) => b !== seed[i]));
    expect(changed.length).toBeGreaterThan(180);
  });

  it("finds a crash when a target throws something else (the harness can fail)", () => {
    const seed = SEEDS[0] as Uint8Array;
    const broken = new Uint8Array(seed);
    expect(crashOf(broken)).toBeUndefined();
    expect(crashOf(undefined as unknown as Uint8Array)).toBeDefined();
  });

  it.each((regressions.cases as { hex: string; error: string }[]).map((c, i) => ({ i, ...c })))(
    "regression $i no longer crashes",
    ({ hex }) => {
      expect(crashOf(fromHex(hex))).toBeUndefined();
    },
  );
});
