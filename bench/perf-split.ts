// Where a process's CPU goes by kind, from Linux perf's samples (cpu-clock,
// every thread, kernel included): for bench/profile.ts, whose V8 profile
// sees JavaScript only and counts a system call's wall time (waiting for a
// CPU included) as its own. Needs `perf` and the right to attach to the
// process (root, or kernel.perf_event_paranoid ≤ 1 for the kernel part);
// perfAvailable() says whether it can run here. A process started with
// PERF_NODE_ARGS writes its JIT code's names to /tmp/perf-<pid>.map, so its
// JavaScript is told apart by file: the project's own, Node's (node:…) and
// dependencies'.

import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Samples per second per CPU. */
const FREQUENCY = 999;

/** Node flags for a process perf will record: JIT code named in /tmp/perf-<pid>.map. */
// Without code-space compaction a function's code keeps its address, so the map stays true.
export const PERF_NODE_ARGS = ["--perf-basic-prof-only-functions", "--no-compact-code-space"];

export const OWN_JS = "JavaScript: this project's files";
export const NODE_JS = "JavaScript: Node's own (node:…)";
export const BUILTINS = "V8 builtins (property access, promises, typed arrays)";

/** What a sample's DSO and symbol say it was doing; the first match wins. */
const JIT = /JIT|perf-\d+\.map/;
const KINDS: [kind: string, dso: RegExp, symbol: RegExp][] = [
  ["kernel: switching tasks", /kernel/, /finish_task_switch|__schedule|__switch_to|pick_next/],
  ["kernel: the rest (sockets, system calls)", /kernel/, /./],
  ["V8 garbage collector", /./, /Scaveng|Marking|MarkCompact|Sweep|Evacuat|Heap::|Compactor/],
  [OWN_JS, JIT, /file:\/\/(?!.*node_modules)/],
  [NODE_JS, JIT, / node:/],
  ["JavaScript: dependencies, regexps, stubs", JIT, /./],
  [BUILTINS, /./, /^Builtins_/],
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

/** What perfSplit reads from a recording. */
export interface PerfSplit {
  /** CPU ms per kind (samples × the sampling period). */
  kinds: Map<string, number>;
  /** CPU ms per JavaScript function (the project's files, Node's) and per V8 builtin, most first. */
  functions: [name: string, ms: number][];
}

/** A JIT symbol as `name file:line` (perf map form: `JS:*'name file:///…/path:line:col`). */
function jsFunction(symbol: string): string {
  const m =
    /^JS:\S?'?(.*?) (?:file:\/\/\S*?\/((?:relay|shared|bench|edge-worker)\/\S+)|(node:\S+)):(\d+):\d+$/.exec(
      symbol,
    );
  if (!m) return symbol;
  return `${m[1] || "(anonymous)"} ${m[2] ?? m[3]}:${m[4]}`;
}

export async function perfSplit(file: string): Promise<PerfSplit> {
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
  const kinds = new Map<string, number>(PERF_KINDS.map((kind) => [kind, 0]));
  const functions = new Map<string, number>();
  for (const line of stdout.split("\n")) {
    if (line.startsWith("#")) continue;
    const [, samples, dso, symbol] = line.split("|").map((field) => field.trim());
    if (!samples || dso === undefined || symbol === undefined) continue;
    const name = symbol.replace(/^\[.\]\s*/, "");
    const kind = KINDS.find(([, d, s]) => d.test(dso) && s.test(name))?.[0];
    if (!kind) continue;
    const ms = (Number(samples) * 1000) / FREQUENCY;
    kinds.set(kind, (kinds.get(kind) ?? 0) + ms);
    if (kind === OWN_JS || kind === NODE_JS || kind === BUILTINS) {
      // Optimised and baseline code of one function are separate symbols: summed.
      const fn = jsFunction(name);
      functions.set(fn, (functions.get(fn) ?? 0) + ms);
    }
  }
  return { kinds, functions: [...functions].sort((a, b) => b[1] - a[1]) };
}
