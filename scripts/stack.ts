// `npm start` / `npm run demo`: the edge worker under `wrangler dev` and the
// relay in front of it, in one terminal. Each component's log lines carry
// its name; relay JSON logs are rendered as one readable line each. Ctrl-C
// (or SIGTERM) stops both and waits for them.
//
//   node scripts/stack.ts                 worker (wrangler.toml's DOH_CONFIG) + relay/relay.start.yaml
//   node scripts/stack.ts --demo          the demo stack (scripts/demo.ts): local origin, no internet needed

import { type ChildProcess, spawn } from "node:child_process";
import { delimiter, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WRANGLER = fileURLToPath(new URL("../node_modules/.bin/wrangler", import.meta.url));
const RELAY_CLI = fileURLToPath(new URL("../relay/src/cli.ts", import.meta.url));

export interface Component {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  /** A line of its output that means it is ready. */
  ready: (line: string) => boolean;
  /** Printed once ready. */
  banner: string;
}

const colors = process.stdout.isTTY ? ["\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m"] : [];
const reset = process.stdout.isTTY ? "\x1b[0m" : "";

function say(name: string, index: number, text: string) {
  process.stdout.write(`${colors[index] ?? ""}${name.padEnd(7)}${reset}| ${text}\n`);
}

/** A relay (pino JSON) line as "time level msg key=value …"; other lines unchanged. */
export function renderLogLine(line: string): string {
  if (!line.startsWith("{")) return line;
  try {
    const { level, time, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
    const when = typeof time === "string" ? time.slice(11, 19) : "";
    const rest = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ");
    return `${when} ${String(level).padEnd(5)} ${String(msg)}${rest ? ` ${rest}` : ""}`;
  } catch {
    return line;
  }
}

/**
 * Starts every component in order (each waits for the previous one's ready
 * line), prints the banners, and resolves when all have exited after a
 * signal, or rejects when one exits on its own.
 */
export async function runStack(components: Component[], onStop?: () => Promise<void>) {
  const children: ChildProcess[] = [];
  let stopping = false;
  let stopped: Promise<void> | undefined;
  // One stop, however many signals arrive (Ctrl-C reaches the children too).
  const stop = () => {
    stopping = true;
    stopped ??= (async () => {
      await Promise.all(
        children.map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              const timer = setTimeout(() => child.kill("SIGKILL"), 8000);
              child.once("exit", () => {
                clearTimeout(timer);
                resolve();
              });
              child.kill("SIGTERM");
            }),
        ),
      );
      await onStop?.();
    })();
    return stopped;
  };
  const onSignal = () => {
    if (!stopping) process.stdout.write("\nstopping…\n");
    void stop().then(() => process.exit(0));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    for (const [index, component] of components.entries()) {
      const child = spawn(component.command, component.args, {
        cwd: ROOT,
        // Children (wrangler's `#!/usr/bin/env node` included) run on this Node.
        env: {
          ...process.env,
          PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
          ...component.env,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      await new Promise<void>((resolve, reject) => {
        let ready = false;
        const onLine = (line: string) => {
          say(component.name, index, renderLogLine(line));
          if (!ready && component.ready(line)) {
            ready = true;
            resolve();
          }
        };
        createInterface({ input: child.stdout! }).on("line", onLine);
        createInterface({ input: child.stderr! }).on("line", onLine);
        child.once("error", reject);
        child.once("exit", (code, signal) => {
          if (!stopping) {
            reject(new Error(`${component.name} exited (${signal ?? `code ${code}`})`));
          }
        });
      });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  process.stdout.write("\n");
  for (const [index, component] of components.entries())
    say(component.name, index, component.banner);
  process.stdout.write("\nCtrl-C stops everything.\n\n");
  await new Promise<never>((_, reject) => {
    for (const [index, child] of children.entries()) {
      child.once("exit", (code, signal) => {
        if (!stopping) {
          const name = components[index]?.name ?? "a component";
          void stop().then(() => reject(new Error(`${name} exited (${signal ?? `code ${code}`})`)));
        }
      });
    }
  });
}

/** wrangler dev without calls home: no telemetry, no download of the Request.cf sample. */
export const WRANGLER_ENV = {
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
};

export function workerComponent(extraArgs: string[] = []): Component {
  return {
    name: "worker",
    command: WRANGLER,
    args: [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      "8787",
      "--show-interactive-dev-session=false",
      ...extraArgs,
    ],
    env: { ...WRANGLER_ENV, NO_COLOR: "1", FORCE_COLOR: "0" },
    ready: (line) => line.includes("Ready on http://"),
    banner:
      "DoH on http://127.0.0.1:8787/dns-query — try: curl -s 'http://127.0.0.1:8787/resolve?name=example.com&type=A'",
  };
}

export function relayComponent(config: string, env: Record<string, string> = {}): Component {
  return {
    name: "relay",
    command: process.execPath,
    args: [RELAY_CLI, "--config", config],
    env,
    ready: (line) => line.includes('"msg":"relay started"'),
    banner:
      "DNS on 127.0.0.1:5053 (UDP and TCP) — try: dig @127.0.0.1 -p 5053 example.com; metrics: curl -s http://127.0.0.1:9153/metrics",
  };
}

async function main() {
  if (process.argv.includes("--demo")) {
    const { runDemo } = await import("./demo.ts");
    await runDemo();
    return;
  }
  await runStack([
    workerComponent(),
    relayComponent(fileURLToPath(new URL("../relay/relay.start.yaml", import.meta.url))),
  ]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: Error) => {
    process.stderr.write(`stack: ${error.message}\n`);
    process.exit(1);
  });
}
