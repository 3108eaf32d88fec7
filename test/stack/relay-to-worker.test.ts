// The whole chain on loopback: dig → relay (UDP/TCP) → edge worker under
// `wrangler dev` (workerd) → DoH server → real nsd. It also proves the deploy
// bundle builds (`wrangler deploy --dry-run`).

import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { WRANGLER_ENV } from "../../scripts/stack.ts";
import { portOf, startTestRelay, ZONE } from "../relay/relay-harness.ts";
import { type RunningServer, startNsd } from "../support/dns-servers.ts";
import { type DohTestServer, startDohTestServer } from "../support/doh-test-server.ts";
import { startWranglerDev, type WranglerDev } from "../support/wrangler-dev.ts";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;

let outdir: string;
let nsd: RunningServer;
let doh: DohTestServer;
let wrangler: WranglerDev | undefined;
let workerUrl: URL;
let relay: Relay;

beforeAll(async () => {
  outdir = await mkdtemp(join(tmpdir(), "doh-edge-bundle-"));
  await run(
    process.execPath,
    [
      join(root, "node_modules/wrangler/bin/wrangler.js"),
      "deploy",
      "--dry-run",
      "--outdir",
      outdir,
    ],
    { cwd: root, env: { ...process.env, ...WRANGLER_ENV, CI: "true" } },
  );
  nsd = await startNsd({ zones: { "relay.test.": ZONE } });
  doh = await startDohTestServer({ a: nsd.port });
  const config = {
    upstreams: [{ name: "origin", url: `http://127.0.0.1:${doh.port}/a/dns-query` }],
    routes: [{ zones: ["."], upstreams: ["origin"], timeout: "2s" }],
  };
  // What users run: wrangler dev with the config given as a --var.
  wrangler = await startWranglerDev({ DOH_CONFIG: JSON.stringify(config) }, 45_000);
  workerUrl = wrangler.url;
  relay = await startTestRelay({
    listen: { udp: "127.0.0.1:5353", tcp: "127.0.0.1:5353" },
    upstreams: [{ name: "edge", url: new URL("/dns-query", workerUrl).href }],
  });
}, 60_000);

afterAll(async () => {
  await relay?.shutdown(1000);
  await wrangler?.stop();
  await doh?.stop();
  await nsd?.stop();
  await rm(outdir, { recursive: true, force: true });
});

const dig = async (...args: string[]) =>
  (await run("dig", ["@127.0.0.1", "+tries=1", "+time=3", ...args])).stdout;

describe("relay → edge worker → real upstream", () => {
  it("builds a deployable bundle with wrangler", async () => {
    expect(await readdir(outdir)).toContain("index.js");
  });

  it("answers dig over UDP and TCP through the whole chain", async () => {
    const udp = portOf(relay, "udp");
    const tcp = portOf(relay, "tcp");
    expect(await dig("-p", String(udp), "+short", "www.relay.test", "A")).toBe("192.0.2.10\n");
    expect(await dig("-p", String(tcp), "+tcp", "+short", "www.relay.test", "AAAA")).toBe(
      "2001:db8::10\n",
    );
    const nx = await dig("-p", String(udp), "nope.relay.test", "A");
    expect(nx).toMatch(/status: NXDOMAIN/);
    // The worker really was on the path: the DoH server saw its requests.
    expect(doh.requests.filter((r) => r.path === "/a/dns-query").length).toBeGreaterThanOrEqual(3);
  });

  it("serves the JSON API from the same bundle", async () => {
    const response = await fetch(new URL("/resolve?name=www.relay.test&type=A", workerUrl));
    const body = (await response.json()) as { Answer: { data: string }[] };
    expect(body.Answer.map((a) => a.data)).toEqual(["192.0.2.10"]);
  });
});
