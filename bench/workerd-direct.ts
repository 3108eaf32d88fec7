// The worker bundle in workerd itself, without Miniflare, for bench/worker.ts's
// CPU rows. Miniflare sends a worker's every outbound fetch through an
// interceptor worker and its Cache API to a cache worker, both JavaScript
// services on the same thread, so their work lands in the isolate's CPU
// profile. Here the bundle gets the network directly (loopback allowed) and,
// when asked, the in-isolate Cache API stand-in (bench/worker-cache-standin.js).

import { type ChildProcess, spawn } from "node:child_process";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleModules } from "../test/support/wrangler-build.ts";
import { BenchError } from "./processes.ts";

/** The workerd binary Miniflare runs (its dependency, the `workerd` package). */
const workerdBinary: string = createRequire(import.meta.resolve("miniflare"))("workerd").default;
const STAND_IN = fileURLToPath(new URL("worker-cache-standin.js", import.meta.url));
/** The inspector's id for the worker: its service name. */
export const DIRECT_INSPECTOR_ID = "main";

export interface DirectWorker {
  url: URL;
  inspector: URL;
  pid: number;
  dispose(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A capnp string literal. */
const quoted = (text: string) => JSON.stringify(text);

/** The modules, copied into `dir`, as capnp module entries (the entry first). */
async function modules(script: string, dir: string, cacheStandIn: boolean): Promise<string[]> {
  const entries: string[] = [];
  if (cacheStandIn) {
    const entry = `import "./bench-cache-standin.js";\nexport { default } from "./${basename(script)}";\n`;
    await writeFile(join(dir, "bench-entry.js"), entry);
    await copyFile(STAND_IN, join(dir, "bench-cache-standin.js"));
    entries.push('(name = "bench-entry.js", esModule = embed "bench-entry.js")');
    entries.push('(name = "bench-cache-standin.js", esModule = embed "bench-cache-standin.js")');
  }
  for (const module of bundleModules(script).modules) {
    const name = basename(module.path);
    await copyFile(module.path, join(dir, name));
    const kind = module.type === "ESModule" ? "esModule" : "text";
    entries.push(`(name = ${quoted(name)}, ${kind} = embed ${quoted(name)})`);
  }
  return entries;
}

/**
 * Waits until workerd accepts connections on `port`. A TCP connect, not a
 * request: an isolate's first request starts its block-list load, and a
 * cold start must be measured from the first DNS query.
 */
async function waitListening(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new BenchError("workerd_start", `bench:worker: workerd did not start:\n${log()}`);
}

/** Starts workerd serving `script` with DOH_CONFIG = `config` on a free loopback port. */
export async function startWorkerd(
  script: string,
  config: unknown,
  options: { cacheStandIn?: boolean; assetsDir?: string } = {},
): Promise<DirectWorker> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-workerd-"));
  const [port, inspectorPort] = [await freePort(), await freePort()];
  // Static assets from workerd's disk service: native, outside the isolate,
  // as Cloudflare's asset service is.
  const assets = options.assetsDir
    ? {
        service: `\n    (name = "assets", disk = (path = ${quoted(options.assetsDir)}, writable = false)),`,
        binding: ', (name = "ASSETS", service = "assets")',
      }
    : { service: "", binding: "" };
  const capnp = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "${DIRECT_INSPECTOR_ID}", worker = .worker),
    (name = "net", network = (allow = ["public", "private", "local"])),${assets.service}
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "${DIRECT_INSPECTOR_ID}")],
);
const worker :Workerd.Worker = (
  modules = [${(await modules(script, dir, options.cacheStandIn ?? false)).join(", ")}],
  compatibilityDate = "2026-10-20",
  bindings = [(name = "DOH_CONFIG", text = ${quoted(JSON.stringify(config))})${assets.binding}],
  globalOutbound = "net",
);
`;
  await writeFile(join(dir, "config.capnp"), capnp);
  const child = spawn(
    workerdBinary,
    ["serve", "config.capnp", "--inspector-addr", `127.0.0.1:${inspectorPort}`],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  // A bench that dies leaves no workerd behind.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  child.once("exit", () => process.removeListener("exit", killOnExit));
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const dispose = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  const url = new URL(`http://127.0.0.1:${port}/`);
  try {
    await waitListening(port, child, () => output);
  } catch (error) {
    await dispose();
    throw error;
  }
  return {
    url,
    inspector: new URL(`ws://127.0.0.1:${inspectorPort}/`),
    pid: child.pid!,
    dispose,
  };
}
