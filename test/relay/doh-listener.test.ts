// The relay's DoH listener on @hono/node-server: curl over h2 with TLS,
// HTTP/1.1 over TLS and h2c; the ACL sees the connection's address (Hono's
// getConnInfo), never a header; DoH is served at listen.doh.path only.

import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { connect as connectH2 } from "node:http2";
import { connect as connectTcp } from "node:net";
import { connect as connectTls } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import {
  EDNS_UDP_SIZE,
  EdeCode,
  Rcode,
  readEdns,
  readId,
  readRcode,
} from "../../shared/dns/wire.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import {
  createTestCertificates,
  type RunningServer,
  startNsd,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { portOf, run, startTestRelay, ZONE } from "./relay-harness.ts";

let nsd: RunningServer;
let certs: TestCertificates;
let tls: Relay;
let plain: Relay;
let closed: Relay;
let tuned: Relay;

const upstreams = () => [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }];
const routes = [{ zones: ["."], upstreams: ["nsd"] }];

beforeAll(async () => {
  [nsd, certs] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
  ]);
  const doh = { addr: "127.0.0.1:8443", cert: certs.certFile, key: certs.keyFile };
  [tls, plain, closed, tuned] = await Promise.all([
    startTestRelay({ listen: { doh }, upstreams: upstreams(), routes }),
    startTestRelay({
      listen: { doh: { addr: "127.0.0.1:8080", path: "/q" } },
      upstreams: upstreams(),
      routes,
    }),
    // Open to 10.0.0.0/8 only: loopback clients are refused whatever they claim.
    startTestRelay({ listen: { doh }, allow: ["10.0.0.0/8"], upstreams: upstreams(), routes }),
    startTestRelay({
      listen: { doh: { ...doh, read_timeout: "300ms", idle_timeout: "3s" } },
      upstreams: upstreams(),
      routes,
    }),
  ]);
}, 30_000);

afterAll(async () => {
  await Promise.all([tls, plain, closed, tuned].map((r) => r?.shutdown(1000)));
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

/** curl POSTs a query; resolves with the HTTP version, status and body. */
async function curl(url: string, args: string[], id: number) {
  const query = Buffer.from(buildQuery("www.relay.test", 1, { id, ednsUdpSize: EDNS_UDP_SIZE }));
  const dns = encodeBase64Url(query);
  const { stdout } = await run(
    "sh",
    [
      "-c",
      // The answer goes out as hex so that binary bytes survive the pipe.
      `curl -sS --cacert "$0" "$@" -o - -w '\\n%{http_version} %{http_code}' '${url}?dns=${dns}' | od -An -v -tx1 | tr -d ' \\n'`,
      certs.caFile,
      ...args,
    ],
    { encoding: "utf8" },
  );
  const bytes = Buffer.from(stdout, "hex");
  const cut = bytes.lastIndexOf(0x0a);
  const [version, status] = bytes
    .subarray(cut + 1)
    .toString()
    .split(" ");
  return { version, status: Number(status), body: new Uint8Array(bytes.subarray(0, cut)) };
}

describe("DoH listener on @hono/node-server", () => {
  it("answers curl over HTTP/2 with TLS and over HTTP/1.1 with TLS", async () => {
    const url = `https://localhost:${portOf(tls, "doh")}/dns-query`;
    const h2 = await curl(url, ["--http2"], 0x2001);
    const h1 = await curl(url, ["--http1.1"], 0x2002);
    expect([h2.version, h2.status]).toEqual(["2", 200]);
    expect([h1.version, h1.status]).toEqual(["1.1", 200]);
    for (const r of [h2, h1]) expect(readRcode(r.body)).toBe(Rcode.NOERROR);
  });

  it("serves listen.doh.path (h2c with prior knowledge and HTTP/1.1), and 404 elsewhere", async () => {
    const port = portOf(plain, "doh");
    const h2c = await curl(`http://127.0.0.1:${port}/q`, ["--http2-prior-knowledge"], 0x2003);
    const h1 = await curl(`http://127.0.0.1:${port}/q`, ["--http1.1"], 0x2004);
    expect([h2c.version, h2c.status]).toEqual(["2", 200]);
    expect([h1.version, h1.status]).toEqual(["1.1", 200]);
    expect(readRcode(h2c.body)).toBe(Rcode.NOERROR);
    const other = await curl(`http://127.0.0.1:${port}/dns-query`, [], 0x2005);
    expect(other.status).toBe(404);
  });

  it("refuses by the connection's address: forwarding headers change nothing", async () => {
    const url = `https://localhost:${portOf(closed, "doh")}/dns-query`;
    const claims = ["x-doh-relay-client", "x-forwarded-for", "x-real-ip", "cf-connecting-ip"];
    const headers = claims.flatMap((name) => ["-H", `${name}: 10.1.2.3`]);
    for (const version of ["--http2", "--http1.1"]) {
      const r = await curl(url, [version, ...headers], 0x2006);
      expect(r.status).toBe(200);
      expect(readId(r.body)).toBe(0x2006);
      expect(readRcode(r.body)).toBe(Rcode.REFUSED);
      expect(readEdns(r.body)?.options.find((o) => o.code === 15)?.data[1]).toBe(
        EdeCode.PROHIBITED,
      );
    }
  });
});

describe("DoH listener input no URL can be made of", () => {
  it("answers 400 to a bad Host header, not 500", async () => {
    const port = portOf(plain, "doh");
    for (const host of ["exa%mple", "x y", "[::1"]) {
      const status = await new Promise<string>((resolve, reject) => {
        let got = "";
        const socket = connectTcp(port, "127.0.0.1", () =>
          socket.write(`GET /q?dns=AAAB HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`),
        );
        socket.on("data", (chunk) => {
          got += chunk;
        });
        socket.on("close", () => resolve(got.split("\r\n")[0] ?? ""));
        socket.on("error", reject);
      });
      expect(status, host).toBe("HTTP/1.1 400 Bad Request");
    }
  });
});

describe("DoH listener deadlines over TLS (read_timeout 300ms, idle_timeout 3s)", () => {
  /** How long the listener keeps a TLS connection that sends `bytes` and stops. */
  const heldFor = (alpn: string, bytes: string) =>
    new Promise<number>((resolve, reject) => {
      const started = performance.now();
      const socket = connectTls(
        {
          port: portOf(tuned, "doh"),
          host: "127.0.0.1",
          servername: "localhost",
          ca: readFileSync(certs.caFile),
          ALPNProtocols: [alpn],
        },
        () => socket.write(bytes),
      );
      socket.setTimeout(2500, () => reject(new Error("still open at 2.5 s")));
      socket.on("data", () => {});
      socket.on("close", () => resolve(performance.now() - started));
      socket.on("error", () => {});
    });

  it("drops a connection whose first request's headers stall, HTTP/1.1 and h2", async () => {
    const h1 = await heldFor("http/1.1", "POST /dns-query HTTP/1.1\r\nhost: x\r\n");
    const h2 = await heldFor("h2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    for (const ms of [h1, h2]) {
      expect(ms).toBeGreaterThanOrEqual(250);
      expect(ms).toBeLessThan(1500); // well before idle_timeout
    }
  });

  it("answers 408 to a POST whose body stalls, and the session goes on", async () => {
    const session = connectH2(`https://localhost:${portOf(tuned, "doh")}`, {
      ca: readFileSync(certs.caFile),
    });
    try {
      const query = buildQuery("www.relay.test", 1, { id: 0x3001 });
      const started = performance.now();
      const stream = session.request({
        ":method": "POST",
        ":path": "/dns-query",
        "content-type": "application/dns-message",
        "content-length": String(query.length + 10),
      });
      stream.write(query); // ten bytes short, and then nothing
      const status = await new Promise<number>((resolve, reject) => {
        stream.on("response", (h) => resolve(Number(h[":status"])));
        stream.on("error", reject);
      });
      expect(status).toBe(408);
      expect(performance.now() - started).toBeGreaterThanOrEqual(250);
      stream.close();
      const dns = encodeBase64Url(buildQuery("www.relay.test", 1, { id: 0x3002 }));
      const next = session.request({ ":path": `/dns-query?dns=${dns}` });
      const body = await new Promise<Uint8Array>((resolve, reject) => {
        const chunks: Buffer[] = [];
        next.on("data", (c: Buffer) => chunks.push(c));
        next.on("end", () => resolve(new Uint8Array(Buffer.concat(chunks))));
        next.on("error", reject);
      });
      expect(readId(body)).toBe(0x3002);
    } finally {
      session.close();
    }
  });
});
