#!/usr/bin/env node
// Fails the build when shared/ reaches for Node: shared/ runs in workerd and
// Node alike. The type check (shared/tsconfig.json, no Node types) catches
// Node globals; this scan catches imports the type check cannot see through.
// The one allowed exception: the dns-packet gateway needs a Buffer, which
// Node provides and workerd provides under nodejs_compat.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";

// The folder to check: shared/ by default (an argument lets the test point it elsewhere).
const root = process.argv[2] ?? new URL("../../shared/", import.meta.url).pathname;
const allowed = new Map([["dns/codec.ts", new Set(["buffer"])]]);
const builtins = new Set(builtinModules.filter((m) => !m.startsWith("_")));
const globals = /\b(process|Buffer|require|__dirname|__filename|setImmediate|global)\s*[.([]/;

function* files(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (/\.(ts|mts|js|mjs)$/.test(entry) && !entry.endsWith(".d.ts")) yield path;
  }
}

const problems = [];
for (const path of files(root)) {
  const rel = relative(root, path);
  const lines = readFileSync(path, "utf8").split("\n");
  lines.forEach((line, i) => {
    const where = `${relative(process.cwd(), path)}:${i + 1}`;
    for (const m of line.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)) {
      const spec = m[1];
      const bare = spec.replace(/^node:/, "").split("/")[0];
      if (spec.startsWith("node:") || builtins.has(bare)) {
        if (!allowed.get(rel)?.has(spec)) problems.push(`${where}: imports Node module "${spec}"`);
      }
    }
    const code = line.replace(/\/\/.*$/, "");
    const g = code.match(globals);
    if (g) problems.push(`${where}: uses Node global "${g[1]}"`);
  });
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`shared/ must stay runtime-neutral (web APIs only): ${problems.length} problem(s)`);
  process.exit(1);
}
console.log("shared/ runtime check: ok");
