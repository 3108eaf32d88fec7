// The worker tests' static assets stay what their README says they are.

import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { buildCompiledList } from "../../shared/policy/compiled-list.ts";

describe("test/fixtures/worker-assets", () => {
  it("holds the compiled list of asset-blocked.example.test, as the builder writes it today", async () => {
    const file = new URL("../fixtures/worker-assets/lists/blocked.bin", import.meta.url);
    const committed = new Uint8Array(await readFile(file));
    expect(committed).toEqual(buildCompiledList(["asset-blocked.example.test"]).bytes);
  });
});
