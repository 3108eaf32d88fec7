// The lint check on the pool core and transports' shape, on fixture files:
// it flags a file over 500 lines, a function over 80 (closures counted in
// their enclosing function) and a 6-line block seen twice, and passes
// code within the limits.

import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const run = promisify(execFile);
const script = new URL("./check-sizes.mjs", import.meta.url).pathname;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-edge-sizes-"));
});

afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function check(files: Record<string, string>): Promise<{ code: number; output: string }> {
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  try {
    const { stdout } = await run(process.execPath, [script, dir]);
    return { code: 0, output: stdout };
  } catch (error) {
    const e = error as { code: number; stderr: string };
    return { code: e.code, output: e.stderr };
  }
}

/** A function whose body has `n` distinct statements. */
const fn = (name: string, n: number) =>
  `export function ${name}() {\n${Array.from({ length: n }, (_, i) => `  const ${name}${i} = ${i};`).join("\n")}\n}\n`;

describe("size check", () => {
  it("passes functions and files within the limits", async () => {
    const result = await check({ "a.ts": fn("small", 78) });
    expect(result).toEqual({ code: 0, output: "sizes: ok\n" });
  });

  it("flags a function over 80 lines, closures counted in it, naming file and line", async () => {
    const outer = `export function outer() {\n  const inner = () => {\n${Array.from({ length: 79 }, (_, i) => `    const x${i} = ${i};`).join("\n")}\n  };\n  return inner;\n}\n`;
    const result = await check({ "a.ts": `// header\n${outer}` });
    expect(result.code).toBe(1);
    expect(result.output).toMatch(/a\.ts:2: outer spans 84 lines/);
    expect(result.output).toMatch(/a\.ts:3: inner spans 81 lines/);
  });

  it("flags a file over 500 lines", async () => {
    const text = Array.from({ length: 7 }, (_, i) => fn(`f${i}`, 70)).join("");
    const result = await check({ "a.ts": text });
    expect(result.code).toBe(1);
    expect(result.output).toMatch(/a\.ts: 504 lines \(max 500\)/);
  });

  it("flags a block of 6 meaningful lines repeated in another file", async () => {
    const block = Array.from({ length: 6 }, (_, i) => `  total += weight${i} * ${i};`).join("\n");
    const result = await check({
      "a.ts": `export function a(total: number) {\n${block}\n  return total;\n}\n`,
      "b.ts": `export function b(total: number) {\n  total -= 1;\n${block}\n}\n`,
    });
    expect(result.code).toBe(1);
    expect(result.output).toMatch(/b\.ts:3: repeats .*a\.ts:2/);
  });

  it("does not count the same import list in two files as a repeat", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `  name${i},`).join("\n");
    const imports = `import {\n${names}\n} from "./names.ts";\n`;
    const result = await check({
      "a.ts": `${imports}export const a = name0;\n`,
      "b.ts": `${imports}export const b = name1;\n`,
    });
    expect(result).toEqual({ code: 0, output: "sizes: ok\n" });
  });
});
