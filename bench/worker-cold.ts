// Running the worker bundle for bench/worker.ts: a Miniflare instance (for
// the rows with Miniflare's Cache API), workerd's pid and resident memory,
// and a cold isolate's first answer in a fresh plain workerd.

import { readdir, readFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { buildQuery } from "../shared/dns/query.ts";
import { readRcode } from "../shared/dns/wire.ts";
import { bundleModules } from "../test/support/wrangler-build.ts";
import { BenchError, threadSchedTimes } from "./processes.ts";
import { openInspector } from "./worker-profile.ts";
import { DIRECT_INSPECTOR_ID, startWorkerd } from "./workerd-direct.ts";

export interface WorkerOptions {
  /** Open workerd's inspector on a free port (Miniflare.getInspectorURL). */
  inspector?: boolean;
}

export interface ColdOptions {
  /** A static-assets directory behind the ASSETS binding (workerd's disk service). */
  assetsDir?: string;
  /** Also read workerd's memory this long after the first answer (background work done). */
  settleMs?: number;
}

/** The inspector's id for the worker under Miniflare. */
export const MINIFLARE_INSPECTOR_ID = "core:user:doh-edge";

export function startWorker(script: string, config: unknown, options: WorkerOptions = {}) {
  return new Miniflare(
    convertV4MiniflareOptions({
      ...(options.inspector ? { inspectorPort: 0 } : {}),
      workers: [
        {
          name: "doh-edge",
          ...bundleModules(script),
          compatibilityDate: "2026-10-20",
          compatibilityFlags: ["nodejs_compat"],
          bindings: { DOH_CONFIG: JSON.stringify(config) },
        },
      ],
    }),
  );
}

export async function dnsPost(url: URL, name: string): Promise<number> {
  const response = await fetch(new URL("/dns-query", url), {
    method: "POST",
    headers: { "content-type": "application/dns-message", accept: "application/dns-message" },
    body: buildQuery(name, 1, { id: 7 }),
  });
  if (response.status !== 200) {
    const body = (await response.text()).slice(0, 200);
    throw new BenchError(
      "worker_http",
      `bench:worker: HTTP ${response.status} for ${name}: ${body}`,
    );
  }
  return readRcode(new Uint8Array(await response.arrayBuffer()));
}

/** Resident memory of a process, MB. */
export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
}

/** Peak resident memory of a process (VmHWM), MB. */
export async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) / 1024;
}

/** workerd's pid: the child of this process that Miniflare started. */
export async function workerdPid(): Promise<number> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (ppid === process.pid && comm.startsWith("workerd")) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new BenchError("workerd_pid", "bench:worker: workerd process not found");
}

/** Serves `bytes` at any path on a free loopback port. */
export async function serveBytes(
  bytes: Uint8Array,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": bytes.length,
    });
    res.end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/list.bin`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface ColdRun {
  /** The first DNS answer, ms after workerd is ready. */
  ms: number;
  /** CPU time workerd's threads spent until that answer, ms: the first answer's cost less the machine's load. */
  cpuMs: number;
  rcode: number;
  /** workerd's resident memory after that answer, MB. */
  rss: number;
  /** workerd's resident memory settleMs after the answer, MB. */
  settledRss?: number;
  /** workerd's peak resident memory up to the last reading, MB. */
  peak: number;
  /** The isolate's own memory (heap and ArrayBuffers) at the last reading, MB. */
  isolateMb: number;
}

/**
 * A fresh workerd's first answer for `name`, and its memory then. Its
 * inspector is reached only after the answer, to read the isolate's memory.
 */
export async function coldStart(
  script: string,
  config: unknown,
  name: string,
  options: ColdOptions = {},
): Promise<ColdRun> {
  const fresh = await startWorkerd(script, config, {
    cacheStandIn: true,
    ...(options.assetsDir ? { assetsDir: options.assetsDir } : {}),
  });
  try {
    const { url, pid } = fresh;
    const before = threadSchedTimes(pid);
    const t0 = performance.now();
    const rcode = await dnsPost(url, name);
    const ms = performance.now() - t0;
    const cpuMs = schedRunMs(threadSchedTimes(pid)) - schedRunMs(before);
    const rss = await rssMb(pid);
    let settledRss: number | undefined;
    if (options.settleMs !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, options.settleMs));
      settledRss = await rssMb(pid);
    }
    const session = await openInspector(fresh.inspector, DIRECT_INSPECTOR_ID);
    const isolateMb = await session.memoryMb().finally(() => session.close());
    return {
      ms,
      cpuMs,
      rcode,
      rss,
      ...(settledRss !== undefined ? { settledRss } : {}),
      peak: await peakRssMb(pid),
      isolateMb,
    };
  } finally {
    await fresh.dispose();
  }
}

/** All threads' time on a CPU, ms. */
function schedRunMs(times: ReturnType<typeof threadSchedTimes>): number {
  let ns = 0;
  for (const { runNs } of times.values()) ns += runNs;
  return ns / 1e6;
}
