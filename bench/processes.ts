// The bench's typed failure, and a process's CPU time from /proc. Starting
// and stopping processes is test/support/processes.ts.

import { readdirSync, readFileSync } from "node:fs";

export class BenchError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** User+system CPU seconds of a running process (Linux /proc), or undefined. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  const split = cpuSplit(pid);
  return split && split.user + split.system;
}

/** User and system CPU seconds of a running process apart (Linux /proc), or undefined. */
export function cpuSplit(pid: number | undefined): { user: number; system: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const user = Number(fields[11]) / 100;
    const system = Number(fields[12]) / 100;
    return Number.isFinite(user + system) ? { user, system } : undefined;
  } catch {
    return undefined;
  }
}

/** cpuSeconds of a process and its children (a relay with workers), or undefined. */
export function treeCpuSeconds(pid: number | undefined): number | undefined {
  const own = cpuSeconds(pid);
  if (pid === undefined || own === undefined) return own;
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(" ")
      .filter((p) => p !== "")
      .map(Number);
  } catch {
    return own;
  }
  return children.reduce((sum, child) => sum + (cpuSeconds(child) ?? 0), own);
}

/** Each thread's scheduler time of a process (Linux /proc/<pid>/task/<tid>/schedstat), ns. */
export function threadSchedTimes(pid: number): Map<number, { runNs: number; waitNs: number }> {
  const times = new Map<number, { runNs: number; waitNs: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      times.set(Number(tid), { runNs: Number(run), waitNs: Number(wait) });
    } catch {
      // the thread ended meanwhile
    }
  }
  return times;
}

/**
 * Over the interval between two threadSchedTimes readings, the busiest
 * thread's share of its runnable time that it spent on a CPU: 1 on an idle
 * machine, lower when other processes kept it waiting on the run queue.
 */
export function onCpuShare(
  before: Map<number, { runNs: number; waitNs: number }>,
  after: Map<number, { runNs: number; waitNs: number }>,
): number {
  let best = { run: 0, wait: 0 };
  for (const [tid, end] of after) {
    const start = before.get(tid) ?? { runNs: 0, waitNs: 0 };
    const run = end.runNs - start.runNs;
    if (run > best.run) best = { run, wait: end.waitNs - start.waitNs };
  }
  return best.run > 0 ? best.run / (best.run + best.wait) : 1;
}
