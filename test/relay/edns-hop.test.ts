// Issue 15.5: the OPT record is hop-by-hop. Through a real relay, against real
// servers: what an upstream receives (recording DoT and DoH servers, the
// strict test DoQ server), what clients get back (unbound padding over DoT,
// a decorating upstream behind the cache), and RFC 8467 padding on the
// encrypted hops both ways.

import { readFile, rm } from "node:fs/promises";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { type EdnsOption, findOpt, readEdns, readRcode } from "../../shared/dns/wire.ts";
import {
  createTestCertificates,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { type DoqServer, startDoqServer } from "../support/doq-server.ts";
import { type H2DohServer, startH2DohServer } from "../support/h2-doh-server.ts";
import { type RecordingServer, startRecordingServer } from "../support/recording-server.ts";
import { dig, portOf, run, startTestRelay, tcpPipeline, udpFrom, ZONE } from "./relay-harness.ts";

const KEEPALIVE = 11;
const COOKIE = 10;
const PADDING = 12;
const NSID = 3;
const ECS = 8;
const EDE = 15;

/** `msg` (whose OPT is its last record) with `options` appended to the OPT. */
function addOptions(msg: Uint8Array, options: EdnsOption[]): Uint8Array {
  const { opt } = findOpt(msg);
  if (!opt || opt.end !== msg.length) throw new Error("addOptions needs the OPT last");
  const extra = options.flatMap((o) => [
    o.code >> 8,
    o.code & 0xff,
    o.data.length >> 8,
    o.data.length & 0xff,
    ...o.data,
  ]);
  const out = Uint8Array.from([...msg, ...extra]);
  const rdlength = opt.rdlength + extra.length;
  out[opt.rdataOffset - 2] = rdlength >> 8;
  out[opt.rdataOffset - 1] = rdlength & 0xff;
  return out;
}

const ednsQuery = (name: string, id = 0x4242) => buildQuery(name, 1, { id, ednsUdpSize: 1232 });
const codes = (msg: Uint8Array) => readEdns(msg)?.options.map((o) => o.code) ?? [];

/** One query over DoT to the relay's DoT listener; the answer. */
function dotExchange(port: number, ca: string, query: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, ca, servername: "dns.test" });
    const reader = createFrameReader();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no DoT answer within 3 s"));
    }, 3000);
    socket.on("secureConnect", () => socket.write(frameMessage(query)));
    socket.on("data", (chunk: Buffer) => {
      const [answer] = reader.push(new Uint8Array(chunk));
      if (!answer) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer.slice());
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

let nsd: RunningServer;
let certs: TestCertificates;
let ca: string;
let unbound: RunningUnbound;
let recorder: RecordingServer;
let decorating: RecordingServer;
let doq: DoqServer;
let h2: H2DohServer;
const relays: Relay[] = [];

/** What a misbehaving upstream appends to its answers' OPT. */
const UPSTREAM_OPTIONS: EdnsOption[] = [
  { code: NSID, data: new TextEncoder().encode("upstream-1") },
  { code: COOKIE, data: new Uint8Array(24).fill(7) },
  { code: KEEPALIVE, data: Uint8Array.of(0, 100) },
  { code: EDE, data: Uint8Array.of(0, 0) },
  { code: PADDING, data: new Uint8Array(200) },
];

beforeAll(async () => {
  [nsd, certs] = await Promise.all([
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
  ]);
  const [cert, key] = await Promise.all([
    readFile(certs.certFile, "utf8"),
    readFile(certs.keyFile, "utf8"),
  ]);
  ca = await readFile(certs.caFile, "utf8");
  [unbound, recorder, decorating, doq, h2] = await Promise.all([
    startUnbound({
      stubs: { "relay.test.": nsd.port },
      tls: certs,
      extra: ["pad-responses: yes", "pad-responses-block-size: 468"],
    }),
    startRecordingServer({ backendPort: nsd.port, certs }),
    startRecordingServer({
      backendPort: nsd.port,
      certs,
      decorate: (answer) => addOptions(answer, UPSTREAM_OPTIONS),
    }),
    startDoqServer({ cert, key, backendPort: nsd.port }),
    startH2DohServer({ backendPort: nsd.port, certFile: certs.certFile, keyFile: certs.keyFile }),
  ]);
}, 30_000);

afterAll(async () => {
  await Promise.all(relays.map((r) => r.shutdown(1000)));
  await Promise.all([
    unbound?.stop(),
    recorder?.stop(),
    decorating?.stop(),
    doq?.stop(),
    h2?.stop(),
  ]);
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

/** An encrypted upstream at `url`, trusting the test CA. */
const secure = (url: string) => ({ url, tls_servername: "dns.test", ca: certs.caFile });

async function relayTo(upstream: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const relay = await startTestRelay({
    listen: {
      udp: "127.0.0.1:5353",
      tcp: "127.0.0.1:5353",
      dot: { addr: "127.0.0.1:853", cert: certs.certFile, key: certs.keyFile },
      doh: { addr: "127.0.0.1:8443" },
    },
    upstreams: [{ name: "up", ...upstream }],
    ...extra,
  });
  relays.push(relay);
  return relay;
}

describe("toward upstreams", () => {
  it("a client's keepalive, cookie, NSID, padding and unknown option stay behind; ECS goes; DoT pads to 128", async () => {
    const relay = await relayTo(secure(`tls://127.0.0.1:${recorder.tlsPort}`));
    const seen = recorder.queries.length;
    const out = await dig(portOf(relay, "tcp"), [
      "+tcp",
      "+keepalive",
      "+cookie",
      "+nsid",
      "+padding=64",
      "+ednsopt=65001:abcd",
      "+subnet=192.0.2.0/24",
      "www.relay.test",
    ]);
    expect(out).toContain("status: NOERROR");
    expect(out).toMatch(/www\.relay\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.10/);
    const sent = recorder.queries.slice(seen);
    expect(sent).toHaveLength(1);
    const query = sent[0]!.bytes;
    expect(codes(query).sort((a, b) => a - b)).toEqual([ECS, PADDING]);
    expect(query.length % 128).toBe(0);
  });

  it("DoQ: dig +tcp +keepalive answers NOERROR; the strict server sees no keepalive, one connection", async () => {
    const relay = await relayTo(secure(`quic://127.0.0.1:${doq.port}`));
    const before = doq.connectionsAccepted;
    const seen = doq.queries.length;
    const port = portOf(relay, "tcp");
    for (const name of ["www.relay.test", "ns.relay.test"]) {
      const out = await dig(port, ["+tcp", "+keepalive", name]);
      expect(out).toContain("status: NOERROR");
      expect(out).toMatch(/IN\s+A\s+(192\.0\.2\.10|127\.0\.0\.1)/);
    }
    const sent = doq.queries.slice(seen);
    expect(sent).toHaveLength(2);
    for (const query of sent) {
      expect(codes(query)).toEqual([PADDING]);
      expect(query.length % 128).toBe(0);
    }
    expect(doq.connectionsAccepted - before).toBe(1);
  });

  it("DoH (HTTP/2): the query is padded to 128 without the client's options", async () => {
    const relay = await relayTo(secure(`https://127.0.0.1:${h2.port}/dns-query`));
    const seen = h2.queries.length;
    const query = addOptions(ednsQuery("www.relay.test"), [
      { code: COOKIE, data: new Uint8Array(8).fill(1) },
      { code: 65001, data: Uint8Array.of(1) },
    ]);
    const answer = await udpFrom("127.0.0.1", portOf(relay, "udp"), query);
    expect(answer && readRcode(answer)).toBe(0);
    const sent = h2.queries.slice(seen);
    expect(sent).toHaveLength(1);
    expect(codes(sent[0]!)).toEqual([PADDING]);
    expect(sent[0]!.length % 128).toBe(0);
  });
});

describe("back toward clients", () => {
  it("a UDP client that sent padding gets none back from an upstream that pads (unbound over DoT)", async () => {
    const relay = await relayTo(secure(`tls://127.0.0.1:${unbound.tlsPort}`));
    const port = portOf(relay, "udp");
    const out = await dig(port, ["+ednsopt=12:0000", "www.relay.test"]);
    expect(out).toContain("status: NOERROR");
    expect(out).not.toMatch(/PAD/);
    const size = Number(/MSG SIZE\s+rcvd: (\d+)/.exec(out)?.[1]);
    expect(size).toBeLessThan(100);
    const answer = await udpFrom(
      "127.0.0.1",
      port,
      addOptions(ednsQuery("www.relay.test"), [{ code: PADDING, data: new Uint8Array(2) }]),
    );
    expect(answer).toBeDefined();
    expect(codes(answer!)).not.toContain(PADDING);
  });

  it("a DoT or DoH client that padded gets a 468-block padded answer; one that did not, none", async () => {
    const relay = await relayTo({ url: `udp://127.0.0.1:${nsd.port}` });
    const padded = addOptions(ednsQuery("www.relay.test"), [
      { code: PADDING, data: new Uint8Array(20) },
    ]);
    const plain = ednsQuery("www.relay.test");
    const dot = portOf(relay, "dot");
    const dotPadded = await dotExchange(dot, ca, padded);
    expect(readRcode(dotPadded)).toBe(0);
    expect(dotPadded.length % 468).toBe(0);
    expect(codes(dotPadded)).toContain(PADDING);
    const dotPlain = await dotExchange(dot, ca, plain);
    expect(codes(dotPlain)).not.toContain(PADDING);
    expect(dotPlain.length).toBeLessThan(468);

    const post = async (query: Uint8Array) => {
      const response = await fetch(`http://127.0.0.1:${portOf(relay, "doh")}/dns-query`, {
        method: "POST",
        headers: { "content-type": "application/dns-message" },
        body: query as Uint8Array<ArrayBuffer>,
      });
      return new Uint8Array(await response.arrayBuffer());
    };
    const dohPadded = await post(padded);
    expect(readRcode(dohPadded)).toBe(0);
    expect(dohPadded.length % 468).toBe(0);
    expect(codes(dohPadded)).toContain(PADDING);
    expect(codes(await post(plain))).not.toContain(PADDING);

    // kdig, an independent client, sees the padding too.
    const kdig = await run("kdig", [
      "@127.0.0.1",
      "-p",
      String(dot),
      "+tls",
      `+tls-ca=${certs.caFile}`,
      "+tls-hostname=dns.test",
      "+padding",
      "+timeout=3",
      "+retry=0",
      "www.relay.test",
    ]);
    expect(kdig.stdout).toContain("NOERROR");
    expect(kdig.stdout).toMatch(/PADDING/);
  });

  it("the cache never stores or serves an upstream's NSID, cookie, keepalive or padding; EDE stays", async () => {
    const relay = await relayTo(secure(`tls://127.0.0.1:${decorating.tlsPort}`), {
      cache: { size: 100 },
    });
    const seen = decorating.queries.length;
    const query = ednsQuery("www.relay.test");
    const first = await tcpPipeline(portOf(relay, "tcp"), [query]);
    const second = await tcpPipeline(portOf(relay, "tcp"), [query]);
    expect(first.length + second.length).toBe(2);
    expect(decorating.queries.length - seen).toBe(1); // the second came from the cache
    for (const answer of [...first, ...second]) {
      expect(readRcode(answer)).toBe(0);
      expect(codes(answer)).toEqual([EDE]);
    }
    const udp = await udpFrom("127.0.0.1", portOf(relay, "udp"), query);
    expect(udp).toBeDefined();
    expect(codes(udp as Uint8Array)).toEqual([EDE]);
  });
});

describe("the origin endpoint (worker → relay hop)", () => {
  it("passes on none of the worker's options but ECS, and pads its answer for a padded query", async () => {
    const env = "DOH_EDGE_EDNS_TEST_TOKEN";
    process.env[env] = "edns-token";
    const relay = await startTestRelay({
      listen: { origin: { addr: "127.0.0.1:8853", token_env: env } },
      upstreams: [{ name: "rec", url: `udp://127.0.0.1:${recorder.port}` }],
    });
    relays.push(relay);
    delete process.env[env];
    const seen = recorder.queries.length;
    const query = addOptions(ednsQuery("www.relay.test"), [
      { code: COOKIE, data: new Uint8Array(8).fill(3) },
      { code: ECS, data: Uint8Array.of(0, 1, 24, 0, 192, 0, 2) },
      { code: PADDING, data: new Uint8Array(60) },
    ]);
    const response = await fetch(`http://127.0.0.1:${portOf(relay, "origin")}/origin/rec`, {
      method: "POST",
      headers: { authorization: "Bearer edns-token", "content-type": "application/dns-message" },
      body: query as Uint8Array<ArrayBuffer>,
    });
    expect(response.status).toBe(200);
    const answer = new Uint8Array(await response.arrayBuffer());
    expect(readRcode(answer)).toBe(0);
    expect(answer.length % 468).toBe(0);
    const sent = recorder.queries.slice(seen);
    expect(sent.map((q) => q.transport)).toEqual(["udp"]);
    expect(codes(sent[0]!.bytes)).toEqual([ECS]); // plain UDP: not padded either
  });
});
