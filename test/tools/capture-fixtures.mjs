#!/usr/bin/env node
// Regenerates the DNS message fixtures used by test/shared/wire*.test.ts and
// codec.test.ts:
//
//   test/fixtures/packets/captured.json   real queries and responses
//   test/fixtures/malformed/corpus.json   malformed messages, each with what is wrong
//
// Captured packets: starts nsd (authoritative for a small test zone) and
// unbound (recursive, stub zone to nsd) on loopback ports, points dig and
// kdig at a small UDP+TCP proxy that records every query and response byte,
// then stops everything and removes the temp dir.
//
//   node test/tools/capture-fixtures.mjs                 both files
//   node test/tools/capture-fixtures.mjs --malformed-only the corpus only (no servers)
//
// Needs nsd, unbound, dig (bind9-dnsutils) and kdig (knot-dnsutils).

import { execFile, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const packetsFile = join(root, "test/fixtures/packets/captured.json");
const corpusFile = join(root, "test/fixtures/malformed/corpus.json");

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const ZONE = "fixtures.test.";

// ---------------------------------------------------------------------------
// The test zone. RRSIG/DNSKEY data is well-formed but not a real signature:
// the servers only serve it (no validator runs), which is all the wire
// helpers need to see DNSSEC records in DO-bit answers.

const b64 = (seed, length) =>
  Buffer.from(Array.from({ length }, (_, i) => (seed * 31 + i * 7) & 0xff)).toString("base64");
const rrsig = (type, labels, ttl, seed) =>
  `RRSIG ${type} 13 ${labels} ${ttl} 20300101000000 20200101000000 4711 ${ZONE} ${b64(seed, 64)}`;
const longString = (char) => `"${char.repeat(250)}"`;

const zoneText = `$ORIGIN ${ZONE}
$TTL 3600
@        3600  IN SOA   ns1.${ZONE} hostmaster.${ZONE} 2024010101 7200 3600 1209600 300
@        3600  IN ${rrsig("SOA", 2, 3600, 1)}
@        86400 IN NS    ns1
@        86400 IN NS    ns2
@        3600  IN DNSKEY 257 3 13 ${b64(2, 64)}
@        3600  IN DNSKEY 256 3 13 ${b64(3, 64)}
@        3600  IN ${rrsig("DNSKEY", 2, 3600, 4)}
@        600   IN MX    10 mail
@        600   IN MX    20 mail2.${ZONE}
ns1      3600  IN A     127.0.0.53
ns2      3600  IN AAAA  2001:db8::53
mail     1200  IN A     192.0.2.25
mail     1200  IN AAAA  2001:db8::25
mail2    1800  IN A     192.0.2.26
a        300   IN A     192.0.2.1
a        300   IN A     192.0.2.2
a        300   IN ${rrsig("A", 3, 300, 5)}
a        250   IN AAAA  2001:db8::1
www      120   IN CNAME web
web      60    IN CNAME a
MiXeD    300   IN A     192.0.2.9
txt      900   IN TXT   "hello world" "second string"
big      500   IN TXT   ${longString("x")} ${longString("y")} ${longString("z")} ${longString("w")}
${Array.from({ length: 40 }, (_, i) => `many     700   IN A     10.0.0.${i + 1}`).join("\n")}
_sip._udp 3600 IN SRV   10 60 5060 mail
svc      300   IN HTTPS 1 . alpn=h2,h3 port=8443
caa      300   IN CAA   0 issue "ca.example"
opaque   300   IN TYPE65534 \\# 4 deadbeef
with\\.dot 300 IN A     192.0.2.77
`;

// Each case: which server, which client and arguments, and the name asked
// (kept in the fixture so tests compare against the command, not the code).
const cases = [
  { name: "a-udp-noedns", via: "unbound", tool: "dig", qname: `a.${ZONE}`, args: ["A", "+noedns"] },
  { name: "a-udp-edns-cookie", via: "unbound", tool: "dig", qname: `a.${ZONE}`, args: ["A"] },
  { name: "a-kdig-edns", via: "unbound", tool: "kdig", qname: `a.${ZONE}`, args: ["A", "+edns"] },
  { name: "aaaa", via: "unbound", tool: "dig", qname: `a.${ZONE}`, args: ["AAAA"] },
  { name: "cname-chain", via: "unbound", tool: "dig", qname: `www.${ZONE}`, args: ["A"] },
  { name: "mx-with-glue", via: "nsd", tool: "dig", qname: ZONE, args: ["MX", "+norecurse"] },
  {
    name: "ns-with-glue",
    via: "nsd",
    tool: "kdig",
    qname: ZONE,
    args: ["NS", "+norecurse", "+edns"],
  },
  { name: "soa-authoritative", via: "nsd", tool: "kdig", qname: ZONE, args: ["SOA", "+norecurse"] },
  { name: "txt", via: "unbound", tool: "dig", qname: `txt.${ZONE}`, args: ["TXT"] },
  {
    name: "txt-big-edns",
    via: "unbound",
    tool: "dig",
    qname: `big.${ZONE}`,
    args: ["TXT", "+bufsize=4096"],
  },
  {
    name: "txt-big-udp-truncated",
    via: "nsd",
    tool: "dig",
    qname: `big.${ZONE}`,
    args: ["TXT", "+noedns", "+ignore", "+norecurse"],
  },
  {
    name: "txt-big-tcp",
    via: "unbound",
    tool: "dig",
    qname: `big.${ZONE}`,
    args: ["TXT", "+tcp", "+noedns"],
  },
  {
    name: "many-a-edns",
    via: "nsd",
    tool: "kdig",
    qname: `many.${ZONE}`,
    args: ["A", "+bufsize=4096", "+norecurse"],
  },
  { name: "nxdomain", via: "unbound", tool: "dig", qname: `nope.${ZONE}`, args: ["A"] },
  {
    name: "nxdomain-noedns",
    via: "nsd",
    tool: "kdig",
    qname: `nope.${ZONE}`,
    args: ["A", "+norecurse"],
  },
  { name: "nodata", via: "unbound", tool: "dig", qname: `a.${ZONE}`, args: ["MX"] },
  {
    name: "nodata-dnssec-nsd",
    via: "nsd",
    tool: "kdig",
    qname: `a.${ZONE}`,
    args: ["TXT", "+dnssec", "+norecurse"],
  },
  { name: "dnssec-do-a", via: "unbound", tool: "kdig", qname: `a.${ZONE}`, args: ["A", "+dnssec"] },
  {
    name: "dnssec-dnskey",
    via: "nsd",
    tool: "kdig",
    qname: ZONE,
    args: ["DNSKEY", "+dnssec", "+norecurse"],
  },
  { name: "srv", via: "unbound", tool: "dig", qname: `_sip._udp.${ZONE}`, args: ["SRV"] },
  {
    name: "https-svcb",
    via: "unbound",
    tool: "kdig",
    qname: `svc.${ZONE}`,
    args: ["HTTPS", "+edns"],
  },
  { name: "caa", via: "unbound", tool: "dig", qname: `caa.${ZONE}`, args: ["CAA"] },
  {
    name: "unknown-type",
    via: "nsd",
    tool: "dig",
    qname: `opaque.${ZONE}`,
    args: ["TYPE65534", "+norecurse"],
  },
  {
    name: "mixed-case-0x20",
    via: "unbound",
    tool: "dig",
    qname: `mIxEd.FiXtUrEs.TeSt.`,
    args: ["A"],
  },
  {
    name: "escaped-dot-label",
    via: "nsd",
    tool: "dig",
    qname: `with\\.dot.${ZONE}`,
    args: ["A", "+norecurse"],
  },
  {
    name: "nsid-cookie-options",
    via: "nsd",
    tool: "kdig",
    qname: `a.${ZONE}`,
    args: ["A", "+nsid", "+cookie"],
  },
  {
    name: "refused-blocked-ede",
    via: "unbound",
    tool: "dig",
    qname: "ads.blocked.test.",
    args: ["A"],
  },
  {
    name: "refused-blocked-noedns",
    via: "unbound",
    tool: "kdig",
    qname: "ads.blocked.test.",
    args: ["A"],
  },
  // unbound refuses this source address by access-control and says why with EDE 18 (Prohibited)
  {
    name: "refused-prohibited-ede",
    via: "unbound",
    source: "127.0.0.2",
    tool: "dig",
    qname: `a.${ZONE}`,
    args: ["A"],
  },
  {
    name: "refused-prohibited-noedns",
    via: "unbound",
    source: "127.0.0.2",
    tool: "kdig",
    qname: `a.${ZONE}`,
    args: ["A", "+noedns"],
  },
  {
    name: "refused-not-authoritative",
    via: "nsd",
    tool: "dig",
    qname: "example.org.",
    args: ["A"],
  },
  { name: "root-ns-query", via: "nsd", tool: "kdig", qname: ".", args: ["NS", "+norecurse"] },
];

// ---------------------------------------------------------------------------
// Processes and ports

async function freePort() {
  for (let i = 0; i < 20; i++) {
    const tcp = createServer();
    await new Promise((resolve) => tcp.listen(0, "127.0.0.1", resolve));
    const { port } = tcp.address();
    const udp = createSocket("udp4");
    const ok = await new Promise((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, "127.0.0.1", () => resolve(true));
    });
    udp.close();
    await new Promise((resolve) => tcp.close(resolve));
    if (ok) return port;
  }
  throw new Error("no free port");
}

function startProcess(command, args) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => {
    log += d;
  });
  child.stderr.on("data", (d) => {
    log += d;
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return {
    child,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Waits until something answers a SOA query for `name` on UDP `port`. */
async function waitForDns(port, proc) {
  const query = Buffer.from(
    "abcd01000001000000000000" + "0866697874757265730474657374000006" + "0001",
    "hex",
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`server exited:\n${proc.log()}`);
    const answer = await new Promise((resolve) => {
      const socket = createSocket("udp4");
      const timer = setTimeout(() => done(false), 200);
      const done = (ok) => {
        clearTimeout(timer);
        socket.close();
        resolve(ok);
      };
      socket.on("message", () => done(true));
      socket.on("error", () => done(false));
      socket.send(query, port, "127.0.0.1");
    });
    if (answer) return;
  }
  throw new Error(`no DNS answer on port ${port}:\n${proc.log()}`);
}

// ---------------------------------------------------------------------------
// A recording proxy: UDP and TCP on one port, forwarding to `target.port`.

async function startRecorder(port) {
  const target = { port: 0, source: "127.0.0.1" };
  const exchanges = [];
  const udp = createSocket("udp4");
  udp.on("message", (query, client) => {
    const upstream = createSocket("udp4");
    const entry = { transport: "udp", query: new Uint8Array(query), responses: [] };
    exchanges.push(entry);
    upstream.on("message", (response) => {
      entry.responses.push(new Uint8Array(response));
      udp.send(response, client.port, client.address);
      upstream.close();
    });
    upstream.bind(0, target.source, () => upstream.send(query, target.port, "127.0.0.1"));
    setTimeout(() => {
      try {
        upstream.close();
      } catch {}
    }, 3000).unref();
  });
  await new Promise((resolve) => udp.bind(port, "127.0.0.1", resolve));

  const deframe = (onMessage) => {
    let pending = Buffer.alloc(0);
    return (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const size = pending.readUInt16BE(0);
        onMessage(new Uint8Array(pending.subarray(2, 2 + size)));
        pending = pending.subarray(2 + size);
      }
    };
  };
  const tcp = createServer((client) => {
    const upstream = createConnection({
      port: target.port,
      host: "127.0.0.1",
      localAddress: target.source,
    });
    let entry;
    const fromClient = deframe((query) => {
      entry = { transport: "tcp", query, responses: [] };
      exchanges.push(entry);
    });
    const fromUpstream = deframe((response) => entry?.responses.push(response));
    client.on("data", (d) => {
      fromClient(d);
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      fromUpstream(d);
      client.write(d);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise((resolve) => tcp.listen(port, "127.0.0.1", resolve));
  return {
    target,
    exchanges,
    async close() {
      udp.close();
      await new Promise((resolve) => tcp.close(resolve));
    },
  };
}

async function capturePackets() {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-capture-"));
  const stops = [];
  try {
    const [nsdPort, unboundPort, proxyPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    await writeFile(join(dir, "fixtures.zone"), zoneText);
    await writeFile(
      join(dir, "nsd.conf"),
      `server:
  ip-address: 127.0.0.1@${nsdPort}
  username: ""
  chroot: ""
  zonesdir: "${dir}"
  pidfile: "${dir}/nsd.pid"
  database: ""
  xfrdfile: "${dir}/xfrd.state"
  zonelistfile: "${dir}/zone.list"
  server-count: 1
  verbosity: 1
  hide-version: yes
  nsid: "ascii_nsd-fixtures"
remote-control:
  control-enable: no
zone:
  name: "${ZONE}"
  zonefile: "fixtures.zone"
`,
    );
    await writeFile(
      join(dir, "unbound.conf"),
      `server:
  interface: 127.0.0.1
  port: ${unboundPort}
  do-ip6: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  access-control: 127.0.0.2/32 refuse
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: no
  ede: yes
  local-zone: "test." nodefault
  local-zone: "blocked.test." always_refuse
stub-zone:
  name: "${ZONE}"
  stub-addr: 127.0.0.1@${nsdPort}
remote-control:
  control-enable: no
`,
    );
    const nsd = startProcess("nsd", ["-d", "-c", join(dir, "nsd.conf")]);
    stops.push(() => nsd.stop());
    await waitForDns(nsdPort, nsd);
    const unbound = startProcess("unbound", ["-d", "-c", join(dir, "unbound.conf")]);
    stops.push(() => unbound.stop());
    await waitForDns(unboundPort, unbound);
    const recorder = await startRecorder(proxyPort);
    stops.push(() => recorder.close());

    const ports = { nsd: nsdPort, unbound: unboundPort };
    const packets = [];
    for (const c of cases) {
      recorder.target.port = ports[c.via];
      recorder.target.source = c.source ?? "127.0.0.1";
      const before = recorder.exchanges.length;
      const args =
        c.tool === "dig"
          ? ["@127.0.0.1", "-p", String(proxyPort), "+tries=1", "+time=3", c.qname, ...c.args]
          : ["@127.0.0.1", "-p", String(proxyPort), "+retry=0", "+time=3", c.qname, ...c.args];
      await run(c.tool, args).catch((error) => {
        // kdig exits non-zero for REFUSED and friends; the bytes are what matter.
        if (!error.stdout) throw error;
      });
      const exchange = recorder.exchanges.slice(before).find((e) => e.responses.length > 0);
      if (!exchange) throw new Error(`${c.name}: no response recorded`);
      packets.push({
        name: c.name,
        server: c.via,
        ...(c.source ? { source: c.source } : {}),
        transport: exchange.transport,
        command: `${c.tool} ${args.filter((a) => !/^(@|-p$|\d+$|\+tries|\+retry|\+time)/.test(a)).join(" ")}`,
        qname: c.qname,
        query: hex(exchange.query),
        response: hex(exchange.responses[0]),
      });
      console.log(
        `captured ${c.name}: ${exchange.query.length} + ${exchange.responses[0].length} bytes`,
      );
    }
    const versions = {
      nsd: (await run("nsd", ["-v"]).catch((e) => e)).stderr?.split("\n")[0] ?? "nsd",
      unbound: (await run("unbound", ["-V"])).stdout.split("\n")[0],
    };
    await writeFile(
      packetsFile,
      `${JSON.stringify(
        {
          generator: "test/tools/capture-fixtures.mjs",
          servers: `${versions.nsd.trim()}; unbound ${versions.unbound.trim()}`,
          zone: ZONE,
          packets,
        },
        null,
        2,
      )}\n`,
    );
    console.log(`wrote ${packets.length} captured exchanges to ${packetsFile}`);
  } finally {
    for (const stop of stops.reverse()) await stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// The malformed corpus. Built by hand from byte pieces so every case says
// exactly what is wrong. `walk` is the DnsWireError code a validating reader
// (walkRecords, readRcode, minTtl, ...) must report, or "ok" when the message
// is well-formed as a whole but odd (the case then targets a specific helper).
// Long cases give `padTo`/`padHex`: append padHex until the length is padTo.

const h = (...parts) =>
  parts
    .map((p) => (typeof p === "number" ? p.toString(16).padStart(2, "0") : p.replace(/\s+/g, "")))
    .join("");
const u16 = (n) => h((n >> 8) & 0xff, n & 0xff);
const u32 = (n) => h(u16((n >>> 16) & 0xffff), u16(n & 0xffff));
/** header: id 0x1234, flags, counts */
const header = (flags, qd, an, ns, ar) => h("1234", u16(flags), u16(qd), u16(an), u16(ns), u16(ar));
const label = (text) => h(text.length, Buffer.from(text).toString("hex"));
const name = (...labels) => h(...labels.map(label), "00");
const EXAMPLE = name("example", "com"); // at offset 12 in most cases: 13 bytes
const q = (wireName, type = 1) => h(wireName, u16(type), u16(1));
const rr = (owner, type, ttl, rdata) =>
  h(owner, u16(type), u16(1), u32(ttl), u16(rdata.length / 2), rdata);
const opt = (rdata, { udp = 1232, ttl = 0, owner = "00" } = {}) =>
  h(owner, u16(41), u16(udp), u32(ttl), u16(rdata.length / 2), rdata);
const ptr = (offset) => u16(0xc000 | offset);
const RESP = 0x8180; // QR RD RA
const QUERY = 0x0100; // RD
const A = (ip) => h(...ip.split(".").map(Number));

function buildCorpus() {
  const cases = [];
  const add = (name, problem, walk, hexText, extra = {}) =>
    cases.push({ name, problem, walk, hex: hexText, ...extra });

  // sizes
  add("empty", "zero-length message", "short_message", "");
  add("one-byte", "a single byte", "short_message", "12");
  add(
    "eleven-bytes",
    "one byte short of a header",
    "short_message",
    header(RESP, 0, 0, 0, 0).slice(0, 22),
  );
  add(
    "header-only",
    "a bare header with all counts 0 (valid, no question)",
    "ok",
    header(RESP, 0, 0, 0, 0),
  );
  {
    // A valid message of exactly 65,535 bytes: one answer whose RDATA fills the rest.
    const prefix = h(header(RESP, 1, 1, 0, 0), q(EXAMPLE, 10), ptr(12), u16(10), u16(1), u32(60));
    const rdlength = 65535 - prefix.length / 2 - 2;
    add(
      "max-size-65535",
      "exactly 65,535 bytes (valid: NULL record filling the message)",
      "ok",
      h(prefix, u16(rdlength)),
      {
        padTo: 65535,
        padHex: "00",
      },
    );
  }
  add(
    "oversize-65536",
    "65,536 bytes, one more than a DNS message can hold",
    "too_large",
    header(RESP, 1, 0, 0, 0),
    {
      padTo: 65536,
      padHex: "00",
    },
  );
  add("oversize-70000", "70,000 bytes", "too_large", header(QUERY, 1, 0, 0, 0), {
    padTo: 70000,
    padHex: "c0",
  });
  add(
    "max-size-pointer-soup",
    "65,535 bytes of self-pointers after a question count of 65,535",
    "pointer_loop",
    header(QUERY, 65535, 65535, 65535, 65535),
    { padTo: 65535, padHex: "c00c" },
  );
  add(
    "max-size-zero-labels",
    "65,535 bytes: counts 65,535, root-name questions until the data runs out mid-question",
    "truncated_record",
    header(QUERY, 65535, 65535, 65535, 65535),
    { padTo: 65535, padHex: "00" },
  );

  // question section
  add("qdcount-0-query", "a query with no question", "ok", header(QUERY, 0, 0, 0, 0), {
    question: "no_question",
  });
  add(
    "question-odd-bytes",
    "question name with '.', '\\', space, NUL and 0xff bytes in a label (valid)",
    "ok",
    h(header(QUERY, 1, 0, 0, 0), "08", "612e625c632000ff", label("Com"), "00", u16(1), u16(1)),
    { question: "a\\.b\\\\c\\032\\000\\255.com." },
  );
  add(
    "question-upper-case",
    "question name in mixed case (valid)",
    "ok",
    h(header(QUERY, 1, 0, 0, 0), q(name("ExAmPlE", "CoM"))),
    {
      question: "example.com.",
    },
  );
  add(
    "question-root",
    "question for the root (valid)",
    "ok",
    h(header(QUERY, 1, 0, 0, 0), q("00", 2)),
    { question: "." },
  );
  add(
    "cname-rdata-forward-pointer",
    "CNAME whose target is a forward pointer (RDATA is opaque to the walker; the codec rejects it)",
    "ok",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), rr(ptr(12), 5, 60, ptr(0x3000))),
    { decode: "decode_failed" },
  );
  add(
    "a-rdata-wrong-length-decode",
    "A record with 2 bytes of RDATA (walks; the codec must not misalign)",
    "ok",
    h(
      header(RESP, 1, 2, 0, 0),
      q(EXAMPLE),
      rr(ptr(12), 1, 60, "0102"),
      rr(ptr(12), 1, 60, A("1.2.3.4")),
    ),
    { decode: "decode_failed" },
  );
  add(
    "qdcount-1-no-data",
    "QDCOUNT 1 but the message ends after the header",
    "count_mismatch",
    header(QUERY, 1, 0, 0, 0),
  );
  add(
    "qdcount-2-one-question",
    "QDCOUNT 2, one question present",
    "count_mismatch",
    h(header(QUERY, 2, 0, 0, 0), q(EXAMPLE)),
  );
  add(
    "question-no-type",
    "question name without TYPE/CLASS",
    "truncated_record",
    h(header(QUERY, 1, 0, 0, 0), EXAMPLE),
  );
  add(
    "question-half-type",
    "question cut inside TYPE",
    "truncated_record",
    h(header(QUERY, 1, 0, 0, 0), EXAMPLE, "00"),
  );
  add(
    "question-no-class",
    "question without CLASS",
    "truncated_record",
    h(header(QUERY, 1, 0, 0, 0), EXAMPLE, u16(1)),
  );
  add(
    "question-half-class",
    "question cut inside CLASS",
    "truncated_record",
    h(header(QUERY, 1, 0, 0, 0), EXAMPLE, u16(1), "00"),
  );

  // names: labels
  add(
    "label-past-end",
    "label length 63 with 3 bytes left",
    "truncated_name",
    h(header(QUERY, 1, 0, 0, 0), "3f616263"),
  );
  add(
    "label-no-terminator",
    "labels run to the end without a zero byte",
    "truncated_name",
    h(header(QUERY, 1, 0, 0, 0), label("example")),
  );
  add(
    "label-length-only",
    "a label length byte and nothing else",
    "truncated_name",
    h(header(QUERY, 1, 0, 0, 0), "05"),
  );
  add(
    "label-type-0x40",
    "extended label type 0x40 (RFC 6891 deprecated)",
    "bad_label_type",
    h(header(QUERY, 1, 0, 0, 0), "41", "00", u16(1), u16(1)),
  );
  add(
    "label-type-0x80",
    "reserved label type 0x80",
    "bad_label_type",
    h(header(QUERY, 1, 0, 0, 0), "80", "00", u16(1), u16(1)),
  );
  add(
    "label-type-0x7f",
    "label byte 0x7f = type 0x40",
    "bad_label_type",
    h(header(QUERY, 1, 0, 0, 0), "7f", "00".repeat(127), u16(1), u16(1)),
  );
  add(
    "label-type-in-answer",
    "bad label type in an answer owner",
    "bad_label_type",
    h(
      header(RESP, 1, 1, 0, 0),
      q(EXAMPLE),
      "bf",
      "00",
      u16(1),
      u16(1),
      u32(1),
      u16(4),
      A("1.2.3.4"),
    ),
  );
  {
    const long = Array.from({ length: 4 }, () => label("a".repeat(63))).join(""); // 256 bytes + terminator
    add(
      "name-256-octets",
      "name of 4 x 63-octet labels: 257 octets in wire form",
      "name_too_long",
      h(header(QUERY, 1, 0, 0, 0), long, "00", u16(1), u16(1)),
    );
    const max = h(
      label("a".repeat(63)),
      label("b".repeat(63)),
      label("c".repeat(63)),
      label("d".repeat(61)),
      "00",
    ); // 255
    add(
      "name-255-octets",
      "longest legal name: 255 octets (valid)",
      "ok",
      h(header(QUERY, 1, 0, 0, 0), max, u16(1), u16(1)),
    );
    const over = h(
      label("a".repeat(63)),
      label("b".repeat(63)),
      label("c".repeat(63)),
      label("d".repeat(62)),
      "00",
    ); // 256
    add(
      "name-256-by-one",
      "name of 256 octets, one over the limit",
      "name_too_long",
      h(header(QUERY, 1, 0, 0, 0), over, u16(1), u16(1)),
    );
    // 255 octets only when the compressed suffix is followed
    const suffix = h(label("a".repeat(63)), label("b".repeat(63)), label("c".repeat(63)), "00"); // 193 at offset 12
    add(
      "name-too-long-via-pointer",
      "answer owner: 63-octet label + pointer to a 193-octet name = 257 octets",
      "name_too_long",
      h(
        header(RESP, 1, 1, 0, 0),
        q(suffix),
        label("x".repeat(63)),
        ptr(12),
        u16(1),
        u16(1),
        u32(1),
        u16(4),
        A("1.2.3.4"),
      ),
    );
    add(
      "many-empty-labels",
      "128 one-octet labels: 257 octets",
      "name_too_long",
      h(header(QUERY, 1, 0, 0, 0), "0161".repeat(128), "00", u16(1), u16(1)),
    );
  }

  // names: compression pointers
  add(
    "pointer-self",
    "question name is a pointer to itself",
    "pointer_loop",
    h(header(QUERY, 1, 0, 0, 0), ptr(12), u16(1), u16(1)),
  );
  add(
    "pointer-after-label-to-own-start",
    "label then pointer back to the start of the same name",
    "pointer_loop",
    h(header(QUERY, 1, 0, 0, 0), label("a"), ptr(12), u16(1), u16(1)),
  );
  add(
    "pointer-two-step-loop",
    "answer owner at 29 points to 31, which points back to 29",
    "forward_pointer",
    h(
      header(RESP, 1, 1, 0, 0),
      q(EXAMPLE),
      ptr(31),
      ptr(29),
      u16(1),
      u16(1),
      u32(1),
      u16(4),
      A("1.2.3.4"),
    ),
  );
  add(
    "pointer-label-loop-in-answer",
    "answer owner: label x at 29, then a pointer back to 29",
    "pointer_loop",
    h(
      header(RESP, 1, 1, 0, 0),
      q(EXAMPLE),
      label("x"),
      ptr(29),
      u16(1),
      u16(1),
      u32(1),
      u16(4),
      A("1.2.3.4"),
    ),
  );
  add(
    "pointer-forward",
    "question name points forward",
    "forward_pointer",
    h(header(QUERY, 1, 0, 0, 0), ptr(20), u16(1), u16(1), EXAMPLE),
  );
  add(
    "pointer-past-end",
    "pointer to an offset beyond the message",
    "forward_pointer",
    h(header(QUERY, 1, 0, 0, 0), ptr(0x3fff), u16(1), u16(1)),
  );
  add(
    "pointer-cut",
    "message ends after the first pointer byte",
    "truncated_name",
    h(header(QUERY, 1, 0, 0, 0), "c0"),
  );
  add(
    "pointer-into-header-bad-label",
    "answer owner points at offset 3 (the flags byte 0x80 read as a label type)",
    "bad_label_type",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), ptr(3), u16(1), u16(1), u32(1), u16(4), A("1.2.3.4")),
  );
  add(
    "pointer-into-header-valid",
    "answer owner points at offset 5: the counts 01 00 01 00 00 read as the name \\000.\\000. (odd but bounded)",
    "ok",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), ptr(5), u16(1), u16(1), u32(1), u16(4), A("1.2.3.4")),
  );
  {
    // 200 pointers in a NULL record's RDATA (offset 41 on), each to the one
    // before, the first to example.com; a second answer's owner enters the chain
    // at its end: valid, and 200 jumps deep.
    const chain = Array.from({ length: 200 }, (_, i) => ptr(i === 0 ? 12 : 41 + 2 * (i - 1))).join(
      "",
    );
    add(
      "pointer-chain-200",
      "an owner name reached through 200 chained pointers (valid)",
      "ok",
      h(
        header(RESP, 1, 2, 0, 0),
        q(EXAMPLE),
        rr(ptr(12), 10, 60, chain),
        rr(ptr(41 + 2 * 199), 1, 60, A("1.2.3.4")),
      ),
    );
  }

  // records
  add(
    "answer-count-no-data",
    "ANCOUNT 1, message ends after the question",
    "count_mismatch",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE)),
  );
  add(
    "answer-count-65535",
    "ANCOUNT 65535, one answer present",
    "count_mismatch",
    h(header(RESP, 1, 65535, 0, 0), q(EXAMPLE), rr(ptr(12), 1, 60, A("1.2.3.4"))),
  );
  add(
    "authority-count-extra",
    "NSCOUNT 3, no authority records",
    "count_mismatch",
    h(header(RESP, 1, 0, 3, 0), q(EXAMPLE)),
  );
  add(
    "additional-count-extra",
    "ARCOUNT 2, one OPT present",
    "count_mismatch",
    h(header(RESP, 1, 0, 0, 2), q(EXAMPLE), opt("")),
  );
  add(
    "record-no-type",
    "answer owner name then nothing",
    "truncated_record",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), ptr(12)),
  );
  add(
    "record-cut-in-ttl",
    "answer cut inside TTL",
    "truncated_record",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), ptr(12), u16(1), u16(1), "0000"),
  );
  add(
    "record-no-rdlength",
    "answer without RDLENGTH",
    "truncated_record",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), ptr(12), u16(1), u16(1), u32(60)),
  );
  add(
    "rdata-past-end",
    "RDLENGTH 4 with 2 bytes of RDATA",
    "truncated_record",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), ptr(12), u16(1), u16(1), u32(60), u16(4), "0102"),
  );
  add(
    "rdata-65535",
    "RDLENGTH 65535 in a short message",
    "truncated_record",
    h(
      header(RESP, 1, 1, 0, 0),
      q(EXAMPLE),
      ptr(12),
      u16(16),
      u16(1),
      u32(60),
      u16(65535),
      "05",
      "68656c6c6f",
    ),
  );
  add(
    "a-rdlength-6",
    "A record with 6 bytes of RDATA (walks, but not a valid A)",
    "ok",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), rr(ptr(12), 1, 60, "010203040506")),
    {
      decode: "decode_failed",
    },
  );
  add(
    "trailing-garbage",
    "valid answer followed by 5 stray bytes",
    "ok",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), rr(ptr(12), 1, 60, A("1.2.3.4")), "deadbeef00"),
  );
  add(
    "ttl-msb-set",
    "TTL 0x80000000 (RFC 2181: counts as 0)",
    "ok",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), rr(ptr(12), 1, 0x80000000, A("1.2.3.4"))),
  );
  {
    // SOA in authority with RDATA too short to hold the five counters
    const soa = h(name("ns", "example", "com"), name("host", "example", "com"), u32(1), u32(2));
    add(
      "soa-rdata-short",
      "NXDOMAIN with an SOA lacking REFRESH..MINIMUM",
      "ok",
      h(header(0x8183, 1, 0, 1, 0), q(EXAMPLE), rr(ptr(12), 6, 300, soa)),
      {
        ttl: "bad_rdata",
      },
    );
    const soaPtr = h("c0ff", ptr(12), u32(1), u32(2), u32(3), u32(4), u32(5));
    add(
      "soa-mname-forward-pointer",
      "NXDOMAIN whose SOA MNAME points forward",
      "ok",
      h(header(0x8183, 1, 0, 1, 0), q(EXAMPLE), rr(ptr(12), 6, 300, soaPtr)),
      {
        ttl: "forward_pointer",
      },
    );
    const soaCut = h(label("ns"), label("example"));
    add(
      "soa-mname-past-rdata",
      "NODATA whose SOA MNAME runs past its RDATA",
      "ok",
      h(header(0x8180, 1, 0, 1, 0), q(EXAMPLE), rr(ptr(12), 6, 300, soaCut), name("com")),
      {
        ttl: "truncated_name",
      },
    );
  }

  // OPT
  add(
    "opt-option-past-rdata",
    "OPT option length 10 with 2 bytes of data",
    "ok",
    h(header(QUERY, 1, 0, 0, 1), q(EXAMPLE), opt(h(u16(10), u16(10), "0000"))),
    { edns: "bad_opt" },
  );
  add(
    "opt-option-header-cut",
    "OPT RDATA of 3 bytes: half an option header",
    "ok",
    h(header(QUERY, 1, 0, 0, 1), q(EXAMPLE), opt("000a00")),
    { edns: "bad_opt" },
  );
  add(
    "opt-option-len-65535",
    "OPT option claiming 65535 bytes",
    "ok",
    h(header(QUERY, 1, 0, 0, 1), q(EXAMPLE), opt(h(u16(15), u16(65535), "0000"))),
    { edns: "bad_opt" },
  );
  add(
    "opt-two-records",
    "two OPT records (RFC 6891: FORMERR)",
    "ok",
    h(header(QUERY, 1, 0, 0, 2), q(EXAMPLE), opt(""), opt("")),
    { edns: "bad_opt", rcode: "bad_opt" },
  );
  add(
    "opt-non-root-owner",
    "OPT owned by example.com",
    "ok",
    h(header(QUERY, 1, 0, 0, 1), q(EXAMPLE), opt("", { owner: ptr(12) })),
    { edns: "bad_opt", rcode: "bad_opt" },
  );
  add(
    "opt-rdlength-past-end",
    "OPT RDLENGTH 8 with 4 bytes",
    "truncated_record",
    h(header(QUERY, 1, 0, 0, 1), q(EXAMPLE), "00", u16(41), u16(1232), u32(0), u16(8), "000a0000"),
  );
  add(
    "opt-extended-rcode-badvers",
    "response with extended RCODE 1 (BADVERS = 16, valid)",
    "ok",
    h(header(0x8180, 1, 0, 0, 1), q(EXAMPLE), opt("", { ttl: 0x01000000 })),
    { rcode: 16 },
  );
  add(
    "opt-in-answer-section",
    "an OPT record in the answer section (ignored by readEdns)",
    "ok",
    h(header(RESP, 1, 1, 0, 0), q(EXAMPLE), opt("", { ttl: 0x01000000 })),
    { edns: "none", rcode: 0 },
  );
  add(
    "opt-ede-empty-text",
    "EDE option of 2 bytes (info-code only, valid)",
    "ok",
    h(header(0x8182, 1, 0, 0, 1), q(EXAMPLE), opt(h(u16(15), u16(2), u16(22)))),
  );
  add(
    "opt-ede-1-byte",
    "EDE option of 1 byte (too short for an info-code; opaque to the walker)",
    "ok",
    h(header(0x8182, 1, 0, 0, 1), q(EXAMPLE), opt(h(u16(15), u16(1), "16"))),
  );

  // whole-message oddities
  add("all-ff-header", "12 bytes of 0xff: every count 65535", "count_mismatch", "ff".repeat(12));
  add("all-c0", "64 bytes of 0xc0", "forward_pointer", "c0".repeat(64));
  add("all-3f", "64 bytes of 0x3f", "truncated_name", "3f".repeat(64));
  add(
    "random-looking",
    "fixed pseudo-random bytes",
    "bad_label_type",
    "8a1f33c9e04d7b6210aa5f0e9c3d71b24e88f0153a6c",
  );
  add(
    "response-no-question-with-answer",
    "answer present but QDCOUNT 0 (walks; no question to read)",
    "ok",
    h(header(RESP, 0, 1, 0, 0), rr(EXAMPLE, 1, 60, A("1.2.3.4"))),
  );
  return cases;
}

async function writeCorpus() {
  const cases = buildCorpus();
  const names = new Set();
  for (const c of cases) {
    if (names.has(c.name)) throw new Error(`duplicate corpus case ${c.name}`);
    names.add(c.name);
  }
  await writeFile(
    corpusFile,
    `${JSON.stringify({ generator: "test/tools/capture-fixtures.mjs --malformed-only", cases }, null, 2)}\n`,
  );
  console.log(`wrote ${cases.length} malformed cases to ${corpusFile}`);
}

await writeCorpus();
if (!process.argv.includes("--malformed-only")) await capturePackets();
