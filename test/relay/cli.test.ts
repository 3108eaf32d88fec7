// The doh-relay command as users run it: a child process under this Node,
// --check/--version/--help exit codes, graceful SIGTERM drain, SIGHUP reload.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import { type DelayDnsServer, startDelayDnsServer } from "../support/delay-dns-server.ts";
import { freePort } from "../support/dns-servers.ts";
import { udpFrom } from "./relay-harness.ts";

const BIN = new URL("../../relay/bin/doh-relay.mjs", import.meta.url).pathname;
const EXAMPLE = new URL("../../relay/relay.example.yaml", import.meta.url).pathname;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface Daemon {
  child: ChildProcess;
  log: () => string;
  waitFor(text: string, ms?: number): Promise<void>;
  exited: Promise<number | null>;
}

function startDaemon(args: string[]): Daemon {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout?.on("data", (d) => {
    log += d;
  });
  child.stderr?.on("data", (d) => {
    log += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    log: () => log,
    exited,
    async waitFor(text, ms = 5000) {
      const deadline = Date.now() + ms;
      while (!log.includes(text)) {
        if (Date.now() > deadline) throw new Error(`no "${text}" in log:\n${log}`);
        if (child.exitCode !== null) throw new Error(`exited early:\n${log}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

let dir: string;
let delay: DelayDnsServer;
const daemons: Daemon[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-relay-cli-"));
  delay = await startDelayDnsServer();
});

afterAll(async () => {
  for (const d of daemons) {
    if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill("SIGKILL");
  }
  await delay?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

const relayYaml = (port: number, upstream: string) => `listen:
  udp: 127.0.0.1:${port}
  tcp: 127.0.0.1:${port}
upstreams:
  - name: slow
    url: ${upstream}
routes:
  - zones: ["."]
    upstreams: [slow]
    timeout: 3s
log: { level: info }
`;

describe("doh-relay --check, --version, --help", () => {
  it("prints the package version and help", async () => {
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8"));
    const version = await runCli(["--version"]);
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--config FILE");
  });

  it("accepts the example config and prints YAML that --config reads back to the same output", async () => {
    const result = await runCli(["--check", "--config", EXAMPLE]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const config = parseYaml(result.stdout);
    expect(config.routes[0]).toMatchObject({ zones: ["."], timeout: "5s", policy: "failover" });
    expect(config.listen.udp.addr).toBe("127.0.0.1:5053");
    const printed = await configFile("printed.yaml", result.stdout);
    const again = await runCli(["--check", "--config", printed]);
    expect(again).toMatchObject({ code: 0, stderr: "", stdout: result.stdout });
  });

  it("without --config checks the default config: public DoH resolvers on 127.0.0.1:5053", async () => {
    const result = await runCli(["--check"]);
    expect(result.code).toBe(0);
    const config = parseYaml(result.stdout);
    expect(config.listen.udp.addr).toBe("127.0.0.1:5053");
    expect(config.listen.tcp.addr).toBe("127.0.0.1:5053");
    expect(config.upstreams.map((u: { url: string }) => u.url)).toEqual([
      "https://cloudflare-dns.com/dns-query",
      "https://dns.quad9.net/dns-query",
    ]);
  });

  it("lists every problem of a bad config, one line each naming its key path", async () => {
    const path = await configFile(
      "many.yaml",
      'upstreams: [{ name: a, url: "udp://127.0.0.1", weight: 0 }]\nroutes: [{ zones: ["."], upstreams: [quad8], timeout: 8000 }]\n',
    );
    const result = await runCli(["--check", "--config", path]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toEqual([
      "upstreams[0].weight: must be between 1 and 100",
      expect.stringMatching(/^routes\[0\]\.timeout: /),
    ]);
  });

  it("rejects a bad config with one line naming the key path", async () => {
    const path = await configFile(
      "bad.yaml",
      'upstreams: [{ name: a, url: "udp://127.0.0.1" }]\nroutes: [{ zones: ["."], upstreams: [quad8] }]\n',
    );
    const result = await runCli(["--check", "--config", path]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain('routes[0].upstreams[0]: unknown upstream "quad8"');
  });

  it("accepts a tls:// upstream and statsd, and names a bad statsd key in one line", async () => {
    const tls = await configFile(
      "tls.yaml",
      'upstreams:\n  - { name: a, url: "udp://127.0.0.1" }\n  - { name: q9, url: "tls://9.9.9.9", tls_servername: dns.quad9.net }\n',
    );
    expect((await runCli(["--check", "--config", tls])).code).toBe(0);
    const statsd = await configFile(
      "statsd.yaml",
      'upstreams:\n  - { name: a, url: "udp://127.0.0.1" }\nmetrics: { statsd: { addr: "127.0.0.1:8125" } }\n',
    );
    expect((await runCli(["--check", "--config", statsd])).code).toBe(0);
    const badPrefix = await configFile(
      "statsd-bad.yaml",
      'upstreams:\n  - { name: a, url: "udp://127.0.0.1" }\nmetrics: { statsd: { addr: "127.0.0.1:8125", prefix: "a..b" } }\n',
    );
    const result = await runCli(["--check", "--config", badPrefix]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("metrics.statsd.prefix: must be dotted words");
  });

  it("rejects a missing config file", async () => {
    const result = await runCli(["--check", "--config", join(dir, "missing.yaml")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no such file");
  });
});

describe("doh-relay daemon", () => {
  it("drains in-flight queries on SIGTERM and exits 0", async () => {
    const port = await freePort();
    const path = await configFile("drain.yaml", relayYaml(port, `udp://127.0.0.1:${delay.port}`));
    const daemon = startDaemon(["--config", path]);
    daemons.push(daemon);
    await daemon.waitFor("relay started");
    const pending = Array.from({ length: 10 }, (_, i) =>
      udpFrom("127.0.0.1", port, buildQuery(`800.s${i}.test`, 1, { id: 500 + i }), 4000),
    );
    await new Promise((r) => setTimeout(r, 200));
    daemon.child.kill("SIGTERM");
    const answers = await Promise.all(pending);
    answers.forEach((answer, i) => {
      expect(answer).toBeDefined();
      expect(readId(answer as Uint8Array)).toBe(500 + i);
      expect(readRcode(answer as Uint8Array)).toBe(Rcode.NOERROR);
    });
    expect(await daemon.exited).toBe(0);
    const lines = daemon
      .log()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.find((l) => l.msg === "shutting down")).toMatchObject({
      level: "info",
      signal: "SIGTERM",
    });
    expect(lines.find((l) => l.msg === "stopped")).toMatchObject({ drained: true });
  });

  it("keeps serving when SIGHUP brings a bad config, and applies a good one", async () => {
    const port = await freePort();
    const path = await configFile("hup.yaml", relayYaml(port, `udp://127.0.0.1:${delay.port}`));
    const daemon = startDaemon(["--config", path]);
    daemons.push(daemon);
    await daemon.waitFor("relay started");
    const ask = async (id: number) =>
      udpFrom("127.0.0.1", port, buildQuery(`1.h${id}.test`, 1, { id }), 2000);
    expect(readRcode((await ask(1)) as Uint8Array)).toBe(Rcode.NOERROR);

    await writeFile(path, "upstreams: [ {name: a, url: nope://x} ]\n");
    daemon.child.kill("SIGHUP");
    await daemon.waitFor("reload rejected");
    expect(daemon.log()).toContain("upstreams[0].url");
    expect(readRcode((await ask(2)) as Uint8Array)).toBe(Rcode.NOERROR);

    // A good config that points at a dead upstream: the swap is visible as SERVFAIL.
    const dead = await freePort();
    await writeFile(
      path,
      relayYaml(port, `udp://127.0.0.1:${dead}`).replace("timeout: 3s", "timeout: 300ms"),
    );
    daemon.child.kill("SIGHUP");
    await daemon.waitFor("config reloaded");
    expect(readRcode((await ask(3)) as Uint8Array)).toBe(Rcode.SERVFAIL);

    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);
  });

  it("answers every query of a steady load across three SIGHUP reloads", async () => {
    const port = await freePort();
    const path = await configFile(
      "hup-load.yaml",
      relayYaml(port, `udp://127.0.0.1:${delay.port}`),
    );
    const daemon = startDaemon(["--config", path]);
    daemons.push(daemon);
    await daemon.waitFor("relay started");
    const results: Promise<boolean>[] = [];
    const load = (async () => {
      for (let i = 0; i < 600; i++) {
        const id = i;
        results.push(
          udpFrom("127.0.0.1", port, buildQuery(`30.l${i}.test`, 1, { id }), 4000).then(
            (a) => a !== undefined && readId(a) === id && readRcode(a) === Rcode.NOERROR,
          ),
        );
        if (i % 20 === 19) await new Promise((r) => setTimeout(r, 50));
      }
    })();
    for (const timeout of ["2s", "4s", "3s"]) {
      await new Promise((r) => setTimeout(r, 300));
      await writeFile(
        path,
        relayYaml(port, `udp://127.0.0.1:${delay.port}`).replace(
          "timeout: 3s",
          `timeout: ${timeout}`,
        ),
      );
      const reloads = daemon.log().split("config reloaded").length;
      daemon.child.kill("SIGHUP");
      while (daemon.log().split("config reloaded").length === reloads) {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await load;
    const ok = await Promise.all(results);
    expect(ok.filter((x) => !x)).toHaveLength(0);
    expect(ok).toHaveLength(600);
    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);
  });

  it("answers every query it read before SIGTERM under load, then exits 0", async () => {
    const port = await freePort();
    const path = await configFile(
      "term-load.yaml",
      relayYaml(port, `udp://127.0.0.1:${delay.port}`),
    );
    const daemon = startDaemon(["--config", path]);
    daemons.push(daemon);
    await daemon.waitFor("relay started");
    const sent: { at: number; answered: Promise<boolean> }[] = [];
    let signalAt = Number.POSITIVE_INFINITY;
    const load = (async () => {
      for (let i = 0; i < 400 && performance.now() < signalAt + 200; i++) {
        const id = i;
        sent.push({
          at: performance.now(),
          // 150 ms upstream delay: dozens are in flight when the signal comes.
          answered: udpFrom("127.0.0.1", port, buildQuery(`150.t${i}.test`, 1, { id }), 1500).then(
            (a) => a !== undefined && readId(a) === id && readRcode(a) === Rcode.NOERROR,
          ),
        });
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 400));
    signalAt = performance.now();
    daemon.child.kill("SIGTERM");
    await load;
    const outcomes = await Promise.all(sent.map((s) => s.answered));
    // Datagrams still in the socket buffer at the signal were never read; give them 50 ms.
    const before = sent.flatMap((s, i) => (s.at < signalAt - 50 ? [outcomes[i]] : []));
    expect(before.length).toBeGreaterThan(50);
    expect(before.filter((x) => !x)).toHaveLength(0);
    expect(await daemon.exited).toBe(0);
    expect(daemon.log()).toContain('"drained":true');
  });
});
