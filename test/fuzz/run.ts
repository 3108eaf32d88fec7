// `npm run fuzz [-- --inputs N --seed S]`: the wire fuzzer over N mutated
// messages (default 1,000,000). Findings are appended to
// test/fixtures/fuzz/regressions.json (which the test suite replays) and the
// run's report goes to bench/fuzz-results.md. Exits 1 on any finding.

import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { fuzzWire, SEEDS, WIRE_TARGETS } from "./wire-fuzz.ts";

const REGRESSIONS = fileURLToPath(new URL("../fixtures/fuzz/regressions.json", import.meta.url));
const REPORT = fileURLToPath(new URL("../../bench/fuzz-results.md", import.meta.url));

const { values } = parseArgs({
  options: {
    inputs: { type: "string", default: "1000000" },
    seed: { type: "string", default: String(Date.now() % 2 ** 31) },
  },
});
const inputs = Number(values.inputs);
const seed = Number(values.seed);
if (!(Number.isInteger(inputs) && inputs > 0 && inputs <= 50_000_000 && Number.isInteger(seed))) {
  process.stderr.write("fuzz: --inputs 1–50000000, --seed an integer\n");
  process.exit(2);
}
const started = performance.now();
const result = fuzzWire({
  inputs,
  seed,
  onProgress: (done) =>
    process.stdout.write(
      `fuzz: ${done} inputs, ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
    ),
});
const seconds = (performance.now() - started) / 1000;
const known = JSON.parse(readFileSync(REGRESSIONS, "utf8")) as {
  cases: { hex: string; error: string }[];
};
for (const f of result.findings) {
  if (!known.cases.some((c) => c.hex === f.hex))
    known.cases.push({ hex: f.hex, error: `${f.kind}: ${f.error}` });
}
writeFileSync(REGRESSIONS, `${JSON.stringify(known, null, 2)}\n`);
const crashes = result.findings.filter((f) => f.kind === "crash").length;
const hangs = result.findings.length - crashes;
const report = [
  "# doh-edge wire fuzzing",
  "",
  "Written by `npm run fuzz` (test/fuzz/run.ts; the fuzzer is test/fuzz/wire-fuzz.ts).",
  "",
  `- date (UTC): ${new Date().toISOString()}`,
  `- node ${process.version}, ${availableParallelism()} CPUs`,
  `- seed ${seed}; ${SEEDS.length} seed messages (captured from nsd/unbound, plus the malformed corpus); ${WIRE_TARGETS.length} targets per input`,
  "- mutations: bit flips, byte changes, insertions, deletions, truncation, splices, huge section counts, compression pointers anywhere, 16-bit length fields",
  "- a crash is any error other than DnsWireError; a hang is an input taking over 100 ms through all targets",
  "",
  "| inputs | crashes | hangs | slowest input (ms) | run time (s) | inputs/s |",
  "|---|---|---|---|---|---|",
  `| ${inputs} | ${crashes} | ${hangs} | ${result.slowestMs.toFixed(2)} | ${seconds.toFixed(0)} | ${(inputs / seconds).toFixed(0)} |`,
  "",
  "Not coverage-guided: Jazzer.js 4.0.0's prebuilt fuzzer needs glibc 2.38 (Debian 12 has 2.36),",
  "and its older releases download their native binary from GitHub at install, which cannot work here.",
  "",
].join("\n");
writeFileSync(REPORT, report);
process.stdout.write(`${report}\nfuzz: report in ${REPORT}\n`);
process.exit(result.findings.length === 0 ? 0 : 1);
