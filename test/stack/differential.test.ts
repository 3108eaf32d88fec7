// Issue 15: the same seeded queries through every relay listener (UDP, TCP,
// DoT, DoH) and both worker methods (under wrangler dev, via the relay's
// origin endpoint), and straight to unbound, compared field by field. The
// bounded run; `npm run differential` runs a longer one with a report.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DifferentialStack,
  runDifferential,
  startDifferentialStack,
} from "../support/differential.ts";

let stack: DifferentialStack;

beforeAll(async () => {
  stack = await startDifferentialStack({ worker: true });
}, 90_000);

afterAll(async () => {
  await stack?.stop();
});

describe("differential: through us and straight to unbound", () => {
  it("agrees on every field for 240 mixed queries, in concurrent rounds of 12", async () => {
    const result = await runDifferential(stack, { seed: 15, count: 240, batch: 12 });
    expect(result.sent).toBe(240 * stack.paths.length);
    expect(result.mismatches.slice(0, 40)).toEqual([]);
  }, 120_000);
});
