// Reads a V8 .cpuprofile (node --cpu-prof) and sums self time per frame,
// so a bench report can list where a process spent its CPU.

import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Frame {
  /** "function file:line", or V8's "(garbage collector)", "(program)". */
  frame: string;
  /** Share of the busy (non-idle) samples' time, 0–1. */
  share: number;
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || "(anonymous)";
  if (!url) return name;
  const file = url.startsWith("file://") ? relative(ROOT, fileURLToPath(url)) : url;
  return `${name} ${file}:${lineNumber + 1}`;
}

/**
 * Self time by frame over the busy samples, largest first; samples in the
 * first `skipMs` of the profile (start-up, warm-up) are left out.
 */
export async function topFrames(file: string, count: number, skipMs = 0): Promise<Frame[]> {
  const profile = JSON.parse(await readFile(file, "utf8")) as CpuProfile;
  const names = new Map(profile.nodes.map((node) => [node.id, frameName(node)]));
  const self = new Map<string, number>();
  let busy = 0;
  let elapsed = 0;
  for (const [i, id] of profile.samples.entries()) {
    const delta = Math.max(0, profile.timeDeltas[i] ?? 0);
    elapsed += delta;
    const name = names.get(id) ?? "?";
    if (name === "(idle)" || elapsed < skipMs * 1000) continue;
    busy += delta;
    self.set(name, (self.get(name) ?? 0) + delta);
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([frame, time]) => ({ frame, share: busy > 0 ? time / busy : 0 }));
}
