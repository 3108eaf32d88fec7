// Child processes for the bench: start with captured output, wait until a
// loopback port answers, stop (SIGTERM, then SIGKILL), and read a process's
// CPU time from /proc.

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { buildQuery } from "../shared/dns/query.ts";
import { udpExchange } from "../test/support/dns-servers.ts";

export class BenchError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export interface BenchProcess {
  readonly name: string;
  readonly child: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

export function startProcess(name: string, command: string, args: string[]): BenchProcess {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
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
      const timer = setTimeout(() => child.kill("SIGKILL"), 6000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function assertRunning(proc: BenchProcess) {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
    throw new BenchError("exited", `${proc.name} exited early:\n${proc.log()}`);
  }
}

/** Resolves once `port` answers a UDP query for `name` (AAAA), or throws after 15 s. */
export async function waitForUdp(proc: BenchProcess, port: number, name: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    assertRunning(proc);
    if (await udpExchange(port, buildQuery(name, 28, { id: 7 }), 300)) return;
  }
  throw new BenchError("not_ready", `${proc.name} did not answer on ${port}:\n${proc.log()}`);
}

/** Resolves once a TCP connection to `port` succeeds, or throws after 15 s. */
export async function waitForTcp(proc: BenchProcess, port: number): Promise<void> {
  const deadline = Date.now() + 15_000;
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
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new BenchError("not_ready", `${proc.name} did not accept TCP on ${port}:\n${proc.log()}`);
}

/** User+system CPU seconds of a running process (Linux /proc), or undefined. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : undefined;
  } catch {
    return undefined;
  }
}
