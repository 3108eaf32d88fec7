// The Upstream contract table (test/shared/support/upstream-contract.ts) in
// Node, against every transport the relay has and the shared fetch DoH: UDP,
// the TCP and DoT pools, DoQ, HTTP/2 DoH (POST and GET), HTTP/3 DoH (POST and
// GET, against quic-go's http3 server) and fetch DoH (POST and GET). Every one
// reaches the same delay server, directly or through a real TLS, QUIC or HTTP
// front. Queries go in as Node Buffers, as relay
// callers may hold them.

import { readFile, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { afterAll, beforeAll } from "vitest";
import { createDohH2Upstream } from "../../relay/src/transports/doh-h2.ts";
import { createDoh3Upstream } from "../../relay/src/transports/doh3.ts";
import { createDoqUpstream } from "../../relay/src/transports/doq.ts";
import { createNodeH2Driver } from "../../relay/src/transports/h2/node-driver.ts";
import { createStreamPool } from "../../relay/src/transports/stream-pool.ts";
import { createUdpUpstream } from "../../relay/src/transports/udp.ts";
import { createFetchDohUpstream } from "../../shared/transport/doh-fetch.ts";
import { runUpstreamContract } from "../shared/support/upstream-contract.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import { createTestCertificates, type TestCertificates } from "../support/dns-servers.ts";
import { type DohTestServer, startDohTestServer } from "../support/doh-test-server.ts";
import { type DoqServer, startDoqServer } from "../support/doq-server.ts";
import { type H2DohServer, startH2DohServer } from "../support/h2-doh-server.ts";
import { type H3DohServer, startH3DohServer } from "../support/h3-doh-server.ts";

let delay: DelayDnsServer;
let certs: TestCertificates;
let ca: string;
/** DoT in front of the delay server's TCP side. */
let tlsFront: TlsServer;
let doq: DoqServer;
let h2: H2DohServer;
let http: DohTestServer;
let h3: H3DohServer;

beforeAll(async () => {
  [delay, certs] = await Promise.all([startDelayDnsServer(), createTestCertificates()]);
  const [cert, key] = await Promise.all([
    readFile(certs.certFile, "utf8"),
    readFile(certs.keyFile, "utf8"),
  ]);
  ca = await readFile(certs.caFile, "utf8");
  tlsFront = createTlsServer({ cert, key }, (client) => {
    const backend = netConnect(delay.port, "127.0.0.1");
    client.pipe(backend).pipe(client);
    client.on("error", () => backend.destroy());
    backend.on("error", () => client.destroy());
    client.on("close", () => backend.destroy());
  });
  await new Promise<void>((resolve) => tlsFront.listen(0, "127.0.0.1", resolve));
  [doq, h2, http, h3] = await Promise.all([
    startDoqServer({ cert, key, backendPort: delay.port }),
    startH2DohServer({ backendPort: delay.port, certFile: certs.certFile, keyFile: certs.keyFile }),
    startDohTestServer({ delay: delay.port }),
    startH3DohServer({ backendPort: delay.port, certFile: certs.certFile, keyFile: certs.keyFile }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([doq?.stop(), h2?.stop(), http?.stop(), h3?.stop()]);
  await new Promise((resolve) => (tlsFront ? tlsFront.close(resolve) : resolve(undefined)));
  await delay?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

const bytes = (query: Uint8Array) => Buffer.from(query);
const timeouts = { connectTimeoutMs: 1000, handshakeTimeoutMs: 1000 };

const pool = (tls: boolean) =>
  createStreamPool({
    name: tls ? "tls-pool" : "tcp-pool",
    host: "127.0.0.1",
    port: tls ? (tlsFront.address() as { port: number }).port : delay.port,
    ...(tls ? { tls: { servername: "dns.test", ca } } : {}),
    size: 2,
    maxInFlight: 100,
    idleTimeoutMs: 5000,
    maxRetries: 1,
    ...timeouts,
  });

runUpstreamContract({
  name: "udp",
  bytes,
  make: () => createUdpUpstream({ name: "udp", host: "127.0.0.1", port: delay.port, ...timeouts }),
});

runUpstreamContract({ name: "tcp pool", bytes, pooled: true, make: () => pool(false) });

runUpstreamContract({ name: "tls pool", bytes, pooled: true, make: () => pool(true) });

runUpstreamContract({
  name: "quic (DoQ)",
  bytes,
  pooled: true,
  make: () =>
    createDoqUpstream({
      name: "doq",
      host: "127.0.0.1",
      port: doq.port,
      servername: "dns.test",
      ca,
      idleTimeoutMs: 5000,
      maxRetries: 1,
      maxInFlight: 100,
      ...timeouts,
    }),
});

for (const method of ["POST", "GET"] as const) {
  for (const [client, driver] of [
    ["relay's HTTP/2 client", undefined],
    ["node:http2", createNodeH2Driver],
  ] as const) {
    const options = () => ({
      name: "h2",
      origin: `https://127.0.0.1:${h2.port}`,
      path: "/dns-query",
      method,
      poolSize: 2,
      maxInFlight: 100,
      idleTimeoutMs: 5000,
      tls: { servername: "dns.test", ca },
      ...timeouts,
    });
    runUpstreamContract({
      name: `h2 DoH ${method} (${client})`,
      bytes,
      pooled: true,
      ...(method === "GET" ? { receivedIds: () => delay.ids } : {}),
      make: () => createDohH2Upstream(options(), driver?.(options())),
    });
  }

  runUpstreamContract({
    name: `h3 DoH ${method}`,
    bytes,
    ...(method === "GET" ? { receivedIds: () => delay.ids } : {}),
    make: () =>
      createDoh3Upstream({
        name: "h3",
        host: "127.0.0.1",
        port: h3.port,
        path: "/dns-query",
        method,
        servername: "dns.test",
        ca,
        idleTimeoutMs: 5000,
        maxRetries: 1,
        maxInFlight: 100,
        ...timeouts,
      }),
  });

  runUpstreamContract({
    name: `fetch DoH ${method}`,
    bytes,
    ...(method === "GET" ? { receivedIds: () => delay.ids } : {}),
    make: () =>
      createFetchDohUpstream({
        name: "fetch",
        url: `http://127.0.0.1:${http.port}/delay/dns-query`,
        method,
      }),
  });
}
