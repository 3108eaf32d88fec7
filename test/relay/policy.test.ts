// Rules, a block list file and the allowlist through a relay, asked with dig,
// over real nsd data: each action, IPv6, a rewrite onto a CNAME, a forward to
// a named route, and the counters.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Relay } from "../../relay/src/relay.ts";
import { buildCompiledList } from "../../shared/policy/compiled-list.ts";
import { type RunningServer, startNsd } from "../support/dns-servers.ts";
import { dig, ephemeralConfig, httpGet, portOf, startTestRelay } from "./relay-harness.ts";

const ZONE = `$ORIGIN pol.test.
$TTL 300
@     IN SOA ns.pol.test. admin.pol.test. 1 3600 600 86400 300
@     IN NS  ns.pol.test.
ns    IN A   127.0.0.1
www   IN A   192.0.2.80
www   IN AAAA 2001:db8::80
alias IN CNAME www
`;
const LAN_ZONE = `$ORIGIN lan.
$TTL 300
@       IN SOA ns.lan. admin.lan. 1 3600 600 86400 300
@       IN NS  ns.lan.
ns      IN A   127.0.0.1
printer IN A   10.0.0.9
`;

let nsd: RunningServer;
let lanNsd: RunningServer;
let relay: Relay;
let dir: string;
let compiledList: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-edge-policy-"));
  const list = join(dir, "hosts.txt");
  await writeFile(
    list,
    "# test list\n0.0.0.0 tracker.pol.test\n0.0.0.0 listed.example\nads.pol.test\n",
  );
  compiledList = join(dir, "compiled.bin");
  await writeFile(compiledList, buildCompiledList(["compiled.pol.test", "other.example"]).bytes);
  [nsd, lanNsd] = await Promise.all([
    startNsd({ zones: { "pol.test.": ZONE } }),
    startNsd({ zones: { "lan.": LAN_ZONE } }),
  ]);
  relay = await startTestRelay({
    listen: { udp: "127.0.0.1:5353", metrics: "127.0.0.1:9153" },
    upstreams: [
      { name: "nsd", url: `udp://127.0.0.1:${nsd.port}` },
      { name: "lan-nsd", url: `udp://127.0.0.1:${lanNsd.port}` },
    ],
    routes: [
      { zones: ["."], upstreams: ["nsd"] },
      { name: "lan", zones: ["home.arpa."], upstreams: ["lan-nsd"] },
    ],
    rules: [
      { match: { name: "blocked.pol.test" }, action: "block" },
      { match: { suffix: "null.pol.test" }, action: "block", block_with: "null_ip" },
      {
        match: { name: "local.pol.test" },
        action: "local_data",
        ips: ["10.1.2.3", "fd00::123"],
        txt: ["kept locally"],
        ttl: 120,
      },
      { match: { name: "old.pol.test" }, action: "rewrite", rewrite_domain: "www.pol.test" },
      { match: { name: "short.pol.test" }, action: "rewrite", rewrite_domain: "alias.pol.test" },
      { match: { suffix: "lan" }, action: "forward", route: "lan" },
    ],
    blocklists: [{ path: list }, { path: compiledList }],
    allowlist: ["listed.example"],
  });
});

afterAll(async () => {
  await relay?.shutdown(200);
  await Promise.all([nsd?.stop(), lanNsd?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

const ask = (...args: string[]) => dig(portOf(relay, "udp"), args);

describe("relay rules", () => {
  it("blocks with NXDOMAIN and with the null address (A and AAAA)", async () => {
    expect(await ask("blocked.pol.test")).toContain("status: NXDOMAIN");
    expect((await ask("+short", "x.null.pol.test", "A")).trim()).toBe("0.0.0.0");
    expect((await ask("+short", "x.null.pol.test", "AAAA")).trim()).toBe("::");
  });

  it("answers local data for A, AAAA and TXT with its TTL", async () => {
    const a = await ask("+noall", "+answer", "local.pol.test", "A");
    expect(a).toMatch(/local\.pol\.test\.\s+120\s+IN\s+A\s+10\.1\.2\.3/);
    expect((await ask("+short", "local.pol.test", "AAAA")).trim()).toBe("fd00::123");
    expect((await ask("+short", "local.pol.test", "TXT")).trim()).toBe('"kept locally"');
  });

  it("rewrites to another name, and onto a CNAME, under the asked name", async () => {
    const direct = await ask("+noall", "+answer", "old.pol.test", "AAAA");
    expect(direct).toMatch(/^old\.pol\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8::80/m);
    const chained = await ask("+noall", "+answer", "short.pol.test", "A");
    expect(chained).toMatch(/^short\.pol\.test\.\s+\d+\s+IN\s+CNAME\s+www\.pol\.test\./m);
    expect(chained).toMatch(/^www\.pol\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.80/m);
  });

  it("forwards to a named route, skipping zone lookup", async () => {
    // printer.lan is not under the lan route's zone (home.arpa.): only the rule gets it there.
    expect((await ask("+short", "printer.lan")).trim()).toBe("10.0.0.9");
  });
});

describe("relay block list", () => {
  it("blocks listed names and their subdomains, spares the allowlist, passes the rest", async () => {
    const blocked = await ask("+edns", "sub.tracker.pol.test");
    expect(blocked).toContain("status: NXDOMAIN");
    expect(blocked).toMatch(/EDE: 15 \(Blocked\)/);
    expect(await ask("ads.pol.test")).toContain("status: NXDOMAIN");
    // Allowlisted: forwarded (nsd is not authoritative for example, so REFUSED comes from there).
    expect(await ask("listed.example")).not.toMatch(/EDE: 15/);
    expect((await ask("+short", "www.pol.test")).trim()).toBe("192.0.2.80");
    const metrics = (await httpGet(relay.opsPort as number, "/metrics")).body;
    expect(metrics).toMatch(/doh_relay_policy_hits_total\{action="block"\} [3-9]/);
    expect(metrics).toMatch(/doh_relay_policy_hits_total\{action="rewrite"\} [1-9]/);
  });
});

describe("relay compiled block list (issue 16)", () => {
  it("blocks names of a compiled list beside a text list", async () => {
    const blocked = await ask("+edns", "x.compiled.pol.test");
    expect(blocked).toContain("status: NXDOMAIN");
    expect(blocked).toMatch(/EDE: 15 \(Blocked\)/);
    expect((await ask("+short", "www.pol.test")).trim()).toBe("192.0.2.80");
  });

  it("refuses a corrupt compiled list in one line naming the key, at start and on reload", async () => {
    const corrupt = join(dir, "corrupt.bin");
    const bytes = new Uint8Array(await readFile(compiledList));
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(corrupt, bytes);
    const input = {
      listen: { udp: "127.0.0.1:5353" },
      upstreams: [{ name: "nsd", url: `udp://127.0.0.1:${nsd.port}` }],
      blocklists: [{ path: corrupt }],
    };
    await expect(startTestRelay(input)).rejects.toThrow(
      /^blocklists\[0\]\.path: compiled block list: checksum mismatch \(the file is corrupt\)$/,
    );
    await expect(relay.reload(ephemeralConfig(input))).rejects.toThrow(/checksum mismatch/);
    // The running relay kept its lists.
    expect(await ask("x.compiled.pol.test")).toContain("status: NXDOMAIN");
  });
});
