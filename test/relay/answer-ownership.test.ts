// Issue 15, defect 1, end to end: the relay with its answer cache in front of
// real unbound (DoT and plain TCP, over real nsd data). Identical queries in
// flight at once from UDP, TCP and DoT clients each get their own message ID,
// and a cached answer's TTLs fall by the time elapsed, not compounding. Both
// broke while stream answers were Node Buffers, whose `slice()` is a view.

import { readFile, rm } from "node:fs/promises";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay, RelayOptions } from "../../relay/src/relay.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { readId } from "../../shared/dns/wire.ts";
import { createManualClock } from "../../shared/engine/manual-clock.ts";
import {
  createTestCertificates,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { portOf, startTestRelay, tcpPipeline, udpFrom } from "./relay-harness.ts";

const ZONE = `$ORIGIN own.test.
$TTL 300
@    IN SOA ns.own.test. admin.own.test. 1 3600 600 86400 300
@    IN NS  ns.own.test.
ns   IN A   127.0.0.1
*    IN A   192.0.2.77
`;

const CONCURRENT = 10;

let nsd: RunningServer;
let certs: TestCertificates;
let unbound: RunningUnbound;
let ca: string;

beforeAll(async () => {
  [nsd, certs] = await Promise.all([
    startNsd({ zones: { "own.test.": ZONE } }),
    createTestCertificates(),
  ]);
  unbound = await startUnbound({ stubs: { "own.test.": nsd.port }, tls: certs });
  ca = await readFile(certs.caFile, "utf8");
});

afterAll(async () => {
  await unbound?.stop();
  await nsd?.stop();
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

/** The relay with its default cache, UDP, TCP and DoT listeners, and one upstream. */
function relayTo(upstream: Record<string, unknown>, options: RelayOptions = {}): Promise<Relay> {
  return startTestRelay(
    {
      listen: {
        udp: "127.0.0.1:5353",
        tcp: "127.0.0.1:5353",
        dot: { addr: "127.0.0.1:853", cert: certs.certFile, key: certs.keyFile },
      },
      upstreams: [{ name: "up", ...upstream }],
      routes: [{ zones: ["."], upstreams: ["up"], timeout: "2s" }],
      cache: {},
      rate_limit: { qps: 0, max_in_flight: 0 },
    },
    [],
    options,
  );
}

/** Every query written at once on one DoT connection; answers in arrival order. */
function dotPipeline(port: number, queries: Uint8Array[], ms = 5000): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const answers: Uint8Array[] = [];
    const reader = createFrameReader();
    const socket = tlsConnect({ port, host: "127.0.0.1", ca, servername: "dns.test" });
    const timer = setTimeout(() => done(), ms);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answers);
    };
    socket.on("secureConnect", () => {
      socket.write(Buffer.concat(queries.map((q) => frameMessage(q))));
    });
    socket.on("data", (chunk: Buffer) => {
      answers.push(...reader.push(new Uint8Array(chunk)));
      if (answers.length >= queries.length) done();
    });
    socket.on("close", () => done());
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

type Client = "udp" | "tcp" | "dot";

/** Sends `CONCURRENT` identical A queries for `name` at once; the IDs of the answers. */
async function askTogether(relay: Relay, client: Client, name: string): Promise<number[]> {
  const ids = Array.from({ length: CONCURRENT }, (_, i) => 0x1000 + i * 0x111);
  const queries = ids.map((id) => buildQuery(name, 1, { id }));
  let answers: (Uint8Array | undefined)[];
  if (client === "udp") {
    answers = await Promise.all(queries.map((q) => udpFrom("127.0.0.1", portOf(relay, "udp"), q)));
  } else if (client === "tcp") {
    answers = await tcpPipeline(portOf(relay, "tcp"), queries);
  } else {
    answers = await dotPipeline(portOf(relay, "dot"), queries);
  }
  for (const answer of answers) {
    if (answer) expect(decodeMessage(answer).answers?.[0]?.data).toBe("192.0.2.77");
  }
  return answers.map((answer) => (answer ? readId(answer) : -1));
}

const UPSTREAMS = {
  "tls:// (unbound DoT)": () => ({
    url: `tls://127.0.0.1:${unbound.tlsPort}`,
    tls_servername: "dns.test",
    ca: certs.caFile,
  }),
  "tcp:// (unbound)": () => ({ url: `tcp://127.0.0.1:${unbound.port}` }),
};

describe.each(Object.entries(UPSTREAMS))("relay with a cache and a %s upstream", (label, make) => {
  let relay: Relay;
  const tag = label.slice(0, 3);

  beforeAll(async () => {
    relay = await relayTo(make());
  });

  afterAll(async () => {
    await relay?.shutdown(200);
  });

  it.each(["udp", "tcp", "dot"] as const)(
    "answers %s clients' identical queries in flight at once, each with its own ID",
    async (client) => {
      const expected = Array.from({ length: CONCURRENT }, (_, i) => 0x1000 + i * 0x111);
      // A fresh name: a miss, so the ten share one upstream query.
      const miss = await askTogether(relay, client, `${client}-miss.${tag}.own.test`);
      expect([...miss].sort((a, b) => a - b)).toEqual(expected);
      // The same name again: ten cache hits.
      const hits = await askTogether(relay, client, `${client}-miss.${tag}.own.test`);
      expect([...hits].sort((a, b) => a - b)).toEqual(expected);
    },
  );

  it("counts a cached answer's TTL down by the time elapsed", async () => {
    // The relay keeps time by this clock (its cache included); sockets run for real.
    const clock = createManualClock();
    const clocked = await relayTo(make(), { clock });
    try {
      const ttlAfter = async (seconds: number, id: number) => {
        clock.advance(seconds * 1000 - clock.now());
        const query = buildQuery(`ttl.${tag}.own.test`, 1, { id });
        const answer = await udpFrom("127.0.0.1", portOf(clocked, "udp"), query, 3000);
        expect(answer && readId(answer)).toBe(id);
        return decodeMessage(answer as Uint8Array).answers?.[0]?.ttl;
      };
      const ttls = [];
      for (const seconds of [0, 0.5, 1, 1.5, 2, 2.5, 3]) {
        ttls.push(await ttlAfter(seconds, ttls.length + 1));
      }
      expect(ttls).toEqual([300, 300, 299, 299, 298, 298, 297]);
    } finally {
      await clocked.shutdown(200);
    }
  });
});
