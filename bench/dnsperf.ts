// Runs dnsperf (2.10) for a bounded time against one target and parses its
// summary: queries sent/completed/lost, queries per second, average latency.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { BenchError } from "./processes.ts";

const run = promisify(execFile);

export interface DnsperfTarget {
  port: number;
  /**
   * DNS-over-HTTPS to /dns-query instead of UDP. GET: dnsperf 2.10's POST
   * stalls ~44 ms per query against unbound on loopback (apparently Nagle
   * against delayed ACK on its separate HEADERS and DATA writes), which would
   * measure dnsperf, not the server.
   */
  doh?: "GET" | "POST";
  /** DNS over TLS on one connection (dnsperf does not verify the certificate). */
  dot?: boolean;
}

export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  /** Seconds. */
  avgLatency: number;
}

export interface DnsperfRun {
  target: DnsperfTarget;
  queryFile: string;
  /** Queries outstanding at once (-q). */
  outstanding: number;
  /** Time limit, seconds (-l). */
  seconds: number;
  /** Safety cap on the send rate (-Q). */
  maxQps: number;
  /** Client sockets (-c, default 1): SO_REUSEPORT spreads by source port, so it needs several. */
  clients?: number;
}

function field(text: string, label: string): number {
  const match = new RegExp(`${label}:\\s+([0-9.]+)`).exec(text);
  if (!match?.[1]) throw new BenchError("dnsperf_output", `dnsperf output lacks "${label}"`);
  return Number(match[1]);
}

export function parseDnsperf(text: string): DnsperfResult {
  return {
    sent: field(text, "Queries sent"),
    completed: field(text, "Queries completed"),
    lost: field(text, "Queries lost"),
    qps: field(text, "Queries per second"),
    avgLatency: field(text, "Average Latency \\(s\\)"),
  };
}

export async function dnsperf(options: DnsperfRun): Promise<DnsperfResult> {
  const { target } = options;
  const args = [
    "-s",
    "127.0.0.1",
    "-p",
    String(target.port),
    "-d",
    options.queryFile,
    "-c",
    String(options.clients ?? 1),
    "-T",
    "1",
    "-q",
    String(options.outstanding),
    "-Q",
    String(options.maxQps),
    "-l",
    String(options.seconds),
    "-t",
    "2",
  ];
  if (target.doh) {
    args.push(
      "-m",
      "doh",
      "-O",
      `doh-uri=https://127.0.0.1:${target.port}/dns-query`,
      "-O",
      `doh-method=${target.doh}`,
    );
  }
  if (target.dot) args.push("-m", "dot");
  const { stdout } = await run("dnsperf", args, {
    timeout: (options.seconds + 15) * 1000,
    killSignal: "SIGKILL",
    maxBuffer: 4 * 1024 * 1024,
  });
  try {
    return parseDnsperf(stdout);
  } catch (error) {
    throw new BenchError("dnsperf_output", `${(error as Error).message}:\n${stdout}`);
  }
}
