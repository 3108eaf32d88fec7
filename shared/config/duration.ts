// Go-style durations for config values: "500ms", "2s", "1m30s", "1.5h", "1d".
// A sequence of decimal numbers, each with an optional fraction and a unit;
// the parts add up. Always a unit, never negative, whole milliseconds.

import { DohEdgeError } from "../errors.ts";

export class DurationError extends DohEdgeError {
  override readonly name = "DurationError";
  readonly code = "bad_duration";
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;
const UNITS_TEXT = "ms, s, m, h, d";
const PART = /^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)/;

/** Parses a duration string to whole milliseconds. Throws DurationError. */
export function parseDuration(text: string): number {
  const fail = (why: string) =>
    new DurationError(`invalid duration ${JSON.stringify(text)}: ${why}`);
  if (typeof text !== "string") {
    throw new DurationError(`invalid duration: expected a string such as "5s", got ${typeof text}`);
  }
  if (text === "") throw fail(`empty; write a number and a unit (${UNITS_TEXT}), e.g. "5s"`);
  if (text.startsWith("-")) throw fail("negative durations are not allowed");
  if (/^[\d.]+$/.test(text)) {
    throw fail(`a number needs a unit (${UNITS_TEXT}), e.g. "${text}s" or "${text}ms"`);
  }
  let rest = text;
  let total = 0;
  while (rest.length > 0) {
    const m = PART.exec(rest);
    if (!m) {
      const number = /^[\d.]*/.exec(rest)![0];
      if (number !== "" && !/^(\d+(\.\d*)?|\.\d+)$/.test(number)) {
        throw fail(`malformed number "${number}"`);
      }
      const unit = /^[\d.]+([a-zA-Zµ]+)/.exec(rest)?.[1];
      if (unit !== undefined) throw fail(`unknown unit "${unit}" (use ${UNITS_TEXT})`);
      if (/^[\d.]+$/.test(rest)) throw fail(`"${rest}" at the end needs a unit (${UNITS_TEXT})`);
      throw fail(`unexpected "${rest}" (write e.g. "1m30s" with units ${UNITS_TEXT})`);
    }
    // The alternation lists "ms" before "m", so "5ms" is never read as "5m" + "s".
    total += Number(m[1]) * UNIT_MS[m[2] as Unit];
    rest = rest.slice(m[0].length);
  }
  // Fractions like "1.5s" are exact in decimal but not in binary floating
  // point: tolerate representation noise, then insist on whole ms.
  const rounded = Math.round(total);
  if (!Number.isFinite(total) || rounded > Number.MAX_SAFE_INTEGER) throw fail("too large");
  if (Math.abs(total - rounded) > 1e-9 * Math.max(1, total)) {
    throw fail("finer than a millisecond");
  }
  return rounded;
}

/**
 * Formats milliseconds as the shortest canonical duration string
 * ("1m30s", "500ms", "1d2h", "0s"); parseDuration(formatDuration(n)) === n.
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new DurationError(
      `cannot format ${ms} as a duration: not a whole, non-negative ms count`,
    );
  }
  if (ms === 0) return "0s";
  let rest = ms;
  let out = "";
  for (const unit of ["d", "h", "m", "s", "ms"] as const) {
    const size = UNIT_MS[unit];
    const count = Math.floor(rest / size);
    if (count > 0) {
      out += `${count}${unit}`;
      rest -= count * size;
    }
  }
  return out;
}
