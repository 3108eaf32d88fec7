// A real browser resolving through the relay: headless Chromium (Debian's
// `chromium`) in secure-DNS mode with the relay's DoH listener as its only
// resolver loads a page whose name only the test zone knows. Runs in a network
// namespace of its own (loopback only: nothing Chromium tries can leave the
// machine) with a private /etc/chromium for the policy file. See
// browser-driver.ts for the setup.

import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runInNetns } from "./netns.ts";

const driver = fileURLToPath(new URL("./browser-driver.ts", import.meta.url));

describe("Chromium with the relay as its DoH resolver", () => {
  it("loads a page by a name only the test zone knows, and the lookup shows in /metrics", async () => {
    const stdout = await runInNetns(
      `set -e\nmkdir -p /etc/chromium\nmount -t tmpfs tmpfs /etc/chromium\nexec "${process.execPath}" "${driver}"`,
      { mount: true, timeoutMs: 100_000 },
    );
    const result = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as {
      dom: string;
      doh: string[];
    };
    expect(result.dom).toMatch(/<p id="marker">doh-edge page for www\.browser\.test:\d+<\/p>/);
    const answered = result.doh
      .filter((line) => line.includes('rcode="NOERROR"'))
      .map((line) => Number(line.split(" ").pop()));
    expect(answered.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  }, 120_000);
});
