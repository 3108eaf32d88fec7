// Lua policies (issue 20): what one handle() call costs, in the relay's
// plugin chain (Node, in process) and in the worker's hook (workerd through
// Miniflare, bench/lua-worker-entry.ts bundled by wrangler with the VM).
// Scripts: BalanceDNS's example policy.lua and test/fixtures/lua/policy-cases.lua,
// a forwarded name and an answered one; and a runaway call cut off at the
// default budget of 100,000 instructions. Runs inside `npm run bench` and
// alone: `node bench/lua-policy.ts`.

import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { createPluginChain } from "../relay/src/exec-plugin.ts";
import { loadLuaPolicy } from "../shared/policy/lua-policy.ts";
import { bundleModules, LUA_DEFINE, wranglerBuild } from "../test/support/wrangler-build.ts";

const FIXTURES = fileURLToPath(new URL("../test/fixtures/lua/", import.meta.url));
const CALLS = Number(process.env.BENCH_LUA_CALLS ?? 20_000);
const BUDGET = 100_000;

export interface LuaBenchRow {
  script: string;
  domain: string;
  what: string;
  relayUs: number;
  workerUs: number;
}

export interface LuaBench {
  rows: LuaBenchRow[];
  relayLoadMs: number;
  workerLoadMs: number;
}

const CASES: [string, string, string][] = [
  ["balancedns-policy.lua", "www.example.com.", "FORWARD"],
  ["balancedns-policy.lua", "local.example.", "LOCAL_DATA"],
  ["policy-cases.lua", "www.example.com.", "FORWARD"],
  ["policy-cases.lua", "x.tracker.lua.test.", "BLOCK"],
  [
    "policy-cases.lua",
    "loop.lua.test.",
    `cut off at ${BUDGET.toLocaleString("en-US")} instructions`,
  ],
];

/** µs per call through the relay's chain; `calls` after a tenth as many to warm up. */
async function relayCall(script: string, domain: string, calls: number) {
  const source = await readFile(join(FIXTURES, script), "utf8");
  const t0 = performance.now();
  const chain = createPluginChain(
    {
      on_error: "servfail",
      entries: [{ runtime: "lua", name: "bench", path: script, max_instructions: BUDGET }],
    },
    () => {},
    { load: loadLuaPolicy, readScript: () => source },
  );
  const loadMs = performance.now() - t0;
  for (let i = 0; i < calls / 10; i++) await chain.decide(domain, 1);
  const t1 = performance.now();
  for (let i = 0; i < calls; i++) await chain.decide(domain, 1);
  const us = ((performance.now() - t1) * 1000) / calls;
  chain.close();
  return { loadMs, us };
}

/** The bench worker bundled as wrangler bundles the worker's Lua build, in Miniflare. */
async function startBenchWorker(): Promise<{ mf: Miniflare; dir: string }> {
  const entry = fileURLToPath(new URL("./lua-worker-entry.ts", import.meta.url));
  const built = await wranglerBuild({ entry, args: LUA_DEFINE });
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          name: "lua-bench",
          ...bundleModules(built.script),
          compatibilityDate: "2026-10-20",
          compatibilityFlags: ["nodejs_compat"],
        },
      ],
    }),
  );
  return { mf, dir: built.dir };
}

async function workerCall(mf: Miniflare, script: string, domain: string, calls: number) {
  const ask = async (n: number) => {
    const url = `http://bench/?script=${script}&domain=${domain}&n=${n}&max=${BUDGET}`;
    const response = await mf.dispatchFetch(url);
    if (response.status !== 200) throw new Error(`lua bench worker: HTTP ${response.status}`);
    return (await response.json()) as { loadMs: number; usPerCall: number };
  };
  await ask(Math.max(1, calls / 10));
  return ask(calls);
}

export async function benchLuaPolicy(): Promise<LuaBench> {
  const { mf, dir } = await startBenchWorker();
  try {
    const rows: LuaBenchRow[] = [];
    let relayLoadMs = Number.POSITIVE_INFINITY;
    let workerLoadMs = Number.POSITIVE_INFINITY;
    for (const [script, domain, what] of CASES) {
      const calls = what.startsWith("cut off") ? Math.max(20, CALLS / 200) : CALLS;
      const relay = await relayCall(script, domain, calls);
      const worker = await workerCall(mf, script, domain, calls);
      // The first load in a process pays for compiling fengari itself: keep the fastest.
      relayLoadMs = Math.min(relayLoadMs, relay.loadMs);
      workerLoadMs = Math.min(workerLoadMs, worker.loadMs);
      rows.push({ script, domain, what, relayUs: relay.us, workerUs: worker.usPerCall });
    }
    return { rows, relayLoadMs, workerLoadMs };
  } finally {
    await mf.dispose();
    await rm(dir, { recursive: true, force: true });
  }
}

export function luaPolicySection(bench: LuaBench): string[] {
  return [
    "## Lua policies",
    "",
    "bench/lua-policy.ts: µs per handle() call of a Lua policy (fengari, Lua 5.3 in JavaScript),",
    "decision checked, through the relay's plugin chain in Node and through the worker's hook in",
    `workerd (Miniflare), ${CALLS.toLocaleString("en-US")} calls each after a warm-up (the cut-off row: fewer calls).`,
    `Loading a script (compile, run its top level, check handle) takes ${bench.relayLoadMs.toFixed(1)} ms on the relay and ${bench.workerLoadMs.toFixed(1)} ms in the worker, once per process or isolate.`,
    "",
    "| script | name | answer | relay (µs per call) | worker (µs per call) |",
    "|---|---|---|---|---|",
    ...bench.rows.map(
      (r) =>
        `| ${r.script} | ${r.domain} | ${r.what} | ${r.relayUs.toFixed(1)} | ${r.workerUs.toFixed(1)} |`,
    ),
  ];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bench = await benchLuaPolicy();
  process.stdout.write(`${luaPolicySection(bench).join("\n")}\n`);
}
