// The differential run (issue 15): seeded queries of every shape real
// clients send, asked at once through every relay listener and both worker
// methods, and the same queries straight to unbound. Each answer is compared
// with unbound's field by field: ID, opcode, flags, RCODE, OPT presence and
// EDNS fields, the question (case kept) and the sections as sets. TTLs may
// only be lower than the zone's and must fall with the clock. Options that
// belong to one hop (cookie, keepalive, padding) are not compared.
// Used by test/stack/differential.test.ts (bounded) and bench/differential.ts.

import { readFile, rm } from "node:fs/promises";
import { connect as http2Connect } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { Relay } from "../../relay/src/relay.ts";
import {
  type DnsOption,
  type DnsPacket,
  type DnsRecord,
  decodeMessage,
  encodeMessage,
} from "../../shared/dns/codec.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { encodeBase64Url } from "../../shared/doh/base64url.ts";
import { portOf, startTestRelay } from "../relay/relay-harness.ts";
import {
  createTestCertificates,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "./dns-servers.ts";
import { udpExchange } from "./processes.ts";
import { startWranglerDev, type WranglerDev } from "./wrangler-dev.ts";

export const DIFF_ZONE_TTL = 300;

const ZONE = `$ORIGIN diff.test.
$TTL ${DIFF_ZONE_TTL}
@      IN SOA ns.diff.test. admin.diff.test. 1 3600 600 86400 ${DIFF_ZONE_TTL}
@      IN NS  ns.diff.test.
@      IN MX  10 mail.diff.test.
ns     IN A   127.0.0.1
www    IN A   192.0.2.10
www    IN AAAA 2001:db8::10
multi  IN A   192.0.2.21
multi  IN A   192.0.2.22
multi  IN A   192.0.2.23
alias  IN CNAME www.diff.test.
mail   IN A   192.0.2.25
text   IN TXT "hello" "world"
big    IN TXT "${"a".repeat(200)}"
big    IN TXT "${"b".repeat(200)}"
big    IN TXT "${"c".repeat(200)}"
big    IN TXT "${"d".repeat(200)}"
big    IN TXT "${"e".repeat(200)}"
*.wild IN A   192.0.2.30
`;

const NAMES = [
  "www.diff.test",
  "multi.diff.test",
  "alias.diff.test",
  "mail.diff.test",
  "text.diff.test",
  "big.diff.test",
  "x.wild.diff.test",
  "diff.test",
  "nope.diff.test",
  "deep.nope.diff.test",
];
const TYPES = ["A", "AAAA", "TXT", "MX", "CNAME", "NS", "SOA", "UNKNOWN_65280"];
const HOP_BY_HOP = new Set([10, 11, 12]); // cookie, tcp-keepalive, padding

const Opcode = { QUERY: 0, NOTIFY: 4, UPDATE: 5 } as const;

export interface QuerySpec {
  id: number;
  name: string;
  type: string;
  opcode: number;
  rd: boolean;
  ad: boolean;
  cd: boolean;
  edns?: {
    version: number;
    dnssecOk: boolean;
    udpSize: number;
    subnet?: string;
    cookie?: boolean;
    padding?: number;
  };
}

/** mulberry32: a small seeded PRNG, so a report names the run it came from. */
function seeded(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
  };
}

/** Random 0x20 case, as resolvers that check it send. */
function mixCase(name: string, rand: ReturnType<typeof seeded>): string {
  return Array.from(name, (c) => (rand.chance(0.5) ? c.toUpperCase() : c)).join("");
}

export function generateQueries(seed: number, count: number): QuerySpec[] {
  const rand = seeded(seed);
  const specs: QuerySpec[] = [];
  for (let i = 0; i < count; i++) {
    // A third are repeats of an earlier query (new ID and case): cache hits and coalescing.
    const earlier = specs.length > 0 && rand.chance(0.33) ? rand.pick(specs) : undefined;
    const id = 1 + (i % 0xfffe);
    if (earlier) {
      specs.push({ ...earlier, id, name: mixCase(earlier.name.toLowerCase(), rand) });
      continue;
    }
    const opcodeRoll = rand.next();
    const spec: QuerySpec = {
      id,
      name: mixCase(rand.pick(NAMES), rand),
      type: rand.pick(TYPES),
      opcode: opcodeRoll < 0.04 ? Opcode.NOTIFY : opcodeRoll < 0.07 ? Opcode.UPDATE : Opcode.QUERY,
      rd: rand.chance(0.9),
      ad: rand.chance(0.5),
      cd: rand.chance(0.2),
    };
    if (rand.chance(0.75)) {
      spec.edns = {
        version: rand.chance(0.1) ? 1 : 0,
        dnssecOk: rand.chance(0.3),
        udpSize: rand.pick([512, 1232, 4096]),
        ...(rand.chance(0.2) ? { subnet: rand.pick(["192.0.2.0", "198.51.100.0"]) } : {}),
        ...(rand.chance(0.25) ? { cookie: true } : {}),
        ...(rand.chance(0.25) ? { padding: rand.pick([0, 16, 100]) } : {}),
      };
    }
    specs.push(spec);
  }
  return specs;
}

export function encodeSpec(spec: QuerySpec): Uint8Array {
  const additionals: DnsRecord[] = [];
  if (spec.edns) {
    const options: DnsOption[] = [];
    if (spec.edns.subnet) {
      options.push({
        code: 8,
        family: 1,
        sourcePrefixLength: 24,
        scopePrefixLength: 0,
        ip: spec.edns.subnet,
      });
    }
    if (spec.edns.cookie) {
      options.push({ code: 10, data: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) });
    }
    if (spec.edns.padding !== undefined) options.push({ code: 12, length: spec.edns.padding });
    additionals.push({
      name: ".",
      type: "OPT",
      udpPayloadSize: spec.edns.udpSize,
      extendedRcode: 0,
      ednsVersion: spec.edns.version,
      flags: spec.edns.dnssecOk ? 0x8000 : 0,
      options,
    });
  }
  return encodeMessage({
    type: "query",
    id: spec.id,
    flags:
      (spec.opcode << 11) |
      (spec.rd ? 0x0100 : 0) |
      (spec.ad ? 0x0020 : 0) |
      (spec.cd ? 0x0010 : 0),
    questions: [{ name: spec.name, type: spec.type }],
    additionals,
  });
}

/** A record without its TTL; names in it compare without case (only the question keeps case). */
function recordKey(r: DnsRecord): string {
  const data = r.data instanceof Uint8Array ? Array.from(r.data).join(",") : JSON.stringify(r.data);
  return `${r.name} ${r.type} ${r.class ?? "IN"} ${data}`.toLowerCase();
}

function sectionKeys(records: DnsRecord[] | undefined): string[] {
  return (records ?? [])
    .filter((r) => r.type !== "OPT")
    .map(recordKey)
    .sort();
}

function optSummary(m: DnsPacket) {
  const opt = (m.additionals ?? []).find((r) => r.type === "OPT");
  if (!opt) return "none";
  const options = (opt.options ?? [])
    .filter((o) => !HOP_BY_HOP.has(o.code))
    .map((o) => `${o.code}:${o.data ? Array.from(o.data).join(".") : ""}`)
    .sort();
  return `v${opt.ednsVersion} xr${opt.extendedRcode} do${(opt.flags ?? 0) & 0x8000 ? 1 : 0} [${options.join(" ")}]`;
}

/** What differs between `got` and the reference answer, as lines; empty when they agree. */
export function compareAnswers(got: Uint8Array, ref: Uint8Array): string[] {
  let g: DnsPacket;
  let r: DnsPacket;
  try {
    g = decodeMessage(got);
  } catch (error) {
    return [`answer does not decode: ${(error as Error).message}`];
  }
  try {
    r = decodeMessage(ref);
  } catch (error) {
    return [`reference does not decode: ${(error as Error).message}`];
  }
  const out: string[] = [];
  const same = (what: string, a: unknown, b: unknown) => {
    const as = JSON.stringify(a);
    const bs = JSON.stringify(b);
    if (as !== bs) out.push(`${what}: got ${as}, unbound ${bs}`);
  };
  same("id", g.id, r.id);
  same("flags", (g.flags ?? 0).toString(16), (r.flags ?? 0).toString(16));
  same("question", g.questions, r.questions);
  same("opt", optSummary(g), optSummary(r));
  // A truncated answer's sections are not used by clients: they retry over TCP.
  const truncated = ((g.flags ?? 0) & 0x0200) !== 0 && ((r.flags ?? 0) & 0x0200) !== 0;
  if (!truncated) {
    same("answer", sectionKeys(g.answers), sectionKeys(r.answers));
    same("authority", sectionKeys(g.authorities), sectionKeys(r.authorities));
    same("additional", sectionKeys(g.additionals), sectionKeys(r.additionals));
  }
  for (const rr of [...(g.answers ?? []), ...(g.authorities ?? []), ...(g.additionals ?? [])]) {
    if (rr.type !== "OPT" && (rr.ttl ?? 0) > DIFF_ZONE_TTL) {
      out.push(`ttl ${rr.ttl} over the zone's ${DIFF_ZONE_TTL} (${recordKey(rr)})`);
    }
  }
  return out;
}

/** Per path, record → (time, TTL) last seen: TTLs must fall with the clock. */
export function createTtlWatch() {
  const seen = new Map<string, { at: number; ttl: number }>();
  return (path: string, answer: Uint8Array, at: number): string[] => {
    const out: string[] = [];
    let m: DnsPacket;
    try {
      m = decodeMessage(answer);
    } catch {
      return out;
    }
    for (const rr of m.answers ?? []) {
      const key = `${path} ${recordKey(rr)}`;
      const ttl = rr.ttl ?? 0;
      const before = seen.get(key);
      // A later answer may come from a fresher upstream entry (a new fetch): then it
      // may be higher again, but never above the zone's TTL (checked elsewhere).
      if (before && at > before.at && ttl > before.ttl && ttl < DIFF_ZONE_TTL - 1) {
        const elapsed = (at - before.at) / 1000;
        if (ttl > before.ttl + 1 && before.ttl > DIFF_ZONE_TTL - 2 - elapsed) {
          out.push(`${key}: TTL rose from ${before.ttl} to ${ttl} in ${elapsed.toFixed(1)} s`);
        }
      }
      seen.set(key, { at, ttl });
    }
    return out;
  };
}

// ── clients ───────────────────────────────────────────────────────────

/** Pipelines `queries` on one stream connection; answers by ID. */
function streamExchange(
  socket: Socket,
  queries: Uint8Array[],
  ms: number,
): Promise<Map<number, Uint8Array>> {
  return new Promise((resolve) => {
    const answers = new Map<number, Uint8Array>();
    const reader = createFrameReader();
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answers);
    };
    const timer = setTimeout(done, ms);
    socket.on("data", (chunk: Buffer) => {
      for (const message of reader.push(new Uint8Array(chunk))) {
        answers.set((message[0]! << 8) | message[1]!, message.slice());
      }
      if (answers.size >= queries.length) done();
    });
    socket.on("error", done);
    socket.on("close", done);
    socket.write(Buffer.concat(queries.map((q) => frameMessage(q))));
  });
}

async function h2Exchange(port: number, ca: string, queries: Uint8Array[], ms: number) {
  const session = http2Connect(`https://127.0.0.1:${port}`, { ca });
  session.on("error", () => {});
  const answers = new Map<number, Uint8Array>();
  try {
    await Promise.all(
      queries.map(
        (query) =>
          new Promise<void>((resolve) => {
            const req = session.request({
              ":method": "POST",
              ":path": "/dns-query",
              "content-type": "application/dns-message",
              accept: "application/dns-message",
            });
            const chunks: Buffer[] = [];
            const timer = setTimeout(() => {
              req.close();
              resolve();
            }, ms);
            req.on("data", (c: Buffer) => chunks.push(c));
            req.on("end", () => {
              clearTimeout(timer);
              const body = new Uint8Array(Buffer.concat(chunks));
              if (body.length >= 2) answers.set((body[0]! << 8) | body[1]!, body);
              resolve();
            });
            req.on("error", () => {
              clearTimeout(timer);
              resolve();
            });
            req.end(query);
          }),
      ),
    );
  } finally {
    session.close();
  }
  return answers;
}

async function workerExchange(base: URL, method: "GET" | "POST", query: Uint8Array, ms: number) {
  const url = new URL("/dns-query", base);
  const init: RequestInit = {
    method,
    headers: { accept: "application/dns-message" },
    signal: AbortSignal.timeout(ms),
  };
  if (method === "GET") url.searchParams.set("dns", encodeBase64Url(query));
  else {
    init.body = new Uint8Array(query);
    (init.headers as Record<string, string>)["content-type"] = "application/dns-message";
  }
  try {
    const response = await fetch(url, init);
    const body = new Uint8Array(await response.arrayBuffer());
    if (response.status !== 200) {
      return { error: `HTTP ${response.status}: ${new TextDecoder().decode(body).slice(0, 120)}` };
    }
    return { answer: body };
  } catch (error) {
    return { error: String(error) };
  }
}

// ── the stack ─────────────────────────────────────────────────────────

export interface DifferentialStack {
  paths: string[];
  /** Sends `specs` at once on every path and to unbound; returns mismatch lines. */
  round(specs: QuerySpec[]): Promise<{ sent: number; mismatches: string[] }>;
  stop(): Promise<void>;
}

export async function startDifferentialStack(options: {
  worker: boolean;
  timeoutMs?: number;
}): Promise<DifferentialStack> {
  const ms = options.timeoutMs ?? 4000;
  let nsd: RunningServer | undefined;
  let unbound: RunningUnbound | undefined;
  let certs: TestCertificates | undefined;
  let relay: Relay | undefined;
  let worker: WranglerDev | undefined;
  const stop = async () => {
    await worker?.stop();
    await relay?.shutdown(1000);
    await unbound?.stop();
    await nsd?.stop();
    if (certs) await rm(certs.dir, { recursive: true, force: true });
  };
  try {
    nsd = await startNsd({ zones: { "diff.test.": ZONE } });
    certs = await createTestCertificates();
    unbound = await startUnbound({ stubs: { "diff.test.": nsd.port }, tls: certs });
    const token = "differential-token";
    process.env.DIFF_RELAY_TOKEN = token;
    relay = await startTestRelay({
      listen: {
        udp: "127.0.0.1:5053",
        tcp: "127.0.0.1:5053",
        dot: { addr: "127.0.0.1:853", cert: certs.certFile, key: certs.keyFile },
        doh: { addr: "127.0.0.1:8443", cert: certs.certFile, key: certs.keyFile },
        origin: { addr: "127.0.0.1:8853", token_env: "DIFF_RELAY_TOKEN" },
      },
      upstreams: [{ name: "dot", url: `tls://127.0.0.1:${unbound.tlsPort}`, ca: certs.caFile }],
      routes: [{ zones: ["."], upstreams: ["dot"], timeout: "3s" }],
      cache: { size: 10_000 },
      // Every query comes from 127.0.0.1: the per-client limits would refuse the long runs.
      rate_limit: { qps: 0, max_in_flight: 0 },
    });
    if (options.worker) {
      const config = {
        relays: [
          {
            name: "lan",
            url: `http://127.0.0.1:${portOf(relay, "origin")}/`,
            token_secret: "RELAY_TOKEN",
          },
        ],
        upstreams: [{ name: "dot", url: `tls://127.0.0.1:${unbound.tlsPort}`, via: "lan" }],
        routes: [{ zones: ["."], upstreams: ["dot"], timeout: "3s" }],
      };
      worker = await startWranglerDev({ DOH_CONFIG: JSON.stringify(config), RELAY_TOKEN: token });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const ca = await readFile(certs.caFile, "utf8");
  const r = relay;
  const u = unbound;
  const paths = ["relay-udp", "relay-tcp", "relay-dot", "relay-doh"];
  if (worker) paths.push("worker-post", "worker-get");
  const ttlWatch = createTtlWatch();
  const started = Date.now();

  async function round(specs: QuerySpec[]) {
    const queries = specs.map(encodeSpec);
    const byId = (answers: Map<number, Uint8Array>) =>
      queries.map((q) => answers.get((q[0]! << 8) | q[1]!));
    const udp = (port: number) => Promise.all(queries.map((q) => udpExchange(port, q, ms)));
    const [refUdp, refTcp, relayUdp, relayTcp, relayDot, relayDoh, post, get] = await Promise.all([
      udp(u.port),
      streamExchange(netConnect(u.port, "127.0.0.1"), queries, ms).then(byId),
      udp(portOf(r, "udp")),
      streamExchange(netConnect(portOf(r, "tcp"), "127.0.0.1"), queries, ms).then(byId),
      streamExchange(
        tlsConnect({ port: portOf(r, "dot"), host: "127.0.0.1", ca, servername: "localhost" }),
        queries,
        ms,
      ).then(byId),
      h2Exchange(portOf(r, "doh"), ca, queries, ms).then(byId),
      worker
        ? Promise.all(queries.map((q) => workerExchange(worker!.url, "POST", q, ms)))
        : undefined,
      worker
        ? Promise.all(queries.map((q) => workerExchange(worker!.url, "GET", q, ms)))
        : undefined,
    ]);
    const at = Date.now() - started;
    const mismatches: string[] = [];
    let sent = 0;
    const check = (
      path: string,
      i: number,
      got: Uint8Array | undefined,
      ref: Uint8Array | undefined,
      error?: string,
    ) => {
      sent++;
      const what = `${path} #${specs[i]!.id} ${describeSpec(specs[i]!)}`;
      if (!ref) {
        mismatches.push(`${what}: unbound did not answer`);
        return;
      }
      if (!got) {
        mismatches.push(`${what}: no answer${error ? ` (${error})` : ""}`);
        return;
      }
      for (const line of [...compareAnswers(got, ref), ...ttlWatch(path, got, at)]) {
        mismatches.push(`${what}: ${line}`);
      }
    };
    specs.forEach((_, i) => {
      check("relay-udp", i, relayUdp[i], refUdp[i]);
      check("relay-tcp", i, relayTcp[i], refTcp[i]);
      check("relay-dot", i, relayDot[i], refTcp[i]);
      check("relay-doh", i, relayDoh[i], refTcp[i]);
      if (post) check("worker-post", i, post[i]!.answer, refTcp[i], post[i]!.error);
      if (get) check("worker-get", i, get[i]!.answer, refTcp[i], get[i]!.error);
    });
    return { sent, mismatches };
  }

  return { paths, round, stop };
}

export function describeSpec(spec: QuerySpec): string {
  const flags = `${spec.rd ? "rd" : "-"}${spec.ad ? "ad" : "-"}${spec.cd ? "cd" : "-"}`;
  const op = spec.opcode === 0 ? "" : ` opcode=${spec.opcode}`;
  const e = spec.edns;
  const edns = e
    ? ` edns=v${e.version}/${e.udpSize}${e.dnssecOk ? "/do" : ""}${e.subnet ? `/ecs=${e.subnet}` : ""}${e.cookie ? "/cookie" : ""}${e.padding !== undefined ? `/pad${e.padding}` : ""}`
    : "";
  return `${spec.name} ${spec.type} ${flags}${op}${edns}`;
}

/** Runs `count` queries in concurrent rounds of `batch`; returns totals and mismatch lines. */
export async function runDifferential(
  stack: DifferentialStack,
  options: { seed: number; count: number; batch: number; pauseMs?: number },
) {
  const specs = generateQueries(options.seed, options.count);
  const mismatches: string[] = [];
  let sent = 0;
  for (let i = 0; i < specs.length; i += options.batch) {
    const result = await stack.round(specs.slice(i, i + options.batch));
    sent += result.sent;
    mismatches.push(...result.mismatches);
    if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
  }
  return { queries: specs.length, sent, mismatches };
}
