// End to end through every part, as `npm run demo` wires it, inside a network
// namespace of its own:
//   dig → relay UDP → worker (wrangler dev, workerd) → relay origin endpoint
//       → relay DoT pool → unbound → nsd zone data
// and the same through the relay's DoH listener with kdig +https.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fieldsOf, runInNetns, STOP_STACK_SCRIPT, startStackScript } from "./netns.ts";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "doh-edge-e2e-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("npm run demo, end to end", () => {
  it("answers from the origin's zone over UDP and DoH, through the worker and the relay's DoT pool", async () => {
    const log = join(dir, "demo.log");
    const stdout = await runInNetns(
      `export TMPDIR="${dir}"
${startStackScript("--demo", log)}
echo "dig=$(dig @127.0.0.1 -p 5053 www.demo.test +short +tries=1 +time=5 | tr '\\n' ' ')"
echo "alias=$(dig @127.0.0.1 -p 5053 alias.demo.test +short +tries=1 +time=5 | tr '\\n' ' ')"
echo "nx=$(dig @127.0.0.1 -p 5053 nope.demo.test +tries=1 +time=5 | grep -o 'status: [A-Z]*')"
ca=$(grep -o 'tls-ca=[^ ]*' "${log}" | head -1 | cut -d= -f2)
echo "kdig=$(kdig @127.0.0.1 -p 8443 +https +tls-ca=$ca +tls-hostname=dns.test www.demo.test AAAA +short | tr '\\n' ' ')"
curl -s http://127.0.0.1:9153/metrics > "${join(dir, "metrics.txt")}"
${STOP_STACK_SCRIPT}
echo "leftovers=$(ls -d "${dir}"/doh-edge-demo-* 2>/dev/null | wc -l)"`,
      { timeoutMs: 100_000 },
    );
    const fields = fieldsOf(stdout);
    const output = await readFile(log, "utf8");
    expect(fields.dig?.trim(), output).toBe("192.0.2.80");
    expect(fields.alias?.trim()).toBe("www.demo.test. 192.0.2.80");
    expect(fields.nx).toBe("status: NXDOMAIN");
    expect(fields.kdig?.trim()).toBe("2001:db8::80");
    const metrics = await readFile(join(dir, "metrics.txt"), "utf8");
    // Every query crossed the origin endpoint, over one pooled DoT connection.
    expect(metrics).toMatch(/doh_relay_queries_total\{protocol="origin",rcode="NOERROR"\} [3-9]/);
    expect(metrics).toMatch(/doh_relay_queries_total\{protocol="doh",rcode="NOERROR"\} 1/);
    expect(metrics).toContain('doh_relay_upstream_connections_opened_total{upstream="origin"} 1');
    expect(fields.exit).toBe("0");
    expect(fields.listeners).toBe("0");
    expect(fields.leftovers).toBe("0");
  }, 120_000);
});
