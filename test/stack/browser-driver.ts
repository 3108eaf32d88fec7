// Run by browser.test.ts inside a fresh network and mount namespace (only
// loopback exists; /etc/chromium is a private tmpfs). Starts nsd with a zone
// only this test knows, the relay with a TLS DoH listener in front of it, and
// a page server; points headless Chromium at the relay as its only resolver
// (secure DNS mode, by managed policy) with the test CA in the profile's NSS
// store; loads the page by name. Prints one JSON line: the DOM Chromium saw
// and the relay's DoH query counters.

import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { portOf, startTestRelay } from "../relay/relay-harness.ts";
import { createTestCertificates, startNsd } from "../support/dns-servers.ts";

const run = promisify(execFile);
const POLICY_DIR = "/etc/chromium/policies/managed";

const ZONE = `$ORIGIN browser.test.
$TTL 60
@   IN SOA ns.browser.test. admin.browser.test. 1 3600 600 86400 60
@   IN NS  ns.browser.test.
ns  IN A   127.0.0.1
www IN A   127.0.0.1
`;

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-browser-"));
  const certs = await createTestCertificates();
  const nsd = await startNsd({ zones: { "browser.test.": ZONE } });
  const relay = await startTestRelay({
    listen: {
      doh: { addr: "127.0.0.1:443", cert: certs.certFile, key: certs.keyFile },
      metrics: "127.0.0.1:9153",
    },
    upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
  });
  const page = createServer((request, response) => {
    response.setHeader("content-type", "text/html");
    response.end(
      `<html><body><p id="marker">doh-edge page for ${request.headers.host}</p></body></html>`,
    );
  });
  await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
  const pagePort = (page.address() as { port: number }).port;
  try {
    const home = join(dir, "home");
    const nssdb = `sql:${join(home, ".pki", "nssdb")}`;
    await mkdir(join(home, ".pki", "nssdb"), { recursive: true });
    await run("certutil", ["-N", "-d", nssdb, "--empty-password"]);
    await run("certutil", [
      "-A",
      "-d",
      nssdb,
      "-n",
      "doh-edge test CA",
      "-t",
      "C,,",
      "-i",
      certs.caFile,
    ]);
    await mkdir(POLICY_DIR, { recursive: true });
    await writeFile(
      join(POLICY_DIR, "doh-edge-test.json"),
      JSON.stringify({
        DnsOverHttpsMode: "secure",
        DnsOverHttpsTemplates: `https://127.0.0.1:${portOf(relay, "doh")}/dns-query`,
      }),
    );
    const { stdout } = await run(
      "chromium",
      [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        `--user-data-dir=${join(dir, "profile")}`,
        "--dump-dom",
        `http://www.browser.test:${pagePort}/`,
      ],
      { timeout: 60_000, env: { ...process.env, HOME: home }, maxBuffer: 4 * 1024 * 1024 },
    );
    const metrics = await (await fetch(`http://127.0.0.1:${relay.opsPort}/metrics`)).text();
    const doh = metrics
      .split("\n")
      .filter((l) => l.startsWith('doh_relay_queries_total{protocol="doh"'));
    process.stdout.write(`${JSON.stringify({ dom: stdout, doh })}\n`);
  } finally {
    await relay.shutdown(500);
    await nsd.stop();
    await new Promise((resolve) => page.close(resolve));
    await rm(dir, { recursive: true, force: true });
    await rm(certs.dir, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  process.stderr.write(`browser-driver: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
