// An HTTP/3 DoH server that is not ours: h3-doh-server/main.go on quic-go's
// http3 package (Debian's golang-github-lucas-clemente-quic-go-dev, built in
// GOPATH mode), forwarding GET and POST /dns-query over UDP to a backend
// (or answering from memory, and over HTTP/2 too, for the bench).
// The binary is built once and cached under node_modules/.cache, keyed by the
// hash of its source and the Go version. The server takes commands on stdin
// (conns, requests, goaway, goaway0, close; see main.go) and answers each
// with one line on stdout.

import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = fileURLToPath(new URL("./h3-doh-server/main.go", import.meta.url));
const cacheDir = fileURLToPath(
  new URL("../../node_modules/.cache/doh-edge-h3-server", import.meta.url),
);

export const GOPATH = "/usr/share/gocode";

const DEBIAN_PACKAGES =
  "golang-go golang-github-lucas-clemente-quic-go-dev golang-github-miekg-dns-dev";
/** Files whose contents change when Debian ships another quic-go or miekg/dns. */
const LIBRARY_STAMPS = [
  "src/github.com/lucas-clemente/quic-go/http3/server.go",
  "src/github.com/miekg/dns/version.go",
];

function go(args: string[], env?: NodeJS.ProcessEnv): string {
  try {
    return execFileSync("go", args, { encoding: "utf8", env, stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr || (error as Error).message;
    throw new Error(
      `go ${args[0]} failed (on Debian: apt-get install ${DEBIAN_PACKAGES}):\n${detail}`,
    );
  }
}

/**
 * Builds the server unless a binary for this source, Go and libraries is
 * cached; returns its path.
 */
export function buildH3DohServer(): string {
  const hash = createHash("sha256")
    .update(readFileSync(source))
    .update(go(["version"]));
  for (const stamp of LIBRARY_STAMPS) {
    const path = `${GOPATH}/${stamp}`;
    hash.update(existsSync(path) ? readFileSync(path) : "missing");
  }
  const binary = `${cacheDir}/h3-doh-server-${hash.digest("hex").slice(0, 16)}`;
  if (existsSync(binary)) return binary;
  mkdirSync(cacheDir, { recursive: true });
  // Built beside its final name and renamed: a concurrent build never leaves half a binary.
  const partial = `${binary}.${process.pid}.partial`;
  go(["build", "-o", partial, source], {
    ...process.env,
    GO111MODULE: "off",
    GOPATH,
    GOFLAGS: "",
    GOCACHE: `${cacheDir}/gocache`,
  });
  renameSync(partial, binary);
  // Binaries of earlier sources are of no further use.
  for (const file of readdirSync(cacheDir)) {
    const path = `${cacheDir}/${file}`;
    if (/^h3-doh-server-[0-9a-f]+$/.test(file) && path !== binary) rmSync(path, { force: true });
  }
  return binary;
}

export interface H3DohServerOptions {
  certFile: string;
  keyFile: string;
  /** A UDP DNS server on 127.0.0.1; without it, answers from memory (NOERROR, no records). */
  backendPort?: number;
  /** Also serve the same handler over HTTP/2 (Go's net/http) on a TCP port. */
  h2?: boolean;
}

export interface H3DohServer {
  readonly port: number;
  /** The HTTP/2 port, with `h2`. */
  readonly h2Port: number | undefined;
  /** QUIC connections accepted so far. */
  connections(): Promise<number>;
  /** DoH requests served so far. */
  requests(): Promise<number>;
  /** GOAWAY on every open connection: after the last request accepted, or with ID 0. */
  goAway(id?: "after-last" | "zero"): Promise<void>;
  /** Closes every open connection with H3_NO_ERROR. */
  closeConnections(): Promise<void>;
  /** Output so far, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export async function startH3DohServer(options: H3DohServerOptions): Promise<H3DohServer> {
  const binary = buildH3DohServer();
  const args = ["-cert", options.certFile, "-key", options.keyFile];
  if (options.backendPort !== undefined) args.push("-backend", `127.0.0.1:${options.backendPort}`);
  if (options.h2) args.push("-h2");
  const child = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  let lines: string[] = [];
  let waiters: ((line: string) => void)[] = [];
  let partial = "";
  child.stderr.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  });
  child.stdout.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
    partial += d.toString();
    const parts = partial.split("\n");
    partial = parts.pop() ?? "";
    for (const line of parts) {
      const waiter = waiters.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const line = lines.shift();
      if (line !== undefined) return resolve(line);
      const timer = setTimeout(
        () => reject(new Error(`h3-doh-server: no reply\n${output}`)),
        10_000,
      );
      waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  // Commands are answered in order, one line each.
  let queue = Promise.resolve("");
  const command = (text: string) => {
    queue = queue
      .catch(() => "")
      .then(() => {
        child.stdin.write(`${text}\n`);
        return nextLine();
      });
    return queue;
  };
  const first = await nextLine();
  const started = /^port (\d+)(?: h2 (\d+))?$/.exec(first);
  const port = Number(started?.[1]);
  if (!port) throw new Error(`h3-doh-server did not start: ${first}\n${output}`);
  return {
    port,
    h2Port: started?.[2] ? Number(started[2]) : undefined,
    connections: async () => Number(await command("conns")),
    requests: async () => Number(await command("requests")),
    async goAway(id = "after-last") {
      await command(id === "zero" ? "goaway0" : "goaway");
    },
    async closeConnections() {
      await command("close");
    },
    log: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
      lines = [];
      waiters = [];
    },
  };
}
