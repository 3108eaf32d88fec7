// Upstream host names resolved through bootstrap servers: real nsd data,
// TTL expiry, keeping the last address when re-resolution fails, ECS on the
// bootstrap query only, and a relay reaching a DoT upstream by name.

import { createSocket } from "node:dgram";
import { readFile, rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { createBootstrap, withClientSubnet } from "../../relay/src/transports/bootstrap.ts";
import { parseCidr } from "../../shared/config/ip.ts";
import { decodeMessage } from "../../shared/dns/codec.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readRcode } from "../../shared/dns/wire.ts";
import { delayAnswer } from "../support/delay-dns-server.ts";
import {
  createTestCertificates,
  freePort,
  type RunningServer,
  type RunningUnbound,
  startNsd,
  startUnbound,
  type TestCertificates,
} from "../support/dns-servers.ts";
import { portOf, startTestRelay, udpFrom, ZONE } from "./relay-harness.ts";

const BOOT_ZONE = `$ORIGIN boot.test.
$TTL 300
@    IN SOA ns.boot.test. admin.boot.test. 1 3600 600 86400 300
@    IN NS  ns.boot.test.
ns   IN A   127.0.0.1
dot  2 IN A 127.0.0.1
v6   IN AAAA ::1
alias IN CNAME dot.boot.test.
`;

let nsd: RunningServer;
let data: RunningServer;
let certs: TestCertificates;
let unbound: RunningUnbound;

beforeAll(async () => {
  [nsd, data, certs] = await Promise.all([
    startNsd({ zones: { "boot.test.": BOOT_ZONE } }),
    startNsd({ zones: { "relay.test.": ZONE } }),
    createTestCertificates(),
  ]);
  unbound = await startUnbound({ stubs: { "relay.test.": data.port }, tls: certs });
});

afterAll(async () => {
  await unbound?.stop();
  await Promise.all([nsd?.stop(), data?.stop()]);
  if (certs) await rm(certs.dir, { recursive: true, force: true });
});

describe("bootstrap resolution", () => {
  it("resolves through the bootstrap server and caches for the record's TTL", async () => {
    let now = 1_000_000;
    const boot = createBootstrap({
      servers: [{ host: "127.0.0.1", hostKind: "ipv4", port: nsd.port }],
      now: () => now,
    });
    try {
      expect(await boot.resolve("dot.boot.test")).toEqual([{ address: "127.0.0.1", family: 4 }]);
      const sent = boot.queries;
      expect(sent).toBe(2); // A and AAAA
      now += 1500;
      await boot.resolve("dot.boot.test");
      expect(boot.queries).toBe(sent);
      now += 1000; // past the 2 s TTL
      await boot.resolve("dot.boot.test");
      expect(boot.queries).toBe(sent + 2);
      expect(await boot.resolve("v6.boot.test")).toEqual([{ address: "::1", family: 6 }]);
      // An address passes straight through the lookup, with no bootstrap query.
      const before = boot.queries;
      const looked = await new Promise((resolve, reject) =>
        boot.lookup("0.0.0.0", { family: 4 }, (error, address) =>
          error ? reject(error) : resolve(address),
        ),
      );
      expect(looked).toBe("0.0.0.0");
      expect(boot.queries).toBe(before);
    } finally {
      await boot.close();
    }
  });

  it("keeps the last address when re-resolution fails, and says when nothing is known", async () => {
    let now = 0;
    const own = await startNsd({ zones: { "boot.test.": BOOT_ZONE } });
    const boot = createBootstrap({
      servers: [{ host: "127.0.0.1", hostKind: "ipv4", port: own.port }],
      now: () => now,
      timeoutMs: 300,
    });
    try {
      expect(await boot.resolve("alias.boot.test")).toEqual([{ address: "127.0.0.1", family: 4 }]);
      await own.stop();
      now += 10_000;
      expect(await boot.resolve("alias.boot.test")).toEqual([{ address: "127.0.0.1", family: 4 }]);
      await expect(boot.resolve("never.boot.test")).rejects.toMatchObject({
        code: "bootstrap_failed",
      });
    } finally {
      await boot.close();
      await own.stop();
    }
  });

  it("sends EDNS Client Subnet on bootstrap queries when configured", async () => {
    const port = await freePort();
    const seen: Uint8Array[] = [];
    const server = createSocket("udp4");
    server.on("message", (msg, rinfo) => {
      seen.push(new Uint8Array(msg));
      const reply = delayAnswer(new Uint8Array(msg));
      if (reply) server.send(reply.answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => server.bind(port, "127.0.0.1", resolve));
    const boot = createBootstrap({
      servers: [{ host: "127.0.0.1", hostKind: "ipv4", port }],
      ecs: parseCidr("203.0.113.0/24"),
    });
    try {
      const addresses = await boot.resolve("7.ecs.test");
      expect(addresses).toContainEqual({ address: "127.0.0.7", family: 4 });
      expect(seen.length).toBeGreaterThan(0);
      const opt = decodeMessage(seen[0] as Uint8Array).additionals?.find((r) => r.type === "OPT");
      const ecs = (
        opt as { options?: { code: number; ip?: string; sourcePrefixLength?: number }[] }
      ).options?.find((o) => o.code === 8);
      expect(ecs).toMatchObject({ ip: "203.0.113.0", sourcePrefixLength: 24 });
    } finally {
      await boot.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("appends the subnet option with only the prefix's address bytes", () => {
    const query = withClientSubnet(
      buildQuery("a.test", 1, { ednsUdpSize: 1232 }),
      parseCidr("2001:db8:1200::/40"),
    );
    const opt = decodeMessage(query).additionals?.find((r) => r.type === "OPT") as {
      options?: { code: number; family?: number; sourcePrefixLength?: number; ip?: string }[];
    };
    expect(opt.options?.[0]).toMatchObject({ code: 8, family: 2, sourcePrefixLength: 40 });
    expect(query.length).toBe(buildQuery("a.test", 1, { ednsUdpSize: 1232 }).length + 4 + 4 + 5);
  });

  it("lets the relay reach UDP and DoT upstreams known only by a name the bootstrap server holds", async () => {
    const upstreams = [
      // dgram also looks up its bind address (0.0.0.0) through the same function.
      { name: "udp", url: `udp://dot.boot.test:${unbound.port}` },
      {
        name: "dot",
        url: `tls://dot.boot.test:${unbound.tlsPort}`,
        tls_servername: "dns.test",
        ca: await readFile(certs.caFile, "utf8"),
      },
    ];
    for (const upstream of upstreams) {
      const relay: Relay = await startTestRelay({
        listen: { udp: { addr: "127.0.0.1:5353" } },
        bootstrap: [`127.0.0.1:${nsd.port}`],
        upstreams: [upstream],
      });
      try {
        const answer = await udpFrom(
          "127.0.0.1",
          portOf(relay, "udp"),
          buildQuery("www.relay.test", 1, { id: 5 }),
          3000,
        );
        expect(answer, upstream.name).toBeDefined();
        expect(readRcode(answer as Uint8Array)).toBe(Rcode.NOERROR);
        expect(decodeMessage(answer as Uint8Array).answers?.[0]?.data).toBe("192.0.2.10");
      } finally {
        await relay.shutdown(1000);
      }
    }
  });
});
