// `npm start` on a machine without internet: run inside a network namespace
// this test creates (only loopback exists there), so public upstreams are
// unreachable and no packet leaves the machine. The stack must come up, say
// where it listens, answer a public name with a quick SERVFAIL that both
// components log, and stop cleanly on Ctrl-C.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fieldsOf, runInNetns, STOP_STACK_SCRIPT, startStackScript } from "./netns.ts";

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
    const stdout = await runInNetns(
      `${startStackScript("", log)}
t0=$(date +%s%3N)
dig @127.0.0.1 -p 5053 example.com +tries=1 +time=10 > "${digOut}"
t1=$(date +%s%3N)
echo "query_ms=$((t1 - t0))"
sleep 0.5
${STOP_STACK_SCRIPT}`,
      { timeoutMs: 90_000 },
    );
    const output = await readFile(log, "utf8");
    const fields = fieldsOf(stdout);
    expect(output).toContain("DoH on http://127.0.0.1:8787/dns-query");
    expect(output).toContain("DNS on 127.0.0.1:5053 (UDP and TCP)");
    expect(output).toContain("dig @127.0.0.1 -p 5053 example.com");
    expect(await readFile(digOut, "utf8")).toContain("status: SERVFAIL");
    expect(Number(fields.query_ms)).toBeLessThan(5000);
    // Both components say why: the worker names the failed upstream, the relay the SERVFAIL.
    expect(output).toMatch(/worker\s*\| .*doh-edge SERVFAIL route=\S+: .*failed/);
    expect(output, output).toMatch(/relay\s*\| .*warn\s+servfail name=example\.com\./);
    expect(fields.exit).toBe("0");
    expect(fields.listeners).toBe("0");
  }, 120_000);
});
