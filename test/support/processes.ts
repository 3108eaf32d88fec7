// Child processes for tests and the bench: started with captured output,
// waited on until a loopback port answers, stopped (SIGTERM, then SIGKILL).

import { type ChildProcess, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { buildQuery } from "../../shared/dns/query.ts";

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** The last 20,000 characters of stdout and stderr. */
  log(): string;
  stop(): Promise<void>;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  env?: Record<string, string>,
): ManagedProcess {
  const child = spawn(command, args, {
    stdio: ["ignore", "pipe", "pipe"],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  let output = "";
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.on("error", (error) => keep(Buffer.from(`spawn error: ${error.message}\n`)));
  return {
    name,
    child,
    log: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Sends one UDP query to 127.0.0.1:`port`, from `source` when given; resolves
 * with the answer bytes, or undefined after `ms`.
 */
export function udpExchange(
  port: number,
  query: Uint8Array,
  ms = 500,
  source?: string,
): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket("udp4");
    const timer = setTimeout(() => finish(undefined), ms);
    const finish = (value: Uint8Array | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(value);
    };
    socket.on("message", (msg) => finish(new Uint8Array(msg)));
    socket.on("error", () => finish(undefined));
    socket.bind(0, source, () => socket.send(query, port, "127.0.0.1"));
  });
}

function assertRunning(proc: ManagedProcess) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
    throw new Error(`${proc.name} exited early:\n${proc.log()}`);
  }
}

/** Resolves once `port` answers a UDP query for `name`, or throws after `ms`. */
export async function waitForDns(
  proc: ManagedProcess,
  port: number,
  name: string,
  ms = 15_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    assertRunning(proc);
    if (await udpExchange(port, buildQuery(name, 6, { id: 7 }), 200)) return;
  }
  throw new Error(`${proc.name} did not answer on port ${port}:\n${proc.log()}`);
}

/** Resolves once a TCP connection to `port` succeeds, or throws after `ms`. */
export async function waitForTcp(proc: ManagedProcess, port: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    assertRunning(proc);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${proc.name} did not accept TCP on port ${port}:\n${proc.log()}`);
}

/** Waits for `ready`; if it fails, stops the process, runs `cleanup` and rethrows. */
export async function untilReady(
  proc: ManagedProcess,
  ready: () => Promise<void>,
  cleanup: () => Promise<void> = async () => {},
): Promise<void> {
  try {
    await ready();
  } catch (error) {
    await proc.stop();
    await cleanup();
    throw error;
  }
}
