import { describe, expect, it } from "vitest";
import { createLogThrottle } from "../../shared/resolver/log-throttle.ts";

describe("log throttle", () => {
  it("lets one occurrence through per interval and counts the skipped ones", () => {
    let now = 0;
    const throttle = createLogThrottle(10_000, () => now);
    expect(throttle.take()).toEqual({ suppressed: 0 });
    now = 5000;
    expect(throttle.take()).toBeUndefined();
    expect(throttle.take()).toBeUndefined();
    now = 10_000;
    expect(throttle.take()).toEqual({ suppressed: 2 });
    now = 10_001;
    expect(throttle.take()).toBeUndefined();
    now = 30_000;
    expect(throttle.take()).toEqual({ suppressed: 1 });
  });
});
