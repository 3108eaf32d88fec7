// `npm run build:relay`: the relay as one self-contained file,
// dist/doh-relay.mjs, for hosts with a plain `node` ≥ 20 and no
// node_modules (Debian stable, Raspberry Pi OS). Every dependency is inside
// except @matrixai/quic, a native addon the relay loads only for quic://
// upstreams, from a node_modules beside the file or above it.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { version: string };
export const RELAY_BUNDLE = `${root}dist/doh-relay.mjs`;

// Node 20 lacks Promise.withResolvers (ES2024); the relay's hot path uses it.
const NODE20_SHIMS = `Promise.withResolvers ??= function withResolvers() {
  let resolve, reject;
  const promise = new this((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
};`;

export async function buildRelay(outfile = RELAY_BUNDLE): Promise<void> {
  await build({
    entryPoints: [`${root}relay/src/cli.ts`],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: true,
    keepNames: false,
    legalComments: "none",
    external: ["@matrixai/quic", "@matrixai/quic/*"],
    define: {
      "import.meta.main": "true",
      RELAY_BUILD_VERSION: JSON.stringify(pkg.version),
    },
    banner: {
      // Bundled CommonJS dependencies call require() for Node's modules.
      js: `#!/usr/bin/env node
import { createRequire as __createRequire } from "node:module";
const require = __createRequire(import.meta.url);
${NODE20_SHIMS}`,
    },
    logLevel: "warning",
  });
}

if (import.meta.main) {
  await buildRelay();
  console.log(`built ${RELAY_BUNDLE}`);
}
