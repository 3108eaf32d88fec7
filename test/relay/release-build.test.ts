// The release build (issue 17): `npm run build:relay` writes one file that
// runs under the machine's own Node (not the npm-bundled one) with no
// node_modules anywhere above it, answers queries, stays small when idle,
// and says in one line when a quic:// or h3:// upstream lacks its optional addon. The
// systemd unit that runs it passes `systemd-analyze verify` where that exists.

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRelay } from "../../scripts/build-relay.ts";
import { freePort, type RunningServer, startNsd } from "../support/dns-servers.ts";
import { startProcess, waitForDns } from "../support/processes.ts";
import { exampleConfigOnLoopback, idleRssKb, machineNode } from "../support/release-relay.ts";
import { ZONE } from "./relay-harness.ts";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;

let dir: string;
let bundle: string;
let nsd: RunningServer;
const node = machineNode().path;

beforeAll(async () => {
  // A folder with no node_modules above it.
  dir = await mkdtemp(join(tmpdir(), "doh-relay-release-"));
  bundle = join(dir, "doh-relay.mjs");
  await buildRelay(join(dir, "build", "doh-relay.mjs"));
  await copyFile(join(dir, "build", "doh-relay.mjs"), bundle);
  nsd = await startNsd({ zones: { "relay.test.": ZONE } });
}, 60_000);

afterAll(async () => {
  await nsd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe("release build (dist/doh-relay.mjs)", () => {
  it("runs under the machine's own Node with no node_modules", async () => {
    const { stdout } = await run(node, [bundle, "--version"], { cwd: dir });
    const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8"));
    expect(stdout.trim()).toBe(pkg.version);
    const major = Number((await run(node, ["--version"])).stdout.slice(1).split(".")[0]);
    expect(major).toBeGreaterThanOrEqual(20);
  });

  it("answers dig through a udp:// upstream, and idles at most 60 MB RSS with the example config", async () => {
    const port = await freePort();
    const config = await writeConfig(
      "relay.yaml",
      `listen: { udp: 127.0.0.1:${port}, tcp: 127.0.0.1:${port} }\nupstreams: [{ name: nsd, url: "udp://127.0.0.1:${nsd.port}" }]\n`,
    );
    const relay = startProcess("release relay", node, [bundle, "--config", config]);
    try {
      await waitForDns(relay, port, "www.relay.test");
      const { stdout } = await run("dig", [
        "@127.0.0.1",
        "-p",
        String(port),
        "+short",
        "www.relay.test",
      ]);
      expect(stdout.trim()).toBe("192.0.2.10");
    } finally {
      await relay.stop();
    }

    const example = await exampleConfigOnLoopback(join(dir, "example.yaml"));
    expect(await idleRssKb(node, bundle, example)).toBeLessThanOrEqual(60 * 1024);
  }, 30_000);

  it("refuses a quic:// upstream without @matrixai/quic in one line", async () => {
    const config = await writeConfig(
      "quic.yaml",
      `upstreams: [{ name: doq, url: "quic://127.0.0.1:853" }]\n`,
    );
    const result = await run(node, [bundle, "--check", "--config", config], { cwd: dir }).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(
      /^upstreams\[0\]\.url: quic:\/\/ needs the optional package @matrixai\/quic/,
    );
  });

  it("refuses an h3:// upstream without @matrixai/quic in one line", async () => {
    const config = await writeConfig(
      "h3.yaml",
      `upstreams: [{ name: udp, url: "127.0.0.1" }, { name: doh3, url: "h3://127.0.0.1/dns-query" }]\n`,
    );
    const result = await run(node, [bundle, "--check", "--config", config], { cwd: dir }).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(
      /^upstreams\[1\]\.url: h3:\/\/ needs the optional package @matrixai\/quic .* or use https:\/\/ instead$/m,
    );
  });

  it("ships a systemd unit that runs the release file and passes systemd-analyze verify", async () => {
    const unit = await readFile(join(root, "relay/doh-relay.service"), "utf8");
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/doh-edge\/doh-relay\.mjs /m);
    expect(unit).toMatch(/^RestrictAddressFamilies=.*AF_NETLINK/m);
    expect(unit).not.toMatch(/^Environment=.*TOKEN/m);
    const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find(existsSync);
    if (!analyze) return; // no systemd tools on this machine: the checks above still hold
    const { stderr } = await run(analyze, ["verify", join(root, "relay/doh-relay.service")]);
    expect(stderr).toBe("");
  });
});
