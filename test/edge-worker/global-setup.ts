// Real servers for the worker tests (which run inside workerd): two nsd
// instances serving the same zones with different data (so a test can see
// which upstream answered), unbound in front of one of them (plain and DoT,
// with a certificate from the test CA workerd trusts), and the suite's own
// HTTP/1.1 DoH server in front of both (and of a server that answers
// "<ms>.<name>" after <ms> milliseconds, at /slow/dns-query), a DoQ server in
// front of unbound, and
// the relay itself (a child process) with only its origin endpoint, for `via`
// upstreams.

import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { startDelayDnsServer } from "../support/delay-dns-server.ts";
import {
  createTestCertificates,
  freePort,
  type RunningServer,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { startDohTestServer } from "../support/doh-test-server.ts";
import { startDoqServer } from "../support/doq-server.ts";
import { startFaultServer } from "../support/fault-server.ts";
import { startProcess, untilReady, waitForTcp } from "../support/processes.ts";

const RELAY_BIN = fileURLToPath(new URL("../../relay/bin/doh-relay.mjs", import.meta.url));

/**
 * `doh-relay` with only listen.origin on a free loopback port, RELAY_TOKEN in
 * its environment, and the given upstreams (name → URL, or → URL and other keys).
 */
async function startRelayProcess(
  token: string,
  upstreams: Record<string, string | { url: string; [key: string]: string }>,
): Promise<RunningServer & { metricsPort: number }> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-relay-"));
  const port = await freePort();
  const metricsPort = await freePort();
  const config = join(dir, "relay.yaml");
  await writeFile(
    config,
    `listen:
  origin: { addr: "127.0.0.1:${port}", token_env: RELAY_TOKEN }
  metrics: "127.0.0.1:${metricsPort}"
upstreams:
${Object.entries(upstreams)
  // JSON is YAML.
  .map(
    ([name, u]) => `  - ${JSON.stringify({ name, ...(typeof u === "string" ? { url: u } : u) })}\n`,
  )
  .join("")}log: { level: warn }
`,
  );
  // env(1) execs node, so SIGTERM reaches the relay itself.
  const proc = startProcess("doh-relay", "env", [
    `RELAY_TOKEN=${token}`,
    process.execPath,
    RELAY_BIN,
    "--config",
    config,
  ]);
  const removeDir = () => rm(dir, { recursive: true, force: true });
  await untilReady(proc, () => waitForTcp(proc, port), removeDir);
  return {
    port,
    metricsPort,
    pid: proc.child.pid,
    async stop() {
      await proc.stop();
      await removeDir();
    },
  };
}

const zone = (origin: string, body: string) => `$ORIGIN ${origin}
$TTL 300
@ IN SOA ns1.${origin} admin.${origin} 1 3600 600 86400 45
@ IN NS ns1.${origin}
ns1 IN A 127.0.0.1
${body}
`;

function zonesFor(address: string) {
  return {
    "example.test.": zone(
      "example.test.",
      `www IN A ${address}
www IN AAAA 2001:db8::${address.split(".").pop()}
alias 60 IN CNAME mid
mid 90 IN CNAME www`,
    ),
    "corp.test.": zone("corp.test.", `www IN A ${address}\npublic IN A ${address}`),
  };
}

/** TLS on a free loopback port, each connection piped to `backendPort`'s TCP side. */
async function startTlsFront(certs: TestCertificates, backendPort: number): Promise<RunningServer> {
  const [cert, key] = await Promise.all([
    readFile(certs.certFile, "utf8"),
    readFile(certs.keyFile, "utf8"),
  ]);
  const server = createTlsServer({ cert, key }, (client) => {
    const backend = netConnect(backendPort, "127.0.0.1");
    client.pipe(backend).pipe(client);
    client.on("error", () => backend.destroy());
    backend.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export default async function setup(project: TestProject) {
  const started: RunningServer[] = [];
  try {
    const nsdA = await startNsd({ zones: zonesFor("192.0.2.1") });
    started.push(nsdA);
    const nsdB = await startNsd({ zones: zonesFor("192.0.2.2") });
    started.push(nsdB);
    const certs = await createTestCertificates({ workerdCa: true });
    const unbound = await startUnbound({
      stubs: { "example.test.": nsdA.port, "corp.test.": nsdA.port },
      tls: certs,
    });
    started.push(unbound);
    const slow = await startDelayDnsServer();
    started.push(slow);
    const doh = await startDohTestServer({
      a: unbound.port,
      b: nsdB.port,
      origin: nsdB.port,
      slow: slow.port,
    });
    started.push(doh);
    project.provide("dohPort", doh.port);
    // DoT in front of the delay server's TCP side, for the Upstream contract.
    const delayTls = await startTlsFront(certs, slow.port);
    started.push(delayTls);
    project.provide("delayTlsPort", delayTls.port);
    project.provide("unboundTlsPort", unbound.tlsPort!);
    project.provide("closedPort", await freePort());
    // DoT with a certificate from a CA nothing trusts (a throwaway one).
    const untrustedCerts = await createTestCertificates();
    const untrusted = await startFaultServer(untrustedCerts);
    started.push({
      port: untrusted.port,
      stop: async () => {
        await untrusted.stop();
        await rm(untrustedCerts.dir, { recursive: true, force: true });
      },
    });
    project.provide("untrustedTlsPort", untrusted.tlsPort);
    const doq = await startDoqServer({
      cert: await readFile(certs.certFile, "utf8"),
      key: await readFile(certs.keyFile, "utf8"),
      backendPort: unbound.port,
    });
    started.push(doq);
    const relayToken = randomBytes(18).toString("base64url");
    const relay = await startRelayProcess(relayToken, {
      "lan-udp": `udp://127.0.0.1:${unbound.port}`,
      "lan-tcp": `tcp://127.0.0.1:${unbound.port}`,
      "lan-doq": {
        url: `quic://127.0.0.1:${doq.port}`,
        ca: certs.caFile,
        tls_servername: "dns.test",
      },
      "lan-down": `tcp://127.0.0.1:${await freePort()}`,
    });
    started.push(relay);
    project.provide("relayOriginPort", relay.port);
    project.provide("relayToken", relayToken);
    project.provide("relayMetricsPort", relay.metricsPort);
    return async () => {
      for (const s of started.reverse()) await s.stop();
      await rm(certs.dir, { recursive: true, force: true });
    };
  } catch (error) {
    for (const s of started.reverse()) await s.stop();
    throw error;
  }
}
