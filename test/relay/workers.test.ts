// workers: N (issue 17): the relay CLI as a process with two workers in front
// of nsd. Queries over UDP and TCP spread over both workers and the summed
// /metrics counts them all; SIGKILL of one worker loses no query (a client
// may retry once, as dig does) and the worker comes back; SIGHUP reaches
// every worker; SIGTERM stops them all and exits 0; startup failures and
// repeated crashes exit 1. Also: listen.udp's reuse_port really shares a
// port between processes, summing metrics texts, the restart backoff
// schedule, workers: 1 starting no extra process, and the release bundle
// spreading and surviving a kill under the machine's own Node (20 here:
// no SO_REUSEPORT, so its workers share the sockets).

import { execFile } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { familyTotal, sumMetrics } from "../../relay/src/metrics.ts";
import { createRestartPolicy, restartDelay } from "../../relay/src/supervisor.ts";
import { buildRelay } from "../../scripts/build-relay.ts";
import { parseRelayConfig } from "../../shared/config/schema.ts";
import { buildQuery } from "../../shared/dns/query.ts";
import { Rcode, readId, readRcode } from "../../shared/dns/wire.ts";
import { freePort, type RunningServer, startNsd } from "../support/dns-servers.ts";
import { type ManagedProcess, startProcess, udpExchange } from "../support/processes.ts";
import { tcpPipeline, ZONE } from "./relay-harness.ts";

const BIN = new URL("../../relay/bin/doh-relay.mjs", import.meta.url).pathname;

let dir: string;
let nsd: RunningServer;
const started: ManagedProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-relay-workers-"));
  nsd = await startNsd({ zones: { "relay.test.": ZONE } });
});

afterAll(async () => {
  for (const proc of started) await proc.stop();
  await nsd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Ports {
  dns: number;
  metrics: number;
}

async function relayConfig(name: string, extra = ""): Promise<{ path: string; ports: Ports }> {
  const ports = { dns: await freePort(), metrics: await freePort() };
  const path = join(dir, name);
  await writeFile(
    path,
    `workers: 2
listen:
  udp: 127.0.0.1:${ports.dns}
  tcp: 127.0.0.1:${ports.dns}
  metrics: 127.0.0.1:${ports.metrics}
upstreams: [{ name: nsd, url: "udp://127.0.0.1:${nsd.port}" }]
cache: { size: 0 }
${extra}`,
  );
  return { path, ports };
}

function startRelay(path: string, node = process.execPath, bin = BIN): ManagedProcess {
  const proc = startProcess("relay", node, [bin, "--config", path]);
  started.push(proc);
  return proc;
}

/** Polls `check` every 20 ms until it is true, or throws after `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const logLines = (proc: ManagedProcess) =>
  proc
    .log()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

interface WorkerStatus {
  worker: number;
  pid: number | null;
  up: boolean;
  restarts: number;
  queries: number | null;
}

async function statusz(ports: Ports): Promise<{ ready: boolean; workers: WorkerStatus[] }> {
  return (await fetch(`http://127.0.0.1:${ports.metrics}/statusz`)).json();
}

async function metricsText(ports: Ports): Promise<string> {
  return (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
}

/** The value of one sample line, e.g. `doh_relay_queries_total{protocol="udp",rcode="NOERROR"}`. */
function sample(text: string, key: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${key} `));
  return line === undefined ? 0 : Number(line.slice(key.length + 1));
}

async function startedRelay(
  path: string,
  ports: Ports,
  node = process.execPath,
  bin = BIN,
): Promise<ManagedProcess> {
  const proc = startRelay(path, node, bin);
  await until("both workers ready", async () => {
    if (proc.child.exitCode !== null) throw new Error(`relay exited:\n${proc.log()}`);
    if (!proc.log().includes('"msg":"workers started"')) return false;
    return (await statusz(ports)).ready;
  });
  return proc;
}

async function stopped(proc: ManagedProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) =>
    proc.child.once("exit", (code) => resolve(code)),
  );
  proc.child.kill("SIGTERM");
  return exited;
}

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** `count` UDP queries, `parallel` at a time, each from its own socket. */
async function udpBurst(port: number, count: number, parallel: number, firstId = 0) {
  const answers: (Uint8Array | undefined)[] = [];
  for (let start = 0; start < count; start += parallel) {
    const batch = Array.from({ length: Math.min(parallel, count - start) }, (_, i) =>
      udpExchange(port, buildQuery("www.relay.test", 1, { id: firstId + start + i }), 2000),
    );
    answers.push(...(await Promise.all(batch)));
  }
  return answers;
}

/**
 * Sends 600 queries, 10 in flight, SIGKILLs worker 2 after the first 200
 * answers, and checks every query was answered (a query unanswered after
 * 1 s is asked once more, as dig +tries=2 does) and the worker came back.
 */
async function killDuringStream(relay: ManagedProcess, ports: Ports): Promise<void> {
  const victim = (await statusz(ports)).workers[1] as WorkerStatus;
  let answered = 0;
  let retried = 0;
  const ask = async (id: number) => {
    const query = buildQuery(`n${id}.relay.test`, 1, { id });
    let answer = await udpExchange(ports.dns, query, 1000);
    if (!answer) {
      retried++;
      answer = await udpExchange(ports.dns, query, 1000);
    }
    if (answer) answered++;
    return answer;
  };
  const results: (Uint8Array | undefined)[] = [];
  let next = 0;
  const lanes = Array.from({ length: 10 }, async () => {
    while (next < 600) {
      const id = next++;
      results[id] = await ask(id);
    }
  });
  await until("a third of the stream answered", () => answered >= 200);
  process.kill(victim.pid as number, "SIGKILL");
  await Promise.all(lanes);

  expect(results).toHaveLength(600);
  results.forEach((answer, id) => {
    expect(answer && readId(answer)).toBe(id);
    expect(answer && readRcode(answer)).toBe(Rcode.NXDOMAIN);
  });
  // A retry per lane at most: the query it had at the killed worker (in flight,
  // queued in its socket, or sent in the milliseconds its socket took to close).
  expect(retried).toBeLessThanOrEqual(10);

  await until("worker 2 back", async () => {
    const w = (await statusz(ports)).workers[1];
    return w?.up === true && w.pid !== victim.pid;
  });
  const back = (await statusz(ports)).workers[1] as WorkerStatus;
  expect(back).toMatchObject({ worker: 2, up: true, restarts: 1 });
  expect(isRunning(victim.pid as number)).toBe(false);
  expect(logLines(relay).find((l) => l.msg === "worker exited; restarting")).toMatchObject({
    worker: 2,
    pid: victim.pid,
    signal: "SIGKILL",
    restart_in_ms: 200,
  });
  expect(sample(await metricsText(ports), "doh_relay_worker_restarts_total")).toBe(1);
}

describe("workers: 2", () => {
  it("spreads UDP and TCP queries over both workers and sums their counters in /metrics", async () => {
    const { path, ports } = await relayConfig("spread.yaml");
    const relay = await startedRelay(path, ports);

    const udp = await udpBurst(ports.dns, 200, 20);
    udp.forEach((answer, i) => {
      expect(answer && readId(answer)).toBe(i);
      expect(answer && readRcode(answer)).toBe(Rcode.NOERROR);
    });
    const afterUdp = (await statusz(ports)).workers.map((w) => w.queries ?? 0);

    // Twenty connections of five pipelined queries, each from its own port:
    // the kernel (SO_REUSEPORT) or the primary (round-robin) spreads them.
    const tcp = await Promise.all(
      Array.from({ length: 20 }, (_, c) =>
        tcpPipeline(
          ports.dns,
          Array.from({ length: 5 }, (_, i) =>
            buildQuery("www.relay.test", 28, { id: 1000 + c * 5 + i }),
          ),
        ),
      ),
    );
    expect(tcp.flat()).toHaveLength(100);
    const status = await statusz(ports);
    const afterTcp = status.workers.map((w) => w.queries ?? 0);
    const tcpShare = afterTcp.map((n, i) => n - (afterUdp[i] ?? 0));

    expect(logLines(relay).find((l) => l.msg === "workers started")).toMatchObject({
      sockets: "one per worker (SO_REUSEPORT)",
    });
    expect(status.workers.map((w) => w.worker)).toEqual([1, 2]);
    expect(new Set(status.workers.map((w) => w.pid)).size).toBe(2);
    expect(status.workers.every((w) => w.pid !== relay.child.pid)).toBe(true);
    // Every query counted once, by the worker that answered it; both answered some.
    expect(afterUdp.reduce((a, b) => a + b)).toBe(200);
    expect(Math.min(...afterUdp)).toBeGreaterThan(0);
    expect(tcpShare.reduce((a, b) => a + b)).toBe(100);
    expect(Math.min(...tcpShare)).toBeGreaterThan(0);

    const text = await metricsText(ports);
    expect(sample(text, 'doh_relay_queries_total{protocol="udp",rcode="NOERROR"}')).toBe(200);
    expect(sample(text, 'doh_relay_queries_total{protocol="tcp",rcode="NOERROR"}')).toBe(100);
    expect(sample(text, 'doh_relay_query_duration_seconds_count{protocol="udp"}')).toBe(200);
    expect(sample(text, 'request_count_total{upstream="nsd"}')).toBe(300);
    expect(sample(text, "doh_relay_workers")).toBe(2);
    expect(text.match(/^# TYPE doh_relay_queries_total counter$/gm)).toHaveLength(1);

    const workerPids = status.workers.map((w) => w.pid as number);
    expect(await stopped(relay)).toBe(0);
    expect(workerPids.filter(isRunning)).toEqual([]);
    const lines = logLines(relay);
    expect(lines.filter((l) => l.msg === "stopped" && l.worker !== undefined)).toHaveLength(2);
    expect(lines.at(-1)).toMatchObject({ msg: "stopped", workers: 2 });
  });

  it("answers every query of a steady stream while a worker is SIGKILLed, and restarts it", async () => {
    const { path, ports } = await relayConfig("kill.yaml");
    const relay = await startedRelay(path, ports);
    await killDuringStream(relay, ports);
    expect(await stopped(relay)).toBe(0);
  });

  it("passes SIGHUP to every worker: each reloads the config", async () => {
    const { path, ports } = await relayConfig("hup.yaml");
    const relay = await startedRelay(path, ports);
    const ask = async (id: number) =>
      readRcode(
        (await udpExchange(ports.dns, buildQuery("www.relay.test", 1, { id }), 2000)) ??
          new Uint8Array(12),
      );
    expect(await ask(1)).toBe(Rcode.NOERROR);

    // The same listeners; the only upstream now a dead port: every answer becomes SERVFAIL.
    const dead = await freePort();
    const text = await readFile(path, "utf8");
    await writeFile(
      path,
      text.replace(`udp://127.0.0.1:${nsd.port}"`, `udp://127.0.0.1:${dead}", timeout: 200ms`),
    );
    relay.child.kill("SIGHUP");
    await until("both workers reloaded", () => {
      const reloaded = logLines(relay).filter((l) => l.msg === "config reloaded");
      return new Set(reloaded.map((l) => l.worker)).size === 2;
    });
    const before = (await statusz(ports)).workers.map((w) => w.queries ?? 0);
    const answers = await udpBurst(ports.dns, 40, 10, 10);
    expect(answers.map((a) => a && readRcode(a))).toEqual(Array(40).fill(Rcode.SERVFAIL));
    // Both workers answered some of them: both run the new config.
    const after = (await statusz(ports)).workers.map((w) => w.queries ?? 0);
    expect(Math.min(...after.map((n, i) => n - (before[i] ?? 0)))).toBeGreaterThan(0);
    expect(await stopped(relay)).toBe(0);
  });
});

describe("workers: 2 failing", () => {
  it("stops with exit 1 when a worker cannot start (its port is taken)", async () => {
    const { path, ports } = await relayConfig("taken.yaml");
    const holder = createSocket("udp4");
    await new Promise<void>((resolve) => holder.bind(ports.dns, "127.0.0.1", resolve));
    try {
      const relay = startRelay(path);
      const code = await new Promise((resolve) => relay.child.once("exit", resolve));
      expect(code).toBe(1);
      expect(logLines(relay).find((l) => l.msg === "worker failed to start")).toBeDefined();
    } finally {
      holder.close();
    }
  });

  it("gives up after control.max_consecutive_failure failures in a row, exit 1", async () => {
    const { path, ports } = await relayConfig(
      "give-up.yaml",
      "control: { max_consecutive_failure: 2, restart_backoff: 50ms }\n",
    );
    const relay = await startedRelay(path, ports);
    const exited = new Promise((resolve) => relay.child.once("exit", resolve));
    const first = (await statusz(ports)).workers[0] as WorkerStatus;
    process.kill(first.pid as number, "SIGKILL");
    let second: WorkerStatus | undefined;
    await until("worker 1 back", async () => {
      second = (await statusz(ports)).workers[0];
      return second?.up === true && second.pid !== first.pid;
    });
    process.kill(second?.pid as number, "SIGKILL");
    expect(await exited).toBe(1);
    expect(logLines(relay).map((l) => l.msg)).toContain(
      "worker keeps failing; stopping (control.max_consecutive_failure)",
    );
  });

  it("takes its workers down with it when the supervisor is SIGKILLed", async () => {
    const { path, ports } = await relayConfig("orphans.yaml");
    const relay = await startedRelay(path, ports);
    const pids = (await statusz(ports)).workers.map((w) => w.pid as number);
    relay.child.kill("SIGKILL");
    await until("workers gone", () => pids.every((pid) => !isRunning(pid)));
  });
});

describe("workers: 1", () => {
  it("serves from the one process it starts, with no supervisor", async () => {
    const { path, ports } = await relayConfig("one.yaml");
    await writeFile(path, (await readFile(path, "utf8")).replace("workers: 2", "workers: 1"));
    const relay = startRelay(path);
    await until("relay started", () => relay.log().includes('"msg":"relay started"'));
    const answer = await udpExchange(ports.dns, buildQuery("www.relay.test", 1, { id: 9 }), 2000);
    expect(answer && readRcode(answer)).toBe(Rcode.NOERROR);
    const children = await readFile(
      `/proc/${relay.child.pid}/task/${relay.child.pid}/children`,
      "utf8",
    );
    expect(children.trim()).toBe("");
    const status = await statusz(ports);
    expect(status).not.toHaveProperty("workers");
    expect(await stopped(relay)).toBe(0);
  });
});

describe("listen.udp.reuse_port", () => {
  it("lets two relay processes share one UDP port, both answering", async () => {
    const dns = await freePort();
    const relays = await Promise.all(
      [1, 2].map(async (n) => {
        const metrics = await freePort();
        const path = join(dir, `reuse-${n}.yaml`);
        await writeFile(
          path,
          `listen:
  udp: { addr: 127.0.0.1:${dns}, reuse_port: true }
  metrics: 127.0.0.1:${metrics}
upstreams: [{ name: nsd, url: "udp://127.0.0.1:${nsd.port}" }]
`,
        );
        const proc = startRelay(path);
        await until(`relay ${n} started`, () => proc.log().includes('"msg":"relay started"'));
        return { proc, ports: { dns, metrics } };
      }),
    );
    // Each query from a new source port: the kernel hashes the 4-tuple over both sockets.
    const answers = await udpBurst(dns, 100, 10);
    expect(answers.every((a) => a !== undefined)).toBe(true);
    const counts = await Promise.all(
      relays.map(async (r) =>
        sample(
          await metricsText(r.ports),
          'doh_relay_queries_total{protocol="udp",rcode="NOERROR"}',
        ),
      ),
    );
    expect(counts[0]! + counts[1]!).toBe(100);
    expect(Math.min(...counts)).toBeGreaterThan(0);
    for (const r of relays) expect(await stopped(r.proc)).toBe(0);
  });
});

describe("sumMetrics", () => {
  it("adds samples with the same labels and keeps each family together", () => {
    const one = `# HELP a_total A.\n# TYPE a_total counter\na_total{p="udp"} 2\n# HELP g G.\n# TYPE g gauge\ng 1\n`;
    const two = `# HELP a_total A.\n# TYPE a_total counter\na_total{p="udp"} 3\na_total{p="tcp"} 1\n# HELP g G.\n# TYPE g gauge\ng 0.5\n`;
    expect(sumMetrics([one, two])).toBe(
      `# HELP a_total A.\n# TYPE a_total counter\na_total{p="udp"} 5\na_total{p="tcp"} 1\n# HELP g G.\n# TYPE g gauge\ng 1.5\n`,
    );
    expect(familyTotal(two, "a_total")).toBe(4);
  });
});

describe("restart backoff (control)", () => {
  const control = parseRelayConfig({
    upstreams: [{ name: "a", url: "udp://127.0.0.1" }],
    control: { restart_backoff: "200ms", restart_max_backoff: "5s", min_stable_run: "10s" },
  }).config.control;

  it("doubles from restart_backoff up to restart_max_backoff", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => restartDelay(n, control))).toEqual([
      200, 400, 800, 1600, 3200, 5000, 5000, 5000,
    ]);
  });

  it("counts failures in a row until a run lasts min_stable_run", () => {
    let clock = 0;
    const policy = createRestartPolicy(control, () => clock);
    const crashAfter = (ms: number) => {
      const startedAt = clock;
      clock += ms;
      return policy.exited(startedAt);
    };
    expect(crashAfter(50)).toEqual({ delay: 200, failures: 1 });
    expect(crashAfter(50)).toEqual({ delay: 400, failures: 2 });
    expect(crashAfter(9_999)).toEqual({ delay: 800, failures: 3 });
    expect(crashAfter(10_000)).toEqual({ delay: 200, failures: 1 });
  });

  it("gives up after max_consecutive_failure failures in a row (0: never)", () => {
    // Every run ends at once: each exit is one more failure in a row.
    const now = () => 0;
    const policy = createRestartPolicy({ ...control, max_consecutive_failure: 3 }, now);
    expect(policy.exited(0)).toBeDefined();
    expect(policy.exited(0)).toBeDefined();
    expect(policy.exited(0)).toBeUndefined();
    const never = createRestartPolicy(control, now);
    for (let i = 0; i < 50; i++) expect(never.exited(0)).toBeDefined();
  });
});

/** The first `node` on PATH outside node_modules: what a LAN host runs. */
function machineNode(): string {
  for (const path of (process.env.PATH ?? "").split(delimiter)) {
    if (path.includes("node_modules")) continue;
    if (existsSync(join(path, "node"))) return join(path, "node");
  }
  return process.execPath;
}

describe("the release bundle under the machine's Node", () => {
  const node = machineNode();
  let bundle: string;
  let nodeVersion: string;
  /** Whether that Node sets SO_REUSEPORT (22.12 / 23.1 and later). */
  let reusePort: boolean;

  beforeAll(async () => {
    bundle = join(dir, "doh-relay.mjs");
    await buildRelay(bundle);
    nodeVersion = (await promisify(execFile)(node, ["-p", "process.versions.node"])).stdout.trim();
    const [major = 0, minor = 0] = nodeVersion.split(".").map(Number);
    reusePort = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
  }, 60_000);

  it("forks its workers from the bundle file; both answer (sharing sockets on Node 20)", async () => {
    const { path, ports } = await relayConfig("bundle.yaml");
    const relay = startRelay(path, node, bundle);
    await until("workers started", () => relay.log().includes('"msg":"workers started"'));
    const answers = await udpBurst(ports.dns, 100, 10);
    expect(answers.every((a) => a !== undefined && readRcode(a) === Rcode.NOERROR)).toBe(true);
    const { workers } = await statusz(ports);
    expect(workers.map((w) => w.queries ?? 0).reduce((a, b) => a + b)).toBe(100);
    expect(Math.min(...workers.map((w) => w.queries ?? 0))).toBeGreaterThan(0);
    expect(logLines(relay).find((l) => l.msg === "workers started")).toMatchObject({
      sockets: reusePort ? "one per worker (SO_REUSEPORT)" : "shared",
    });
    for (const w of workers) {
      const cmdline = await readFile(`/proc/${w.pid}/cmdline`, "utf8");
      expect(cmdline.split("\0").slice(0, 2)).toEqual([node, bundle]);
    }
    expect(await stopped(relay)).toBe(0);
  });

  it("answers every query while a worker is SIGKILLed, and restarts it", async () => {
    const { path, ports } = await relayConfig("bundle-kill.yaml");
    const relay = await startedRelay(path, ports, node, bundle);
    await killDuringStream(relay, ports);
    expect(await stopped(relay)).toBe(0);
  });

  it("takes reuse_port only where Node can set SO_REUSEPORT, else names the key", async () => {
    const path = join(dir, "reuse-check.yaml");
    await writeFile(
      path,
      `listen: { udp: { addr: 127.0.0.1:${await freePort()}, reuse_port: true } }
upstreams: [{ name: nsd, url: "udp://127.0.0.1:${nsd.port}" }]
`,
    );
    const result = await promisify(execFile)(node, [bundle, "--check", "--config", path]).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    if (reusePort) {
      expect(result.code).toBe(0);
    } else {
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe(
        `listen.udp.reuse_port: SO_REUSEPORT is not available with Node ${nodeVersion} here (it needs Node 22.12 or 23.1+, on Linux or a BSD); remove it: workers: N shares the listeners without it`,
      );
    }
  });
});
