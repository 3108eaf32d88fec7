import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";

const run = promisify(execFile);
const script = new URL("./check-shared-runtime.mjs", import.meta.url).pathname;
const dirs: string[] = [];

async function check(files: Record<string, string>) {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-shared-"));
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

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("shared/ runtime boundary check", () => {
  it("passes the real shared/ folder", async () => {
    await expect(run(process.execPath, [script])).resolves.toBeDefined();
  });

  it("fails on node: imports, bare builtins and Node globals, naming file and line", async () => {
    const result = await check({
      "a.ts": 'import { readFile } from "node:fs";\n',
      "b/c.ts": 'const x = 1;\nimport net from "net";\n',
      "d.ts": "export const env = process.env.HOME;\nconst b = Buffer.from([1]);\n",
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/a\.ts:1: imports Node module "node:fs"/);
    expect(result.stderr).toMatch(/c\.ts:2: imports Node module "net"/);
    expect(result.stderr).toMatch(/d\.ts:1: uses Node global "process"/);
    expect(result.stderr).toMatch(/d\.ts:2: uses Node global "Buffer"/);
  });

  it("allows web-platform code and the codec's buffer import only in dns/codec.ts", async () => {
    const ok = await check({
      "dns/codec.ts": 'import { Buffer as B } from "buffer";\n',
      "x.ts": "export const t = new TextEncoder();\n",
    });
    expect(ok.code).toBe(0);
    const elsewhere = await check({ "dns/other.ts": 'import { Buffer as B } from "buffer";\n' });
    expect(elsewhere.code).toBe(1);
  });
});
