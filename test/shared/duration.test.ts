import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DurationError, formatDuration, parseDuration } from "../../shared/config/duration.ts";

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["2s", 2000],
    ["1m", 60_000],
    ["1m30s", 90_000],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
    ["0s", 0],
    ["1.5h", 5_400_000],
    [".5s", 500],
    ["1h1m1s1ms", 3_661_001],
    ["2d12h", 216_000_000],
  ])("reads %s as %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ["5", 'invalid duration "5": a number needs a unit (ms, s, m, h, d), e.g. "5s" or "5ms"'],
    ["0", 'invalid duration "0": a number needs a unit (ms, s, m, h, d), e.g. "0s" or "0ms"'],
    ["-1s", 'invalid duration "-1s": negative durations are not allowed'],
    ["1x", 'invalid duration "1x": unknown unit "x" (use ms, s, m, h, d)'],
    ["5us", 'invalid duration "5us": unknown unit "us" (use ms, s, m, h, d)'],
    ["1.2.3s", 'invalid duration "1.2.3s": malformed number "1.2.3"'],
    ["1s5", 'invalid duration "1s5": "5" at the end needs a unit (ms, s, m, h, d)'],
    ["0.5ms", 'invalid duration "0.5ms": finer than a millisecond'],
    ["", 'invalid duration "": empty; write a number and a unit (ms, s, m, h, d), e.g. "5s"'],
  ])("rejects %j with a message saying why", (text, message) => {
    expect(() => parseDuration(text)).toThrow(new DurationError(message));
  });

  it.each(["s", "5 s", " 5s", "abc", "5s ", "+5s", "1e3s", "5mss", "1s-1s"])(
    "rejects junk %j",
    (text) => {
      expect(() => parseDuration(text)).toThrow(DurationError);
    },
  );

  it("rejects durations beyond the safe integer range", () => {
    expect(() => parseDuration("999999999999999d")).toThrow(/too large/);
  });

  it("carries a stable error code", () => {
    try {
      parseDuration("soon");
      expect.unreachable();
    } catch (error) {
      expect((error as DurationError).code).toBe("bad_duration");
    }
  });

  it("returns a whole non-negative number or throws DurationError, for any input", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.stringMatching(/^[0-9.]{0,6}(ms|s|m|h|d|x)?[0-9.]{0,3}(ms|s|m|h|d)?$/),
        ),
        (text) => {
          try {
            const ms = parseDuration(text);
            expect(Number.isSafeInteger(ms) && ms >= 0).toBe(true);
          } catch (error) {
            expect(error).toBeInstanceOf(DurationError);
          }
        },
      ),
    );
  });
});

describe("formatDuration", () => {
  it.each([
    [0, "0s"],
    [500, "500ms"],
    [90_000, "1m30s"],
    [86_400_000, "1d"],
    [86_400_001, "1d1ms"],
    [3_723_004, "1h2m3s4ms"],
  ])("prints %d ms as %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("round-trips through parseDuration", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
    );
  });

  it("refuses negative and fractional values", () => {
    expect(() => formatDuration(-1)).toThrow(DurationError);
    expect(() => formatDuration(1.5)).toThrow(DurationError);
  });
});
