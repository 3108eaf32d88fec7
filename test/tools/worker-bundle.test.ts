// The relay's own config sections (listen, control, …) stay out of
// the worker bundle (issue 16): the worker parses its config with
// shared/config/schema/worker.ts, never the façade that also loads the relay's.
// And the worker's errors keep their names in a bundle minified as
// wrangler.toml builds it (minify, keep_names = false).

import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The source files esbuild bundles from `entry`, as paths from the repository root. */
async function bundledFiles(entry: string): Promise<Set<string>> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["browser", "module", "main"],
    // As wrangler bundles it: Node's modules from nodejs_compat, Lua policy
    // scripts as text and the default build without the Lua VM (wrangler.toml's
    // rule and define; test/tools/worker-build.test.ts builds both with wrangler).
    external: ["cloudflare:*", "node:*", ...builtinModules],
    loader: { ".lua": "text" },
    define: { DOH_EDGE_LUA: "false" },
    logLevel: "silent",
  });
  return new Set(Object.keys(result.metafile.inputs));
}

/** Error names as they come out of `entry` bundled and minified without keepNames. */
async function minifiedErrorNames(): Promise<string[]> {
  const result = await build({
    absWorkingDir: ROOT,
    stdin: {
      contents: `import { ConfigError } from "./shared/config/schema/errors.ts";
        import { UpstreamError } from "./shared/engine/errors.ts";
        import { DnsWireError } from "./shared/dns/wire-error.ts";
        export const names = [
          new ConfigError([{ path: ["a"], message: "x" }]),
          new UpstreamError("timeout", "up"),
          new DnsWireError("short_message", "x"),
        ].map(String);`,
      resolveDir: ROOT,
      loader: "ts",
    },
    bundle: true,
    write: false,
    format: "esm",
    minify: true,
    keepNames: false,
    logLevel: "silent",
  });
  const code = result.outputFiles[0]!.text;
  const module = await import(
    `data:text/javascript;base64,${Buffer.from(code).toString("base64")}`
  );
  return module.names as string[];
}

describe("worker bundle", () => {
  it("keeps error names when minified without keepNames", async () => {
    expect(await minifiedErrorNames()).toEqual([
      "ConfigError: a: x",
      "UpstreamError: up: timeout",
      "DnsWireError: x",
    ]);
  });

  it("holds the worker's config parser but none of the files only the relay's parser needs", async () => {
    const [worker, workerParser, relayParser] = await Promise.all([
      bundledFiles("edge-worker/src/index.ts"),
      bundledFiles("shared/config/schema/worker.ts"),
      bundledFiles("shared/config/schema/relay.ts"),
    ]);
    const relayOnly = [...relayParser].filter((file) => !workerParser.has(file));
    expect(relayOnly).toEqual(
      expect.arrayContaining([
        "shared/config/schema/relay.ts",
        "shared/config/schema/sections/listen.ts",
        "shared/config/schema/sections/relay-upstreams.ts",
      ]),
    );
    expect(worker.has("shared/config/schema/worker.ts")).toBe(true);
    expect(relayOnly.filter((file) => worker.has(file))).toEqual([]);
  });
});
