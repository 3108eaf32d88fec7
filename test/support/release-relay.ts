// The release build as a LAN host runs it: the machine's own `node` (not the
// npm-bundled one), the example config, and its idle memory. Shared by
// test/relay/release-build.test.ts and the bench.

import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./dns-servers.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The first `node` on PATH outside node_modules, with its version; ours when there is none. */
export function machineNode(): { path: string; version: string } {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir.includes("node_modules") || !existsSync(join(dir, "node"))) continue;
    const path = join(dir, "node");
    const version = execFileSync(path, ["-p", "process.versions.node"], { encoding: "utf8" });
    return { path, version: version.trim() };
  }
  return { path: process.execPath, version: process.versions.node };
}

/** relay/relay.example.yaml as shipped, on free ports, its upstreams moved to loopback (nothing is sent to them). */
export async function exampleConfigOnLoopback(file: string): Promise<string> {
  const example = (await readFile(join(ROOT, "relay/relay.example.yaml"), "utf8"))
    .replace(/https:\/\/[a-z.-]+\/dns-query/g, "https://127.0.0.1:9/dns-query")
    .replace("udp://192.168.1.1", "udp://127.0.0.1:9")
    .replaceAll("127.0.0.1:5053", `127.0.0.1:${await freePort()}`)
    .replace("127.0.0.1:9153", `127.0.0.1:${await freePort()}`);
  await writeFile(file, example);
  return file;
}

/** Resident memory (kB) of `node bundle --config config` after `ms` of idling; throws if it exits. */
export async function idleRssKb(
  node: string,
  bundle: string,
  config: string,
  ms = 2000,
): Promise<number> {
  const child = spawn(node, [bundle, "--config", config], { stdio: "ignore" });
  try {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (child.exitCode !== null) throw new Error(`the relay exited with ${child.exitCode}`);
    const status = await readFile(`/proc/${child.pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
  } finally {
    child.kill("SIGTERM");
  }
}
