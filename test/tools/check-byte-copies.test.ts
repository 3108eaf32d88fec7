// The lint check that forbids slice() on byte arrays, on a fixture project:
// it flags Uint8Array and Buffer receivers (unions and optional calls too)
// and leaves arrays, strings and subarray alone.

import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const script = new URL("./check-byte-copies.mjs", import.meta.url).pathname;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-edge-bytes-"));
  await writeFile(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { strict: true, lib: ["ES2023"], types: [], noEmit: true },
      include: ["."],
    }),
  );
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function check(source: string): Promise<{ code: number; stderr: string }> {
  await writeFile(join(dir, "a.ts"), source);
  try {
    await run(process.execPath, [script, join(dir, "tsconfig.json"), dir]);
    return { code: 0, stderr: "" };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

describe("byte copy check", () => {
  it("flags slice() on byte arrays, naming file and line", async () => {
    const result = await check(
      [
        "const bytes = new Uint8Array(4);",
        "export const a = bytes.slice();",
        "declare const maybe: Uint8Array | undefined;",
        "export const b = maybe?.slice(1, 2);",
        "interface Buffer extends Uint8Array {}",
        "declare const buffer: Buffer;",
        "export const c = buffer.slice(0);",
      ].join("\n"),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("a.ts:2: bytes.slice()");
    expect(result.stderr).toContain("a.ts:4: maybe?.slice(1, 2)");
    expect(result.stderr).toContain("a.ts:7: buffer.slice(0)");
    expect(result.stderr).toContain("3 problem(s)");
  });

  it("passes arrays, strings and subarray", async () => {
    const result = await check(
      [
        "const bytes = new Uint8Array(4);",
        "export const a = [1, 2].slice();",
        'export const b = "ab".slice(1);',
        "export const c = bytes.subarray(1);",
        "export const d = bytes.buffer.slice(0);",
      ].join("\n"),
    );
    expect(result).toEqual({ code: 0, stderr: "" });
  });
});
