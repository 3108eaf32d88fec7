// Where a process's CPU goes by kind, from Linux perf's samples (cpu-clock,
// every thread, kernel included): for bench/profile.ts, whose V8 profile
// sees JavaScript only and counts a system call's wall time (waiting for a
// CPU included) as its own. Needs `perf` and the right to attach to the
// process (root, or kernel.perf_event_paranoid ≤ 1 for the kernel part);
// perfAvailable() says whether it can run here.

import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Samples per second per CPU. */
const FREQUENCY = 999;

/** What a sample's DSO and symbol say it was doing; the first match wins. */
const KINDS: [kind: string, dso: RegExp, symbol: RegExp][] = [
  ["kernel: switching tasks", /kernel/, /finish_task_switch|__schedule|__switch_to|pick_next/],
  ["kernel: the rest (sockets, system calls)", /kernel/, /./],
  ["V8 garbage collector", /./, /Scaveng|Marking|MarkCompact|Sweep|Evacuat|Heap::|Compactor/],
  ["JavaScript (JIT code, V8 builtins)", /JIT|perf-\d+\.map/, /./],
  ["JavaScript (JIT code, V8 builtins)", /./, /^Builtins_/],
  ["malloc/free", /libc/, /malloc|free|_int_|unlink_chunk|consolidate/],
  ["OpenSSL", /./, /^(ssl|tls|SSL|EVP|ossl|aes|gcm|CRYPTO|BIO|OPENSSL)/i],
  ["Node and V8 C++, libc (the rest)", /./, /./],
];

export const PERF_KINDS = [...new Set(KINDS.map(([kind]) => kind))];

export async function perfAvailable(): Promise<boolean> {
  try {
    await run("perf", ["record", "-o", "/dev/null", "-q", "--", "true"]);
    return true;
  } catch {
    return false;
  }
}

/** Records `pid` into `file` until stop(). */
export function recordPerf(pid: number, file: string): { stop(): Promise<void> } {
  const child = spawn(
    "perf",
    ["record", "-q", "-F", String(FREQUENCY), "-p", String(pid), "-o", file],
    {
      stdio: "ignore",
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    async stop() {
      child.kill("SIGINT");
      await exited;
    },
  };
}

/** CPU ms per kind in a recording (samples × the sampling period). */
export async function perfSplit(file: string): Promise<Map<string, number>> {
  const { stdout } = await run(
    "perf",
    [
      "report",
      "-i",
      file,
      "--stdio",
      "--no-children",
      "-g",
      "none",
      "--sort",
      "dso,sym",
      "-n",
      "-t",
      "|",
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const ms = new Map<string, number>(PERF_KINDS.map((kind) => [kind, 0]));
  for (const line of stdout.split("\n")) {
    if (line.startsWith("#")) continue;
    const [, samples, dso, symbol] = line.split("|").map((field) => field.trim());
    if (!samples || dso === undefined || symbol === undefined) continue;
    const name = symbol.replace(/^\[.\]\s*/, "");
    const kind = KINDS.find(([, d, s]) => d.test(dso) && s.test(name))?.[0];
    if (kind) ms.set(kind, (ms.get(kind) ?? 0) + (Number(samples) * 1000) / FREQUENCY);
  }
  return ms;
}
