// The worker as `wrangler deploy` uploads it: `wrangler deploy --dry-run
// --outdir` into a temporary directory, with the Total Upload wrangler
// reports, and the output as Miniflare modules. For the bundle tests and
// the benches.

import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { WRANGLER_ENV } from "../../scripts/stack.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The flag that builds the Lua VM in (wrangler.toml's define is false). */
export const LUA_DEFINE = ["--define", "DOH_EDGE_LUA:true"];

export interface WranglerBuild {
  /** The output directory (the caller removes it). */
  dir: string;
  /** The bundled entry module. */
  script: string;
  /** wrangler's "Total Upload", KiB. */
  uploadKiB: number;
  gzipKiB: number;
}

/** Builds `entry` (default: wrangler.toml's main) as `wrangler deploy` would, with `args` added. */
export async function wranglerBuild(
  options: { entry?: string; args?: string[] } = {},
): Promise<WranglerBuild> {
  const dir = await mkdtemp(join(tmpdir(), "doh-edge-wrangler-build-"));
  const { stdout } = await run(
    process.execPath,
    [
      join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
      "deploy",
      ...(options.entry ? [options.entry] : []),
      "--dry-run",
      "--outdir",
      dir,
      ...(options.args ?? []),
    ],
    { cwd: ROOT, env: { ...process.env, ...WRANGLER_ENV, CI: "true", NO_COLOR: "1" } },
  );
  const total = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(stdout);
  if (!total) throw new Error(`wrangler printed no Total Upload:\n${stdout}`);
  const entry = options.entry ? basename(options.entry).replace(/\.ts$/, "") : "index";
  return {
    dir,
    script: join(dir, `${entry}.js`),
    uploadKiB: Number(total[1]),
    gzipKiB: Number(total[2]),
  };
}

/**
 * A wrangler --outdir bundle as Miniflare modules: the script, and beside it
 * the Lua policy scripts it imports as text (wrangler.toml's Text rule).
 */
export function bundleModules(script: string) {
  const dir = dirname(script);
  const texts = readdirSync(dir).filter((name) => name.endsWith(".lua"));
  return {
    modulesRoot: dir,
    modules: [
      { type: "ESModule" as const, path: script },
      ...texts.map((name) => ({ type: "Text" as const, path: join(dir, name) })),
    ],
  };
}
