// The relay's origin endpoint (listen.origin) for the edge worker: POST
// /origin/<upstream> with a bearer token, over HTTP/1.1, HTTP/2 over TLS and
// h2c, answered from real nsd data through the relay's own transports.

import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect as connectH2 } from "node:http2";
import { request as httpsRequest } from "node:https";
import { connect as connectTcp, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../relay/src/log.ts";
import { type Relay, startRelay } from "../../relay/src/relay.ts";
import { ConfigError } from "../../shared/config/schema.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId, withId } from "../../shared/dns/wire.ts";
import {
  createTestCertificates,
  freePort,
  type RunningServer,
  startNsd,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { ephemeralConfig, portOf, run, ZONE } from "./relay-harness.ts";

const TOKEN_ENV = "DOH_EDGE_ORIGIN_TEST_TOKEN";
const TOKEN = "origin-test-token-5f1c9a";
const DNS = "application/dns-message";
const RELAY_BIN = fileURLToPath(new URL("../../relay/bin/doh-relay.mjs", import.meta.url));

let nsd: RunningServer;
let certs: TestCertificates;
let relay: Relay;
let tlsRelay: Relay;
let closedPort: number;
const logLines: string[] = [];

function relayInput(listen: Record<string, unknown>) {
  return {
    listen,
    upstreams: [
      { name: "nsd", url: `udp://127.0.0.1:${nsd.port}` },
      { name: "down", url: `tcp://127.0.0.1:${closedPort}` },
    ],
    routes: [{ zones: ["."], upstreams: ["nsd"] }],
  };
}

beforeAll(async () => {
  [nsd, certs, closedPort] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
    freePort(),
  ]);
  process.env[TOKEN_ENV] = TOKEN;
  relay = await startRelay(
    ephemeralConfig(
      relayInput({ origin: { addr: "127.0.0.1:8853", token_env: TOKEN_ENV, write_timeout: "2s" } }),
    ),
    createLogger("debug", (line) => logLines.push(line)),
  );
  tlsRelay = await startRelay(
    ephemeralConfig(
      relayInput({
        origin: {
          addr: "127.0.0.1:8853",
          token_env: TOKEN_ENV,
          cert: certs.certFile,
          key: certs.keyFile,
        },
      }),
    ),
    createLogger("debug", (line) => logLines.push(line)),
  );
}, 30_000);

afterAll(async () => {
  await Promise.all([relay, tlsRelay].map((r) => r?.shutdown(1000)));
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
  delete process.env[TOKEN_ENV];
});

const origin = () => `http://127.0.0.1:${portOf(relay, "origin")}`;
const query = (id: number, name = "www.relay.test") => buildQuery(name, 1, { id });
const addresses = (answer: Uint8Array) =>
  (decodeMessage(answer).answers ?? []).filter((r) => r.type === "A").map((r) => r.data);

function post(
  path: string,
  body: Uint8Array | string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${origin()}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": DNS, ...headers },
    body: typeof body === "string" ? body : (body as Uint8Array<ArrayBuffer>),
  });
}

/** One HTTP/2 POST; resolves with status, headers and body. */
function h2Post(
  url: string,
  path: string,
  body: Uint8Array,
  headers: Record<string, string>,
  ca?: string,
): Promise<{ status: number; type: string | undefined; body: Uint8Array; alpn: string }> {
  return new Promise((resolve, reject) => {
    const session = connectH2(url, ca ? { ca } : {});
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let type: string | undefined;
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      type = h["content-type"] as string | undefined;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const alpn = session.alpnProtocol ?? "";
      session.close();
      resolve({ status, type, body: new Uint8Array(Buffer.concat(chunks)), alpn });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

describe("origin endpoint answers", () => {
  it("answers over HTTP/1.1 with real data and the query's ID", async () => {
    const response = await post("/origin/nsd", query(4242));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe(DNS);
    const answer = new Uint8Array(await response.arrayBuffer());
    expect(readId(answer)).toBe(4242);
    expect(addresses(answer)).toEqual(["192.0.2.10"]);
  });

  it("answers over HTTP/2 with TLS (ALPN h2)", async () => {
    const result = await h2Post(
      `https://127.0.0.1:${portOf(tlsRelay, "origin")}`,
      "/origin/nsd",
      query(777),
      { authorization: `Bearer ${TOKEN}`, "content-type": DNS },
      readFileSync(certs.caFile, "utf8"),
    );
    expect(result.alpn).toBe("h2");
    expect(result.status).toBe(200);
    expect(result.type).toBe(DNS);
    expect(readId(result.body)).toBe(777);
    expect(addresses(result.body)).toEqual(["192.0.2.10"]);
  });

  it("answers HTTP/1.1 over TLS too (ALPN fallback)", async () => {
    const body = query(31);
    const result = await new Promise<{ status: number; body: Uint8Array }>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: "127.0.0.1",
          port: portOf(tlsRelay, "origin"),
          path: "/origin/nsd",
          method: "POST",
          ca: readFileSync(certs.caFile, "utf8"),
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": DNS },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: new Uint8Array(Buffer.concat(chunks)) }),
          );
        },
      );
      req.on("error", reject);
      req.end(body);
    });
    expect(result.status).toBe(200);
    expect(readId(result.body)).toBe(31);
    expect(addresses(result.body)).toEqual(["192.0.2.10"]);
  });

  it("answers h2c with prior knowledge on the plain listener", async () => {
    const result = await h2Post(
      `http://127.0.0.1:${portOf(relay, "origin")}`,
      "/origin/nsd",
      query(9),
      {
        authorization: `Bearer ${TOKEN}`,
        "content-type": DNS,
      },
    );
    expect(result.status).toBe(200);
    expect(readId(result.body)).toBe(9);
    expect(addresses(result.body)).toEqual(["192.0.2.10"]);
  });

  it("accepts the bearer scheme in any case", async () => {
    const response = await post("/origin/nsd", query(5), { authorization: `bearer ${TOKEN}` });
    expect(response.status).toBe(200);
  });

  it("follows a reload: a new upstream is served, a removed one is 404", async () => {
    const next = ephemeralConfig({
      ...relayInput({ origin: { addr: "127.0.0.1:8853", token_env: TOKEN_ENV } }),
      upstreams: [{ name: "late", url: `udp://127.0.0.1:${nsd.port}` }],
      routes: [{ zones: ["."], upstreams: ["late"] }],
    });
    const local = await startRelay(
      ephemeralConfig(relayInput({ origin: { addr: "127.0.0.1:8853", token_env: TOKEN_ENV } })),
      createLogger("error", () => {}),
    );
    try {
      const url = `http://127.0.0.1:${portOf(local, "origin")}`;
      const ask = (name: string) =>
        fetch(`${url}/origin/${name}`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": DNS },
          body: query(1) as Uint8Array<ArrayBuffer>,
        });
      expect((await ask("late")).status).toBe(404);
      await local.reload(next);
      const response = await ask("late");
      expect(response.status).toBe(200);
      expect(addresses(new Uint8Array(await response.arrayBuffer()))).toEqual(["192.0.2.10"]);
      expect((await ask("nsd")).status).toBe(404);
    } finally {
      await local.shutdown(1000);
    }
  });
});

function headerList(headers: Headers): [string, string][] {
  const out: [string, string][] = [];
  headers.forEach((value, key) => {
    out.push([key, value]);
  });
  return out;
}

describe("origin endpoint refusals", () => {
  const snapshot = async (response: Response) => ({
    status: response.status,
    headers: headerList(response.headers),
    body: Buffer.from(await response.arrayBuffer()).toString("hex"),
  });

  it("answers 401 for a missing and a wrong token, byte for byte the same", async () => {
    const missing = await fetch(`${origin()}/origin/nsd`, {
      method: "POST",
      headers: { "content-type": DNS },
      body: query(1) as Uint8Array<ArrayBuffer>,
    });
    const wrong = await post("/origin/nsd", query(1), { authorization: `Bearer ${TOKEN}x` });
    const shorter = await post("/origin/nsd", query(1), { authorization: "Bearer x" });
    const a = await snapshot(missing);
    expect(a.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(await snapshot(wrong)).toEqual(a);
    expect(await snapshot(shorter)).toEqual(a);
  });

  it("answers 401, not 404, for an unknown upstream without the token", async () => {
    const response = await post("/origin/nope", query(1), { authorization: "Bearer wrong" });
    expect(response.status).toBe(401);
  });

  it("answers 404 for an unknown upstream once authorized", async () => {
    expect((await post("/origin/nope", query(1))).status).toBe(404);
    expect((await post("/elsewhere", query(1))).status).toBe(404);
  });

  it("answers 405 for other methods", async () => {
    const response = await fetch(`${origin()}/origin/nsd`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(response.status).toBe(405);
  });

  it("answers 413 for a 65,536-byte body, declared or streamed", async () => {
    const big = new Uint8Array(65_536);
    big.set(query(1));
    expect((await post("/origin/nsd", big)).status).toBe(413);
    const streamed = await fetch(`${origin()}/origin/nsd`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": DNS },
      body: new ReadableStream({
        pull(controller) {
          for (let i = 0; i < 17; i++) controller.enqueue(new Uint8Array(4096));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(streamed.status).toBe(413);
    // The listener still serves after that.
    expect((await post("/origin/nsd", query(2))).status).toBe(200);
  });

  it("answers 415 for another content type", async () => {
    const response = await post("/origin/nsd", query(1), { "content-type": "text/plain" });
    expect(response.status).toBe(415);
  });

  it("answers 400 for a body that is not a DNS query", async () => {
    expect((await post("/origin/nsd", new Uint8Array([1, 2, 3, 4, 5]))).status).toBe(400);
    const response = withId(query(1), 1);
    response[2]! |= 0x80; // QR: an answer, not a query
    expect((await post("/origin/nsd", response)).status).toBe(400);
  });

  it("answers 502 naming the error code when the upstream fails", async () => {
    const response = await post("/origin/down", query(1));
    expect(response.status).toBe(502);
    const text = await response.text();
    expect(text).toMatch(/^upstream error: [a-z_]+\n$/);
    expect(text).not.toContain(TOKEN);
  });

  it("counts origin queries as upstream attempts, a failure under its error class (issue 18)", async () => {
    /** A counter's value in /metrics, 0 while absent. */
    const counter = async (series: string) => {
      const text = await relay.ops.metrics();
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return Number(line?.split(" ")[1] ?? 0);
    };
    const series = {
      sent: 'request_count_total{upstream="nsd"}',
      answered: 'response_success_count_total{upstream="nsd"}',
      noerror: 'response_rcode_count_total{upstream="nsd",rcode="NOERROR"}',
      refused: 'request_error_count_total{upstream="down",error="connect_failed"}',
    };
    const read = async () =>
      Object.fromEntries(
        await Promise.all(Object.entries(series).map(async ([k, v]) => [k, await counter(v)])),
      );
    const before = await read();
    expect((await post("/origin/nsd", query(11))).status).toBe(200);
    expect((await post("/origin/down", query(12))).status).toBe(502);
    const after = await read();
    expect(after).toEqual({
      sent: before.sent + 1,
      answered: before.answered + 1,
      noerror: before.noerror + 1,
      refused: before.refused + 1,
    });
  });

  it("never writes the token to logs or metrics", async () => {
    await post("/origin/down", query(3));
    await post("/origin/nsd", query(3), { authorization: `Bearer ${TOKEN}x` });
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join("\n")).not.toContain(TOKEN);
    const metrics = relay.metrics.render({});
    expect(metrics).toContain('doh_relay_refused_total{reason="origin_unauthorized"}');
    expect(metrics).not.toContain(TOKEN);
  });
});

/**
 * Resolves with how long `socket` stayed open (ms), or rejects after `ms`. It
 * reads what arrives: a paused socket never sees the peer's FIN, so a server
 * that closed after reading everything would look as if it had not.
 */
function openFor(socket: Socket, ms: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    socket.resume();
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    });
  });
}

describe("origin listener tuning", () => {
  let tuned: Relay;
  beforeAll(async () => {
    tuned = await startRelay(
      ephemeralConfig(
        relayInput({
          origin: {
            addr: "127.0.0.1:8853",
            token_env: TOKEN_ENV,
            read_timeout: "300ms",
            idle_timeout: "400ms",
            max_connections: 2,
            max_queries_per_connection: 2,
          },
        }),
      ),
      createLogger("error", () => {}),
    );
  });
  afterAll(() => tuned?.shutdown(1000));

  const open = () =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connectTcp(portOf(tuned, "origin"), "127.0.0.1", () => resolve(socket));
      socket.once("error", reject);
    });
  const request = (length: number) =>
    `POST /origin/nsd HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\n` +
    `content-type: ${DNS}\r\ncontent-length: ${length}\r\n\r\n`;

  it("drops a request whose body stalls past read_timeout", async () => {
    const socket = await open();
    socket.write(request(40));
    socket.write(Buffer.alloc(10));
    const ms = await openFor(socket, 6000);
    expect(ms).toBeGreaterThanOrEqual(250);
  });

  it("closes a keep-alive connection idle past idle_timeout, not before", async () => {
    const socket = await open();
    const q = Buffer.from(query(11));
    let answered = 0;
    socket.on("data", (chunk: Buffer) => {
      if (chunk.toString("latin1").startsWith("HTTP/1.1 200")) answered++;
    });
    const closed = openFor(socket, 3000);
    socket.write(Buffer.concat([Buffer.from(request(q.length)), q]));
    const ms = await closed;
    expect(answered).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(350);
    expect(ms).toBeLessThan(1300);
  });

  it("closes a connection after max_queries_per_connection answers", async () => {
    const socket = await open();
    const q = Buffer.from(query(12));
    let received = "";
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1");
    });
    const closed = openFor(socket, 3000);
    const one = Buffer.concat([Buffer.from(request(q.length)), q]);
    socket.write(Buffer.concat([one, one, one]));
    await closed;
    expect(received.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
  });

  it("holds at most max_connections connections", async () => {
    const [a, b] = [await open(), await open()];
    const c = await open();
    // Dropped at once, well before read_timeout would close an idle one.
    expect(await openFor(c, 1000)).toBeLessThan(200);
    expect(a.destroyed || b.destroyed).toBe(false);
    for (const s of [a, b]) s.destroy();
  });
});

describe("origin endpoint startup", () => {
  it("refuses to start without the token, naming listen.origin.token_env", async () => {
    const config = ephemeralConfig({
      listen: { origin: { addr: "127.0.0.1:8853", token_env: "DOH_EDGE_ORIGIN_UNSET_TOKEN" } },
      upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
    });
    delete process.env.DOH_EDGE_ORIGIN_UNSET_TOKEN;
    const failure = await startRelay(
      config,
      createLogger("error", () => {}),
    ).then(
      async (started) => {
        await started.shutdown(100);
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(ConfigError);
    const message = (failure as Error).message;
    expect(message).toMatch(/^listen\.origin\.token_env: /);
    expect(message).toContain("DOH_EDGE_ORIGIN_UNSET_TOKEN");
    expect(message).not.toContain("\n");
  });

  it("makes the doh-relay command exit 1 with that one-line error", async () => {
    const dir = await mkdtemp(join(tmpdir(), "doh-edge-origin-"));
    try {
      const file = join(dir, "relay.yaml");
      await writeFile(
        file,
        `listen:\n  origin: { addr: "127.0.0.1:${await freePort()}", token_env: DOH_EDGE_ORIGIN_UNSET_TOKEN }\n` +
          `upstreams:\n  - { name: nsd, url: "udp://127.0.0.1:${nsd.port}" }\n`,
      );
      const env = { ...process.env };
      delete env.DOH_EDGE_ORIGIN_UNSET_TOKEN;
      const result = await run(process.execPath, [RELAY_BIN, "--config", file], { env }).then(
        () => ({ code: 0, stdout: "" }),
        (error: { code: number; stdout: string }) => error,
      );
      expect(result.code).toBe(1);
      const lines = result.stdout.trim().split("\n");
      const failure = lines.find((line) => line.includes("startup failed"));
      expect(failure).toContain("listen.origin.token_env");
      expect(lines.some((line) => line.includes('"listening"'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
