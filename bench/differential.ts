// `npm run differential -- [--queries N] [--seed S] [--batch B]`: the long
// differential run (test/support/differential.ts): seeded queries through
// every relay listener and both worker methods, compared field by field with
// unbound's own answers; writes bench/differential-results.md. Exits 1 on
// any mismatch. Everything on 127.0.0.1.

import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runDifferential, startDifferentialStack } from "../test/support/differential.ts";

const RESULTS = fileURLToPath(new URL("./differential-results.md", import.meta.url));

const { values } = parseArgs({
  options: {
    queries: { type: "string", default: "5000" },
    seed: { type: "string", default: String(Date.now() % 100_000) },
    batch: { type: "string", default: "16" },
  },
});
const count = Number(values.queries);
const seed = Number(values.seed);
const batch = Number(values.batch);

const stack = await startDifferentialStack({ worker: true });
const startedAt = new Date();
const t0 = performance.now();
let result: Awaited<ReturnType<typeof runDifferential>>;
try {
  result = await runDifferential(stack, { seed, count, batch });
} finally {
  await stack.stop();
}
const seconds = (performance.now() - t0) / 1000;
const shown = result.mismatches.slice(0, 50);
const report = `# Differential run

\`npm run differential -- --queries ${count} --seed ${seed} --batch ${batch}\`, ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC, ${seconds.toFixed(0)} s.

Seeded queries (mixed-case names from a test zone, known and unknown types,
RD/AD/CD/DO, no EDNS or EDNS version 0 or 1 with UDP sizes 512–4096, client
subnet, cookie and padding options, NOTIFY and UPDATE opcodes; a third are
repeats that hit the cache and the in-flight sharing), sent in concurrent
rounds of ${batch} on every path at once, and straight to unbound (UDP for the
relay's UDP listener, TCP for the rest). unbound answers from nsd behind it;
the relay forwards over its DoT pool to the same unbound with its cache on;
the worker (\`wrangler dev\`) reaches it through the relay's origin endpoint.

Compared per answer: ID, opcode and flags, RCODE (with the extended bits),
OPT presence, version, DO and end-to-end options, the question with its case,
and the three sections as sets; TTLs at most the zone's and falling with the
clock. Hop-by-hop options (cookie, keepalive, padding) are not compared.

| what | count |
|---|---|
| queries | ${result.queries.toLocaleString("en-US")} |
| paths | ${stack.paths.join(", ")} |
| answers compared | ${result.sent.toLocaleString("en-US")} |
| mismatches | ${result.mismatches.length} |
${shown.length > 0 ? `\n## First mismatches\n\n${shown.map((m) => `- ${m}`).join("\n")}\n` : ""}`;
await writeFile(RESULTS, report);
console.log(report);
process.exit(result.mismatches.length === 0 ? 0 : 1);
