// The servers under test, each a child process on 127.0.0.1: unbound (plain
// UDP and DNS-over-HTTPS), dnsdist in front of unbound, and the relay
// (relay/src/cli.ts) with a config written to a temp file.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, type TestCertificates } from "../test/support/dns-servers.ts";
import { type BenchProcess, startProcess, waitForTcp, waitForUdp } from "./processes.ts";

export interface Server {
  readonly proc: BenchProcess;
  readonly port: number;
}

export interface UnboundServers {
  readonly proc: BenchProcess;
  /** Plain DNS (UDP and TCP). */
  readonly port: number;
  /** DNS-over-HTTPS (HTTP/2 over TLS), path /dns-query. */
  readonly dohPort: number;
}

/** unbound with a stub zone at nsd, serving plain DNS and DoH. */
export async function startUnboundDoh(options: {
  dir: string;
  zone: string;
  nsdPort: number;
  certs: TestCertificates;
  probeName: string;
}): Promise<UnboundServers> {
  const port = await freePort();
  const dohPort = await freePort();
  const tld = options.zone.replace(/\.$/, "").split(".").pop();
  const conf = join(options.dir, "unbound.conf");
  await writeFile(
    conf,
    `server:
  interface: 127.0.0.1@${port}
  interface: 127.0.0.1@${dohPort}
  https-port: ${dohPort}
  http-endpoint: "/dns-query"
  tls-service-key: "${options.certs.keyFile}"
  tls-service-pem: "${options.certs.certFile}"
  username: ""
  chroot: ""
  directory: "${options.dir}"
  pidfile: "${options.dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  incoming-num-tcp: 256
  so-rcvbuf: 4m
  so-sndbuf: 4m
  local-zone: "${tld}." nodefault
  domain-insecure: "${tld}."
stub-zone:
  name: "${options.zone}"
  stub-addr: 127.0.0.1@${options.nsdPort}
remote-control:
  control-enable: no
`,
  );
  const proc = startProcess("unbound", "unbound", ["-d", "-c", conf]);
  try {
    await waitForUdp(proc, port, options.probeName);
    await waitForTcp(proc, dohPort);
  } catch (error) {
    await proc.stop();
    throw error;
  }
  return { proc, port, dohPort };
}

/** dnsdist 1.7 forwarding UDP to `backendPort`; no console, webserver or security polling. */
export async function startDnsdist(options: {
  dir: string;
  backendPort: number;
  probeName: string;
}): Promise<Server> {
  const port = await freePort();
  const conf = join(options.dir, "dnsdist.conf");
  await writeFile(
    conf,
    `setSecurityPollSuffix('')
setLocal('127.0.0.1:${port}')
newServer({address='127.0.0.1:${options.backendPort}', checkName='${options.probeName}'})
`,
  );
  const proc = startProcess("dnsdist", "dnsdist", ["--supervised", "--disable-syslog", "-C", conf]);
  try {
    await waitForUdp(proc, port, options.probeName);
  } catch (error) {
    await proc.stop();
    throw error;
  }
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
}): Promise<RelayServer> {
  const port = await freePort();
  const metricsPort = await freePort();
  const config = {
    listen: { udp: `127.0.0.1:${port}`, metrics: `127.0.0.1:${metricsPort}` },
    upstreams: [{ name: "unbound", ...options.upstream }],
    routes: [{ zones: ["."], upstreams: ["unbound"] }],
    cache: { size: 0 },
    rate_limit: { qps: 0, max_in_flight: 0 },
    log: { level: "warn" },
  };
  // JSON is YAML.
  const file = join(options.dir, `relay-${options.name}.yaml`);
  await writeFile(file, JSON.stringify(config, null, 2));
  const proc = startProcess(`relay (${options.name})`, process.execPath, [
    fileURLToPath(new URL("../relay/src/cli.ts", import.meta.url)),
    "--config",
    file,
  ]);
  try {
    await waitForUdp(proc, port, options.probeName);
  } catch (error) {
    await proc.stop();
    throw error;
  }
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
