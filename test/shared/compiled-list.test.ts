// Compiled block lists (issue 16): the filter agrees with the plain suffix
// set on random lists and names, never misses a listed name, and refuses a
// truncated, corrupt or wrong-version file with one line. Runs in Node and
// in workerd.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildCompiledList,
  COMPILED_LIST_VERSION,
  CompiledListError,
  coverNames,
  isCompiledList,
  openCompiledList,
  unionMatchers,
} from "../../shared/policy/compiled-list.ts";
import { createSuffixSet } from "../../shared/policy/suffix-set.ts";
import { listNames } from "../support/list-names.ts";

/** Labels from a small alphabet, so lists and names overlap often. */
const label = fc.constantFrom("a", "b", "ads", "cdn", "x-1", "track", "www", "com", "net");
const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join("."));

/** Names shaped like real lists, 50 parents so suffixes repeat. */
const realisticNames = (count: number, seed: number) => listNames(count, seed, 50);

describe("compiled block list", () => {
  it("matches exactly what the plain suffix set matches (fast-check)", () => {
    fc.assert(
      fc.property(
        fc.array(name, { maxLength: 40 }),
        fc.array(name, { maxLength: 40 }),
        (listed, asked) => {
          const set = createSuffixSet(listed);
          const compiled = openCompiledList(buildCompiledList(listed).bytes);
          for (const q of [...listed, ...asked]) {
            expect(compiled.matches(q)).toBe(set.matches(q));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("lists every name of 20,000, and none of 100,000 others (false positives ~2^-32 per suffix)", () => {
    const listed = realisticNames(20_000, 1);
    const compiled = openCompiledList(buildCompiledList(listed).bytes);
    expect(listed.every((n) => compiled.matches(n))).toBe(true);
    expect(listed.every((n) => compiled.matches(`deeper.${n}`))).toBe(true);
    const set = createSuffixSet(listed);
    const others = realisticNames(100_000, 2).filter((n) => !set.matches(n));
    expect(others.length).toBeGreaterThan(99_000);
    expect(others.filter((n) => compiled.matches(n))).toEqual([]);
  });

  it("ignores case and a trailing dot; an empty list matches nothing", () => {
    const compiled = openCompiledList(buildCompiledList(["Ads.Example"]).bytes);
    expect(compiled.matches("x.ADS.example.")).toBe(true);
    expect(compiled.matches("example")).toBe(false);
    const empty = openCompiledList(buildCompiledList([]).bytes);
    expect([empty.size, empty.matches("a.b")]).toEqual([0, false]);
  });

  it("takes under 5 bytes per name, and drops duplicates and names under a listed parent", () => {
    const listed = realisticNames(50_000, 3);
    const base = coverNames(listed).stats;
    const { bytes, stats } = buildCompiledList([
      ...listed,
      ...listed.slice(0, 10),
      `x.${listed[0]}`,
    ]);
    expect(stats).toEqual({
      names: base.names,
      duplicates: base.duplicates + 10,
      covered: base.covered + 1,
    });
    expect(bytes.length / stats.names).toBeLessThan(5);
    expect(coverNames(["a.b", "b", "c.d", "C.D."]).names).toEqual(["b", "c.d"]);
  });

  it("reads bytes in place at any offset", () => {
    const { bytes } = buildCompiledList(["ads.example"]);
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    expect(openCompiledList(shifted.subarray(1)).matches("ads.example")).toBe(true);
  });

  it("refuses a truncated, corrupt, extended or wrong-version file with one line", () => {
    const { bytes } = buildCompiledList(realisticNames(100, 4));
    const refusal = (mutate: (b: Uint8Array) => Uint8Array) => {
      try {
        openCompiledList(mutate(bytes.slice()));
        return "accepted";
      } catch (error) {
        expect(error).toBeInstanceOf(CompiledListError);
        return (error as Error).message;
      }
    };
    expect(refusal((b) => b.subarray(0, b.length - 4))).toMatch(/^compiled block list: truncated/);
    expect(refusal((b) => b.subarray(0, 20))).toMatch(/^compiled block list: truncated/);
    expect(
      refusal((b) => {
        b[100]! ^= 0x10;
        return b;
      }),
    ).toBe("compiled block list: checksum mismatch (the file is corrupt)");
    expect(
      refusal((b) => {
        b[12]! ^= 1; // the name count
        return b;
      }),
    ).toMatch(/checksum mismatch|does not describe/);
    expect(
      refusal((b) => {
        new DataView(b.buffer).setUint32(8, COMPILED_LIST_VERSION + 1, true);
        return b;
      }),
    ).toBe(
      `compiled block list: format version ${COMPILED_LIST_VERSION + 1}; this build reads version ${COMPILED_LIST_VERSION}`,
    );
    const extended = new Uint8Array(bytes.length + 8);
    extended.set(bytes);
    expect(refusal(() => extended)).toMatch(/8 bytes past the end/);
    for (const message of ["truncated", "corrupt"]) expect(message).not.toContain("\n");
  });

  it("is told from a text list by its magic bytes", () => {
    expect(isCompiledList(buildCompiledList(["a.b"]).bytes)).toBe(true);
    expect(isCompiledList(new TextEncoder().encode("0.0.0.0 ads.example\n"))).toBe(false);
  });

  it("joins with text lists: a name listed by either is listed", () => {
    const union = unionMatchers([
      createSuffixSet(["text.example"]),
      openCompiledList(buildCompiledList(["compiled.example"]).bytes),
    ]);
    expect([union.matches("a.text.example"), union.matches("compiled.example")]).toEqual([
      true,
      true,
    ]);
    expect([union.matches("other.example"), union.size]).toEqual([false, 2]);
  });
});
