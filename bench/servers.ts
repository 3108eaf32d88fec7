// The servers under test besides nsd and unbound (test/support/dns-servers.ts),
// each a child process on 127.0.0.1: dnsdist in front of unbound, and the
// relay (relay/src/cli.ts) with a config written to a temp file.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/support/dns-servers.ts";
import {
  type ManagedProcess,
  startProcess,
  untilReady,
  waitForDns,
} from "../test/support/processes.ts";

export interface Server {
  readonly proc: ManagedProcess;
  readonly port: number;
}

/**
 * dnsdist 1.7 forwarding UDP to `backendPort` over UDP, or over DoT with
 * `tls` (certificate verified against `ca`, up to `maxInFlight` queries per
 * connection); no console, webserver or security polling.
 */
export async function startDnsdist(options: {
  dir: string;
  name: string;
  backendPort: number;
  probeName: string;
  tls?: { ca: string; subjectName: string; maxInFlight: number };
}): Promise<Server> {
  const port = await freePort();
  const conf = join(options.dir, `dnsdist-${options.name}.conf`);
  const tls = options.tls
    ? `, tls='openssl', subjectName='${options.tls.subjectName}', caStore='${options.tls.ca}', validateCertificates=true, maxInFlight=${options.tls.maxInFlight}`
    : "";
  await writeFile(
    conf,
    `setSecurityPollSuffix('')
setLocal('127.0.0.1:${port}')
newServer({address='127.0.0.1:${options.backendPort}', checkName='${options.probeName}'${tls}})
`,
  );
  const proc = startProcess(`dnsdist (${options.name})`, "dnsdist", [
    "--supervised",
    "--disable-syslog",
    "-C",
    conf,
  ]);
  await untilReady(proc, () => waitForDns(proc, port, options.probeName));
  return { proc, port };
}

export interface RelayServer extends Server {
  readonly metricsPort: number;
}

/**
 * The relay as its own process (so it does not share an event loop with the
 * bench), listening on UDP with one route to `upstream`. The cache is off and
 * the rate limiter unlimited, so every query is forwarded.
 */
export async function startRelayProcess(options: {
  dir: string;
  name: string;
  upstream: Record<string, unknown>;
  probeName: string;
  /** The relay's workers (default 1). */
  workers?: number;
  /** Runs `node entry` (e.g. the release bundle under another Node) instead of relay/src/cli.ts here. */
  command?: { node: string; entry: string };
  /** More top-level config keys (e.g. `metrics`). */
  extra?: Record<string, unknown>;
  /** Flags for Node before the entry, e.g. ["--cpu-prof", "--cpu-prof-dir=…"]. */
  nodeArgs?: string[];
}): Promise<RelayServer> {
  const port = await freePort();
  const metricsPort = await freePort();
  const config = {
    workers: options.workers ?? 1,
    listen: { udp: `127.0.0.1:${port}`, metrics: `127.0.0.1:${metricsPort}` },
    upstreams: [{ name: "unbound", ...options.upstream }],
    routes: [{ zones: ["."], upstreams: ["unbound"] }],
    cache: { size: 0 },
    rate_limit: { qps: 0, max_in_flight: 0 },
    log: { level: "warn" },
    ...options.extra,
  };
  // JSON is YAML.
  const file = join(options.dir, `relay-${options.name}.yaml`);
  await writeFile(file, JSON.stringify(config, null, 2));
  const proc = startProcess(`relay (${options.name})`, options.command?.node ?? process.execPath, [
    ...(options.nodeArgs ?? []),
    options.command?.entry ?? fileURLToPath(new URL("../relay/src/cli.ts", import.meta.url)),
    "--config",
    file,
  ]);
  await untilReady(proc, async () => {
    await waitForDns(proc, port, options.probeName);
    // With workers, the supervisor opens listen.metrics once every worker serves.
    for (let i = 0; ; i++) {
      const up = await fetchMetrics(metricsPort).then(
        () => true,
        () => false,
      );
      if (up) return;
      if (i >= 100) throw new Error(`relay (${options.name}): no /metrics:\n${proc.log()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
  return { proc, port, metricsPort };
}

/** The relay's Prometheus text from /metrics. */
export async function fetchMetrics(metricsPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, {
    signal: AbortSignal.timeout(2000),
  });
  return response.text();
}

/** Sum of every sample of `metric` (any labels) in Prometheus text. */
export function metricSum(text: string, metric: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${metric}{`) || line.startsWith(`${metric} `)) {
      const value = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(value)) sum += value;
    }
  }
  return sum;
}
