// The worker isolate's own CPU time, as Cloudflare bills it: a V8 CPU profile
// of the isolate taken through workerd's inspector (Miniflare's
// `inspectorPort`, the Chrome DevTools protocol over a WebSocket). The
// sampler sees only the isolate's thread; the time it spends waiting, or
// running other services of the same workerd (Miniflare's Cache API and
// static assets, workerd's HTTP client), shows up as "(idle)" or not at all.

import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { basename, dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BenchError } from "./processes.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The sampling interval, µs: short enough for sub-millisecond requests, long enough to cost little. */
const SAMPLE_US = 250;

type CallFrame = { functionName: string; url: string; lineNumber: number; columnNumber: number };

/** One CPU profile from Profiler.stop (the fields we read). */
interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
  timeDeltas: number[];
}

export interface IsolateCpu {
  /** Sampled time with JS on the isolate's stack (its own code, runtime calls made from it) or in GC, ms. */
  busyMs: number;
  /** Sampled "(program)" time: the thread outside any JS, in the runtime or waiting, ms. */
  programMs: number;
  /** Of that, V8's garbage collector, ms. */
  gcMs: number;
  /** Frames by self time, busiest first: "source.ts:line" (or "function file:line") and ms. */
  top: { frame: string; ms: number }[];
}

/** A DevTools protocol session with one of workerd's isolates. */
export interface InspectorSession {
  profile(run: () => Promise<void>): Promise<IsolateCpu>;
  /**
   * The isolate's own memory, MB: V8's heap in use plus the backing stores of
   * its ArrayBuffers (Runtime.getHeapUsage), the memory Cloudflare's 128 MB
   * isolate limit is about. Unlike workerd's resident memory, it leaves out the
   * other services of the same workerd (Miniflare's static assets and Cache API).
   */
  memoryMb(): Promise<number>;
  close(): void;
}

/**
 * Opens a session with the isolate whose inspector id is `id` at workerd's
 * inspector address: `core:user:<name>` under Miniflare, the service's name
 * in a plain workerd (bench/workerd-direct.ts).
 */
export async function openInspector(
  inspector: URL,
  id: string,
  script?: string,
): Promise<InspectorSession> {
  const where = script ? sourceFrames(script) : undefined;
  const socket = new WebSocket(new URL(`/${id}`, inspector));
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener(
      "error",
      () => reject(new BenchError("inspector", `cannot reach the inspector of ${id}`)),
      { once: true },
    );
  });
  let nextId = 1;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number;
      result?: unknown;
      error?: { message: string };
    };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (!waiter) return; // an event
    pending.delete(message.id!);
    if (message.error) waiter.reject(new BenchError("inspector", message.error.message));
    else waiter.resolve(message.result);
  });
  const send = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: SAMPLE_US }); // µs
  return {
    async profile(run) {
      await send("Profiler.start");
      await run();
      const { profile } = (await send("Profiler.stop")) as { profile: CpuProfile };
      return summarize(profile, where);
    },
    async memoryMb() {
      const usage = (await send("Runtime.getHeapUsage")) as {
        usedSize: number;
        backingStorageSize?: number;
      };
      if (usage.backingStorageSize === undefined) {
        throw new BenchError("inspector", "this workerd does not report ArrayBuffer memory");
      }
      return (usage.usedSize + usage.backingStorageSize) / 2 ** 20;
    },
    close: () => socket.close(),
  };
}

/**
 * Names a bundle's frames by where their function starts in the source,
 * through the bundle's source map (`script`.map): the bundle is minified
 * without its names (wrangler.toml's keep_names).
 */
function sourceFrames(script: string): (frame: CallFrame) => string | undefined {
  const map = new SourceMap(JSON.parse(readFileSync(`${script}.map`, "utf8")));
  const bundle = basename(script);
  return (frame) => {
    // Only the bundle's own frames: another module's (the bench's Cache API
    // stand-in) would be looked up in the wrong map.
    if (!frame.url || basename(frame.url) !== bundle) return undefined;
    const entry = map.findEntry(frame.lineNumber, frame.columnNumber);
    if (!("originalSource" in entry)) return undefined;
    const file = relative(ROOT, resolve(dirname(script), entry.originalSource));
    return `${file.replace(/^node_modules\//, "")}:${entry.originalLine + 1}`;
  };
}

/** Samples that are not the isolate's own work: its idle time and the profile's root. */
const NOT_BUSY = new Set(["(idle)", "(root)", "(program)"]);

/** Busy time (JS and GC samples), "(program)" time, GC, and the top frames by self time. */
export function summarize(
  profile: CpuProfile,
  where: (frame: CallFrame) => string | undefined = () => undefined,
  topCount = 8,
): IsolateCpu {
  const byNode = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const self = new Map<string, number>();
  let busyUs = 0;
  let programUs = 0;
  let gcUs = 0;
  profile.samples.forEach((nodeId, i) => {
    // timeDeltas[i] is the time before sample i; the sample stands for it.
    const us = profile.timeDeltas[i] ?? 0;
    const frame = byNode.get(nodeId);
    const fn = frame?.functionName || "(anonymous)";
    if (fn === "(program)") programUs += us;
    if (NOT_BUSY.has(fn)) return;
    busyUs += us;
    if (fn === "(garbage collector)") gcUs += us;
    const file = frame?.url.split("/").pop() ?? "";
    const key =
      (frame && where(frame)) ?? (file ? `${fn} ${file}:${(frame?.lineNumber ?? 0) + 1}` : fn);
    self.set(key, (self.get(key) ?? 0) + us);
  });
  const top = [...self.entries()]
    .sort((x, y) => y[1] - x[1])
    .slice(0, topCount)
    .map(([frame, us]) => ({ frame, ms: us / 1000 }));
  return { busyMs: busyUs / 1000, programMs: programUs / 1000, gcMs: gcUs / 1000, top };
}
