// The worker as users run it locally: `wrangler dev` on a free loopback port
// with `--var` values (DOH_CONFIG, secrets), started and stopped by a test or
// a bench. Waits until wrangler says it is ready.

import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WRANGLER_ENV } from "../../scripts/stack.ts";
import { freePort } from "./dns-servers.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface WranglerDev {
  readonly url: URL;
  stop(): Promise<void>;
}

export async function startWranglerDev(
  vars: Record<string, string>,
  readyMs = 60_000,
): Promise<WranglerDev> {
  // freePort only finds a port that was free a moment ago: another process
  // may take it before wrangler binds, so a lost port means another try.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreePort(vars, readyMs);
    } catch (error) {
      if (attempt >= 3 || !/EADDRINUSE|Address already in use/.test(String(error))) throw error;
    }
  }
}

async function startOnFreePort(
  vars: Record<string, string>,
  readyMs: number,
): Promise<WranglerDev> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
      "--show-interactive-dev-session=false",
    ],
    { cwd: ROOT, env: { ...process.env, ...WRANGLER_ENV, CI: "true" } },
  );
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  };
  let output = "";
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`wrangler dev not ready:\n${output}`)),
        readyMs,
      );
      const onData = (chunk: Buffer) => {
        output += chunk;
        if (output.includes("Ready on")) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code) => reject(new Error(`wrangler dev exited ${code}:\n${output}`)));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: new URL(`http://127.0.0.1:${port}/`), stop };
}
