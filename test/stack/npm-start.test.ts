// `npm start` on a machine without internet: run inside a network namespace
// this test creates (only loopback exists there), so public upstreams are
// unreachable and no packet leaves the machine. The stack must come up, say
// where it listens, answer a public name with a quick SERVFAIL that both
// components log, and stop cleanly on Ctrl-C.

import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-edge-start-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("npm start without internet", () => {
  it("starts worker and relay, answers SERVFAIL quickly, logs it, and stops both on Ctrl-C", async () => {
    const log = join(dir, "stack.log");
    const digOut = join(dir, "dig.txt");
    const script = `
set -u
ip link set lo up
cd "${root}"
"${process.execPath}" scripts/stack.ts > "${log}" 2>&1 &
pid=$!
for i in $(seq 1 300); do grep -q "Ctrl-C stops everything" "${log}" && break; sleep 0.2; done
if ! grep -q "Ctrl-C stops everything" "${log}"; then echo "not_ready"; kill -9 $pid; exit 1; fi
t0=$(date +%s%3N)
dig @127.0.0.1 -p 5353 example.com +tries=1 +time=10 > "${digOut}"
t1=$(date +%s%3N)
echo "query_ms=$((t1 - t0))"
sleep 0.5
kill -INT $pid
wait $pid
echo "exit=$?"
sleep 0.5
echo "listeners=$(ss -Hltun | wc -l)"
`;
    const { stdout } = await run("unshare", ["--net", "--", "bash", "-c", script], {
      timeout: 90_000,
    });
    const output = await readFile(log, "utf8");
    const fields = Object.fromEntries(
      stdout
        .trim()
        .split("\n")
        .map((line) => line.split("=") as [string, string]),
    );
    expect(output).toContain("DoH on http://127.0.0.1:8787/dns-query");
    expect(output).toContain("DNS on 127.0.0.1:5353 (UDP and TCP)");
    expect(output).toContain("dig @127.0.0.1 -p 5353 example.com");
    const answer = await readFile(digOut, "utf8");
    expect(answer).toContain("status: SERVFAIL");
    expect(Number(fields.query_ms)).toBeLessThan(5000);
    // Both components say why: the worker names the failed upstream, the relay the SERVFAIL.
    expect(output).toMatch(/worker\s*\| .*doh-edge SERVFAIL route=\S+: .*failed/);
    expect(output, output).toMatch(/relay\s*\| .*warn\s+servfail name=example\.com\./);
    expect(fields.exit).toBe("0");
    expect(fields.listeners).toBe("0");
  }, 120_000);
});
