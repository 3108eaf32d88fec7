// The worker's bundled policy module (edge-worker/policy/handle.ts) and the
// hook that runs it, inside workerd.

import { describe, expect, it } from "vitest";
import handle from "../../edge-worker/policy/handle.ts";
import { createModuleHook } from "../../edge-worker/src/policy-module.ts";

describe("worker policy module", () => {
  it("ships a module that forwards everything", async () => {
    expect(await createModuleHook(handle).decide("example.org.", 1)).toEqual({ action: "pass" });
  });

  it("maps a module's BalanceDNS answers to decisions, with the question it was given", async () => {
    const seen: unknown[] = [];
    const hook = createModuleHook((q) => {
      seen.push(q);
      if (q.domain.endsWith(".ads.test.")) return { action: "BLOCK" };
      if (q.type === "AAAA") return { action: "LOCAL_DATA", local_data: { ips: ["fd00::1"] } };
      return { action: "REWRITE", rewrite_domain: "other.test." };
    });
    expect(await hook.decide("x.ads.test.", 1)).toMatchObject({ action: "block" });
    expect(await hook.decide("a.test.", 28)).toMatchObject({
      action: "local_data",
      ips: ["fd00::1"],
    });
    expect(await hook.decide("a.test.", 1)).toMatchObject({
      action: "rewrite",
      name: "other.test.",
    });
    expect(seen[1]).toEqual({ domain: "a.test.", type: "AAAA", qtype: 28 });
  });

  it("lets the query through when the module throws, answers garbage or is too slow", async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    const throws = createModuleHook(
      () => {
        throw new Error("bug");
      },
      50,
      onError,
    );
    const garbage = createModuleHook(() => ({ action: "NUKE" }), 50, onError);
    const slow = createModuleHook(
      () => new Promise((resolve) => setTimeout(() => resolve({ action: "BLOCK" }), 300)),
      50,
      onError,
    );
    const started = Date.now();
    for (const hook of [throws, garbage, slow]) {
      expect(await hook.decide("a.test.", 1)).toEqual({ action: "pass" });
    }
    expect(Date.now() - started).toBeLessThan(250);
    expect(errors).toHaveLength(3);
  });
});
