// `npm run demo`: the whole stack answering from a local origin, so it works
// without internet access:
//
//   dig → relay :5053 → worker (wrangler dev :8787) → relay origin endpoint :8853
//       → relay's pooled connection → origin (unbound over DoT → nsd, when
//         installed; else a built-in zone server over TCP) → demo.test data
//
// Everything runs on 127.0.0.1 and stops on Ctrl-C; temp files are removed.

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createTestCertificates,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../test/support/dns-servers.ts";
import { startZoneServer, type ZoneRecord } from "./demo-zone.ts";
import { type Component, relayComponent, runStack, workerComponent } from "./stack.ts";

export const DEMO_ZONE_NAME = "demo.test.";

export const DEMO_RECORDS: ZoneRecord[] = [
  { name: "demo.test", type: "A", data: "192.0.2.1" },
  { name: "www.demo.test", type: "A", data: "192.0.2.80" },
  { name: "www.demo.test", type: "AAAA", data: "2001:db8::80" },
  { name: "hello.demo.test", type: "TXT", data: "hello from the doh-edge demo origin" },
  { name: "alias.demo.test", type: "CNAME", data: "www.demo.test" },
];

function zoneFile(): string {
  const lines = [
    `$ORIGIN ${DEMO_ZONE_NAME}`,
    "$TTL 60",
    "@ IN SOA ns.demo.test. admin.demo.test. 1 3600 600 86400 60",
    "@ IN NS ns.demo.test.",
    "ns IN A 127.0.0.1",
  ];
  for (const r of DEMO_RECORDS) {
    const data = r.type === "TXT" ? `"${r.data}"` : r.type === "CNAME" ? `${r.data}.` : r.data;
    lines.push(`${r.name}. IN ${r.type} ${data}`);
  }
  return `${lines.join("\n")}\n`;
}

function installed(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" }).status === 0;
}

interface Origin {
  upstream: Record<string, unknown>;
  description: string;
  stop(): Promise<void>;
}

async function startOrigin(certs: TestCertificates): Promise<Origin> {
  if (installed("nsd") && installed("unbound")) {
    const nsd = await startNsd({ zones: { [DEMO_ZONE_NAME]: zoneFile() } });
    const unbound = await startUnbound({ stubs: { [DEMO_ZONE_NAME]: nsd.port }, tls: certs });
    return {
      upstream: {
        name: "origin",
        url: `tls://127.0.0.1:${unbound.tlsPort}`,
        tls_servername: "dns.test",
        ca: certs.caFile,
      },
      description: `unbound over DoT (127.0.0.1:${unbound.tlsPort}, throwaway CA) in front of nsd`,
      async stop() {
        await unbound.stop();
        await nsd.stop();
      },
    };
  }
  const zone = await startZoneServer(DEMO_ZONE_NAME, DEMO_RECORDS);
  return {
    upstream: { name: "origin", url: `tcp://127.0.0.1:${zone.port}` },
    description: `the built-in zone server over TCP (127.0.0.1:${zone.port}); install nsd and unbound for a DoT origin`,
    stop: () => zone.stop(),
  };
}

export async function runDemo(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-demo-"));
  const certs = await createTestCertificates();
  const cleanup = async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(certs.dir, { recursive: true, force: true });
  };
  const origin = await startOrigin(certs).catch(async (error) => {
    await cleanup();
    throw error;
  });
  const token = randomBytes(24).toString("base64url");
  const relayConfig = {
    listen: {
      udp: "127.0.0.1:5053",
      tcp: "127.0.0.1:5053",
      metrics: "127.0.0.1:9153",
      origin: { addr: "127.0.0.1:8853", token_env: "DEMO_RELAY_TOKEN" },
      doh: { addr: "127.0.0.1:8443", cert: certs.certFile, key: certs.keyFile },
    },
    upstreams: [{ name: "worker", url: "http://127.0.0.1:8787/dns-query" }, origin.upstream],
    routes: [{ zones: ["."], upstreams: ["worker"], timeout: "5s" }],
  };
  const relayFile = join(dir, "relay.yaml");
  await writeFile(relayFile, JSON.stringify(relayConfig, null, 2)); // JSON is YAML
  const workerConfig = {
    relays: [{ name: "lan", url: "http://127.0.0.1:8853/" }],
    upstreams: [
      { name: "origin", url: String(origin.upstream.url), via: "lan" },
      { name: "cloudflare", url: "https://cloudflare-dns.com/dns-query" },
    ],
    routes: [
      { zones: [DEMO_ZONE_NAME], upstreams: ["origin"], timeout: "4s" },
      { zones: ["."], upstreams: ["cloudflare"], timeout: "3s" },
    ],
  };
  const worker: Component = {
    ...workerComponent([
      "--var",
      `DOH_CONFIG:${JSON.stringify(workerConfig)}`,
      "--var",
      `RELAY_TOKEN:${token}`,
    ]),
    banner:
      "DoH on http://127.0.0.1:8787/dns-query — try: curl -s 'http://127.0.0.1:8787/resolve?name=www.demo.test&type=A'",
  };
  const relay: Component = {
    ...relayComponent(relayFile, { DEMO_RELAY_TOKEN: token }),
    banner: [
      "DNS on 127.0.0.1:5053 — try: dig @127.0.0.1 -p 5053 www.demo.test",
      `DoH on https://127.0.0.1:8443/dns-query — try: kdig @127.0.0.1 -p 8443 +https +tls-ca=${certs.caFile} +tls-hostname=dns.test www.demo.test`,
      `origin: ${origin.description}`,
    ].join("\n       | "),
  };
  await runStack([worker, relay], async () => {
    await origin.stop();
    await cleanup();
  });
}
