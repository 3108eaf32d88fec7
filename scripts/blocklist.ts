// `npm run blocklist -- build --out FILE LIST...`: compiles block lists
// (files or http(s) URLs; one domain per line, hosts format or `||name^`)
// into one file the relay and the worker load without parsing
// (shared/policy/compiled-list.ts). Duplicates and names under a listed
// parent are dropped.
// `npm run blocklist -- check FILE`: verifies a compiled file and prints its size.

import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import {
  buildCompiledList,
  CompiledListError,
  openCompiledList,
} from "../shared/policy/compiled-list.ts";
import { parseList } from "../shared/policy/list-parse.ts";

const USAGE = `Usage:
  npm run blocklist -- build --out FILE LIST...   compile text lists (paths or URLs)
  npm run blocklist -- check FILE                 verify a compiled list`;

async function readList(source: string): Promise<string> {
  if (/^https?:\/\//.test(source)) {
    const response = await fetch(source, { signal: AbortSignal.timeout(60_000) });
    if (!response.ok) throw new Error(`${source}: HTTP ${response.status}`);
    return response.text();
  }
  return readFile(source, "utf8");
}

async function build(out: string, sources: string[]): Promise<void> {
  const names: string[] = [];
  let rejected = 0;
  for (const source of sources) {
    const parsed = parseList(await readList(source));
    for (const name of parsed.names) names.push(name);
    rejected += parsed.rejected;
  }
  const started = performance.now();
  const { bytes, stats } = buildCompiledList(names);
  await writeFile(out, bytes);
  const perName = stats.names > 0 ? (bytes.length / stats.names).toFixed(2) : "0";
  console.log(
    `${out}: ${stats.names.toLocaleString("en-US")} names (${stats.duplicates} duplicates and ${stats.covered} covered by a listed parent dropped, ${rejected} lines rejected), ${bytes.length.toLocaleString("en-US")} bytes (${perName} per name), built in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

async function check(file: string): Promise<void> {
  const bytes = await readFile(file);
  const list = openCompiledList(bytes);
  console.log(
    `${file}: ${list.size.toLocaleString("en-US")} names, ${bytes.length.toLocaleString("en-US")} bytes, checksum ok`,
  );
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { out: { type: "string", short: "o" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (command === "build") {
    if (values.out === undefined || rest.length === 0) {
      console.error("blocklist build: needs --out FILE and at least one LIST");
      return 2;
    }
    await build(values.out, rest);
    return 0;
  }
  if (command === "check" && rest.length === 1) {
    await check(rest[0]!);
    return 0;
  }
  console.error(USAGE);
  return 2;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const message =
        error instanceof CompiledListError
          ? error.message
          : String((error as Error).message ?? error);
      console.error(`blocklist: ${message}`);
      process.exitCode = 1;
    },
  );
}
