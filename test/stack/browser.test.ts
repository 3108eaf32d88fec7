// A real browser resolving through the relay: headless Chromium (Debian's
// `chromium`) in secure-DNS mode with the relay's DoH listener as its only
// resolver loads a page whose name only the test zone knows. Runs in a network
// namespace of its own (loopback only: nothing Chromium tries can leave the
// machine) with a private /etc/chromium for the policy file. See
// browser-driver.ts for the setup.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
const driver = fileURLToPath(new URL("./browser-driver.ts", import.meta.url));

describe("Chromium with the relay as its DoH resolver", () => {
  it("loads a page by a name only the test zone knows, and the lookup shows in /metrics", async () => {
    const script = [
      "set -e",
      "ip link set lo up",
      "mkdir -p /etc/chromium",
      "mount -t tmpfs tmpfs /etc/chromium",
      `exec "${process.execPath}" "${driver}"`,
    ].join("\n");
    const { stdout } = await run("unshare", ["--net", "--mount", "--", "bash", "-c", script], {
      cwd: root,
      timeout: 100_000,
      maxBuffer: 8 * 1024 * 1024,
    });
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
