import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";

const run = promisify(execFile);
const script = new URL("./check-size-limits.mjs", import.meta.url).pathname;
const dirs: string[] = [];

async function check(files: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-size-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, ".."), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  try {
    await run(process.execPath, [script, dir]);
    return { code: 0, stderr: "" };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

/** `n` lines of statements. */
const body = (n: number) => Array.from({ length: n }, (_, i) => `  const v${i} = ${i};\n`).join("");
/** A function declaration spanning exactly `lines` lines. */
const fn = (name: string, lines: number) => `function ${name}() {\n${body(lines - 2)}}\n`;
/** A file of exactly `lines` lines. */
const file = (lines: number) => Array.from({ length: lines }, (_, i) => `// ${i}\n`).join("");

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("size limit check", () => {
  it("passes a 500-line file and an 80-line function", async () => {
    const result = await check({
      "a.ts": file(500),
      "b/c.ts": `${fn("fits", 80)}${file(10)}`,
    });
    expect(result).toEqual({ code: 0, stderr: "" });
  });

  it("fails a 501-line file and an 81-line function, naming file, line and function", async () => {
    const result = await check({
      "long.ts": file(501),
      "b/funcs.ts": `// header\n${fn("tooLong", 81)}`,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/long\.ts:1: file has 501 lines \(limit 500\)/);
    expect(result.stderr).toMatch(/funcs\.ts:2: function tooLong has 81 lines \(limit 80\)/);
  });

  it("measures arrow functions, methods and callbacks, nested ones too", async () => {
    const result = await check({
      "kinds.ts": [
        `export const arrow = () => {\n${body(85)}};\n`,
        `class Pool {\n  open() {\n${body(90)}  }\n}\n`,
        `export function outer() {\n  return new Promise((resolve) => {\n${body(100)}  });\n}\n`,
      ].join(""),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/function arrow has 87 lines/);
    expect(result.stderr).toMatch(/function open has 92 lines/);
    expect(result.stderr).toMatch(/function outer has 104 lines/);
    expect(result.stderr).toMatch(/function \(callback in outer\) has 102 lines/);
  });

  it("skips declaration files and node_modules", async () => {
    const result = await check({
      "types.d.ts": file(900),
      "node_modules/dep/index.js": file(900),
    });
    expect(result.code).toBe(0);
  });
});
