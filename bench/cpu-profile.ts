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

export interface ProfileSummary {
  frames: Frame[];
  /** Self time by area (frameArea), largest first. */
  areas: Frame[];
}

/**
 * Self time by frame over the busy samples, largest first; samples in the
 * first `skipMs` of the profile (start-up, warm-up) are left out.
 */
export async function topFrames(file: string, count: number, skipMs = 0): Promise<ProfileSummary> {
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
  const share = ([frame, time]: [string, number]) => ({ frame, share: busy > 0 ? time / busy : 0 });
  const areas = new Map<string, number>();
  for (const [frame, time] of self) {
    areas.set(frameArea(frame), (areas.get(frameArea(frame)) ?? 0) + time);
  }
  return {
    frames: [...self.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(share),
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(share),
  };
}

/** Where a frame's code lives: the relay's, the shared core's, a dependency's, Node's, or V8's own. */
export function frameArea(frame: string): string {
  if (/ relay\//.test(frame)) return "relay/src";
  if (/ shared\//.test(frame)) return "shared/";
  if (/ node_modules\//.test(frame)) return "dependencies";
  if (frame === "(garbage collector)") return "GC";
  if (/ node:/.test(frame)) return "Node (JS)";
  return "Node/V8 native";
}
