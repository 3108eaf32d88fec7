// The origin endpoint's body deadline over HTTP/2 with TLS, where Node's
// HTTP/1.1 request timeout does not reach: a stream whose body stalls gets
// 408 at read_timeout, and the session's other streams are answered.

import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { type ClientHttp2Session, connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../relay/src/log.ts";
import { type Relay, startRelay } from "../../relay/src/relay.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import {
  createTestCertificates,
  type RunningServer,
  startNsd,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { ephemeralConfig, portOf, ZONE } from "./relay-harness.ts";

const TOKEN_ENV = "DOH_EDGE_ORIGIN_H2_TEST_TOKEN";
const TOKEN = "origin-h2-token-7d2e";

let nsd: RunningServer;
let certs: TestCertificates;
let relay: Relay;

beforeAll(async () => {
  [nsd, certs] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
  ]);
  process.env[TOKEN_ENV] = TOKEN;
  const origin = {
    addr: "127.0.0.1:8853",
    token_env: TOKEN_ENV,
    cert: certs.certFile,
    key: certs.keyFile,
    read_timeout: "300ms",
  };
  relay = await startRelay(
    ephemeralConfig({
      listen: { origin },
      upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
      routes: [{ zones: ["."], upstreams: ["nsd"] }],
    }),
    createLogger("error", () => {}),
  );
}, 30_000);

afterAll(async () => {
  await relay?.shutdown(1000);
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
  delete process.env[TOKEN_ENV];
});

/** Opens a POST stream; writes `body` and ends it only when `end` is set. */
function post(session: ClientHttp2Session, body: Uint8Array, end: boolean) {
  const stream = session.request({
    ":method": "POST",
    ":path": "/origin/nsd",
    authorization: `Bearer ${TOKEN}`,
    "content-type": "application/dns-message",
    "content-length": String(end ? body.length : body.length + 100),
  });
  const started = performance.now();
  const reply = new Promise<{ status: number; body: Buffer; ms: number }>((resolve, reject) => {
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () =>
      resolve({ status, body: Buffer.concat(chunks), ms: performance.now() - started }),
    );
    stream.on("error", reject);
  });
  if (end) stream.end(body);
  else stream.write(body);
  return reply;
}

describe("origin endpoint over HTTP/2", () => {
  it("answers 408 for a body stalled past read_timeout, and the session goes on", async () => {
    const session = connect(`https://localhost:${portOf(relay, "origin")}`, {
      ca: readFileSync(certs.caFile),
    });
    try {
      const stalled = post(session, buildQuery("www.relay.test", 1, { id: 1 }), false);
      const whole = await post(session, buildQuery("www.relay.test", 1, { id: 2 }), true);
      expect(whole.status).toBe(200);
      expect(readId(new Uint8Array(whole.body))).toBe(2);
      const late = await stalled;
      expect(late.status).toBe(408);
      expect(late.ms).toBeGreaterThanOrEqual(250);
      expect(late.ms).toBeLessThan(2000);
      const after = await post(session, buildQuery("www.relay.test", 1, { id: 3 }), true);
      expect(after.status).toBe(200);
    } finally {
      session.close();
    }
  });
});
