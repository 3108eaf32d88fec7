// Real DNS servers for integration tests: nsd (authoritative test zones) and
// unbound (recursive front, plain and DoT), started on loopback ports and
// stopped after. Node only.

import { execFile } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createCa, ensureTestCa } from "../tools/test-ca.ts";
import { startProcess, untilReady, waitForDns, waitForTcp } from "./processes.ts";

const run = promisify(execFile);

export interface RunningServer {
  readonly port: number;
  /** The server process, for CPU readings (absent for in-process servers). */
  readonly pid?: number | undefined;
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 for both UDP and TCP at the time of the call. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const tcp = createServer();
    await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
    const { port } = tcp.address() as { port: number };
    const udp = createSocket("udp4");
    const ok = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, "127.0.0.1", () => resolve(true));
    });
    udp.close();
    await new Promise((resolve) => tcp.close(resolve));
    if (ok) return port;
  }
  throw new Error("no free port found");
}

export interface NsdOptions {
  /** zone name → zone file text */
  zones: Record<string, string>;
}

export async function startNsd(options: NsdOptions): Promise<RunningServer> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-nsd-"));
  const port = await freePort();
  let zonesConf = "";
  for (const [name, text] of Object.entries(options.zones)) {
    const file = `${name.replace(/\.$/, "") || "root"}.zone`;
    await writeFile(join(dir, file), text);
    zonesConf += `zone:\n  name: "${name}"\n  zonefile: "${file}"\n`;
  }
  await writeFile(
    join(dir, "nsd.conf"),
    `server:
  ip-address: 127.0.0.1@${port}
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
  # No response rate limiting: load tests send one name many times.
  rrl-ratelimit: 0
remote-control:
  control-enable: no
${zonesConf}`,
  );
  const proc = startProcess("nsd", "nsd", ["-d", "-c", join(dir, "nsd.conf")]);
  const removeDir = () => rm(dir, { recursive: true, force: true });
  await untilReady(
    proc,
    () => waitForDns(proc, port, Object.keys(options.zones)[0] ?? "."),
    removeDir,
  );
  return {
    port,
    pid: proc.child.pid,
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestCertificates {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Names the server certificate is valid for. */
  names: string[];
}

/**
 * A server certificate for dns.test, localhost, 127.0.0.1 and ::1, signed by
 * a throwaway CA, or with `workerdCa` by the test CA workerd trusts
 * (test/tools/test-ca.ts), for servers that workerd reaches over TLS.
 */
export async function createTestCertificates(
  options: { workerdCa?: boolean } = {},
): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-ca-"));
  const f = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  let caFile = f("ca.pem");
  let caKey = f("ca.key");
  if (options.workerdCa) {
    const caDir = ensureTestCa();
    caFile = join(caDir, "ca.pem");
    caKey = join(caDir, "ca.key");
  } else {
    createCa(caKey, caFile, "doh-edge throwaway test CA", 2);
  }
  await run("openssl", [
    "req",
    ...ec,
    "-keyout",
    f("server.key"),
    "-out",
    f("server.csr"),
    "-subj",
    "/CN=dns.test",
  ]);
  await writeFile(
    f("ext.cnf"),
    "subjectAltName=DNS:dns.test,DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    f("server.csr"),
    "-CA",
    caFile,
    "-CAkey",
    caKey,
    "-CAserial",
    f("ca.srl"),
    "-CAcreateserial",
    "-out",
    f("server.pem"),
    "-days",
    "2",
    "-extfile",
    f("ext.cnf"),
  ]);
  return {
    dir,
    caFile,
    certFile: f("server.pem"),
    keyFile: f("server.key"),
    names: ["dns.test", "localhost", "127.0.0.1", "::1"],
  };
}

export interface UnboundOptions {
  /** zone → authoritative port on 127.0.0.1 (stub zones, e.g. an nsd). */
  stubs: Record<string, number>;
  /** Serve DoT too, with these certificates. */
  tls?: TestCertificates;
  /** Serve DoH (HTTP/2 over TLS, /dns-query) too; needs `tls`. */
  doh?: boolean;
  /** Reuse these ports (to restart a server in place); fresh ones otherwise. */
  ports?: { port: number; tlsPort?: number | undefined };
  /** More `server:` lines, e.g. "tcp-idle-timeout: 300". */
  extra?: string[];
}

export interface RunningUnbound extends RunningServer {
  readonly tlsPort: number | undefined;
  readonly dohPort: number | undefined;
}

export async function startUnbound(options: UnboundOptions): Promise<RunningUnbound> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-unbound-"));
  const port = options.ports?.port ?? (await freePort());
  const tlsPort = options.tls ? (options.ports?.tlsPort ?? (await freePort())) : undefined;
  const dohPort = options.tls && options.doh ? await freePort() : undefined;
  const stubs = Object.entries(options.stubs)
    .map(([zone, p]) => `stub-zone:\n  name: "${zone}"\n  stub-addr: 127.0.0.1@${p}\n`)
    .join("");
  // Test zones live under special-use TLDs unbound serves itself by default.
  const nodefault = Object.keys(options.stubs)
    .map((zone) => zone.replace(/\.$/, "").split(".").pop())
    .filter((tld, i, all) => tld && all.indexOf(tld) === i)
    .map((tld) => `  local-zone: "${tld}." nodefault\n  domain-insecure: "${tld}."\n`)
    .join("");
  const tls = options.tls
    ? `  interface: 127.0.0.1@${tlsPort}
  tls-port: ${tlsPort}
  tls-service-key: "${options.tls.keyFile}"
  tls-service-pem: "${options.tls.certFile}"
${
  dohPort === undefined
    ? ""
    : `  interface: 127.0.0.1@${dohPort}\n  https-port: ${dohPort}\n  http-endpoint: "/dns-query"\n`
}`
    : "";
  await writeFile(
    join(dir, "unbound.conf"),
    `server:
  interface: 127.0.0.1@${port}
${tls}  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
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
  extended-statistics: yes
${(options.extra ?? []).map((line) => `  ${line}\n`).join("")}${nodefault}${stubs}remote-control:
  control-enable: no
`,
  );
  const proc = startProcess("unbound", "unbound", ["-d", "-c", join(dir, "unbound.conf")]);
  await untilReady(
    proc,
    async () => {
      await waitForDns(proc, port, Object.keys(options.stubs)[0] ?? ".");
      if (dohPort !== undefined) await waitForTcp(proc, dohPort);
    },
    () => rm(dir, { recursive: true, force: true }),
  );
  return {
    port,
    pid: proc.child.pid,
    tlsPort,
    dohPort,
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
