// The relay's DoQ upstream (relay/src/transports/doq.ts) against the test DoQ
// server answering from memory in a child process (as a real upstream would
// be: the client's CPU is not shared with the server's). For each concurrency
// level, queries run for `seconds` or up to a count, whichever ends first.
// Run from bench/run.ts, or alone: `node bench/doq.ts [seconds]`.

import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createDoqUpstream } from "../relay/src/transports/doq.ts";
import { buildQuery } from "../shared/dns/query.ts";
import { createTestCertificates, freePort } from "../test/support/dns-servers.ts";
import { startDoqServer } from "../test/support/doq-server.ts";
import { type ManagedProcess, startProcess } from "../test/support/processes.ts";

export interface DoqBenchRow {
  concurrency: number;
  qps: number;
  avgMs: number;
  /** The relay side's CPU time (user + system) per query. */
  cpuMsPerQuery: number;
}

/** Queries per level at most, whatever `seconds` says. */
const MAX_QUERIES = 200_000;
const WARMUP_QUERIES = 200;

/** The query turned into a response with no records: NOERROR, QR, RD, RA. */
function fixedAnswer(query: Uint8Array): Uint8Array {
  const answer = query.slice();
  answer[2] = 0x81;
  answer[3] = 0x80;
  return answer;
}

/** Child-process side: serve DoQ from memory on `port` until SIGTERM. */
async function serve(certDir: string, port: number): Promise<void> {
  const [cert, key] = await Promise.all([
    readFile(join(certDir, "server.pem"), "utf8"),
    readFile(join(certDir, "server.key"), "utf8"),
  ]);
  const server = await startDoqServer({ cert, key, answer: fixedAnswer, port });
  process.once("SIGTERM", () => {
    void server.stop().finally(() => process.exit(0));
  });
}

/** Asks until the server answers (it is up), or throws after 10 s. */
async function untilAnswering(proc: ManagedProcess, ask: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) break;
    const answered = await ask().then(
      () => true,
      () => false,
    );
    if (answered) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the DoQ bench server did not answer:\n${proc.log()}`);
}

export async function benchDoq(opts: {
  seconds: number;
  concurrency: number[];
}): Promise<DoqBenchRow[]> {
  const certs = await createTestCertificates();
  const port = await freePort();
  const proc = startProcess("doq bench server", process.execPath, [
    ...process.execArgv,
    fileURLToPath(import.meta.url),
    "--serve",
    certs.dir,
    String(port),
  ]);
  const doq = createDoqUpstream({
    name: "doq-bench",
    host: "127.0.0.1",
    port,
    servername: "dns.test",
    ca: await readFile(certs.caFile, "utf8"),
    connectTimeoutMs: 2000,
    handshakeTimeoutMs: 2000,
    idleTimeoutMs: 30_000,
    maxRetries: 1,
    maxInFlight: Math.max(...opts.concurrency, 1),
  });
  const query = buildQuery("bench.doq.test", 1, { id: 4242 });
  const ask = () => doq.query(query, AbortSignal.timeout(5000));
  const rows: DoqBenchRow[] = [];
  try {
    await untilAnswering(proc, () => doq.query(query, AbortSignal.timeout(500)));
    for (let i = 0; i < WARMUP_QUERIES; i++) await ask();
    for (const concurrency of opts.concurrency) {
      const deadline = performance.now() + opts.seconds * 1000;
      let started = 0;
      let latencyMs = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (started < MAX_QUERIES && performance.now() < deadline) {
            started++;
            const t = performance.now();
            await ask();
            latencyMs += performance.now() - t;
          }
        }),
      );
      const elapsed = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      rows.push({
        concurrency,
        qps: started / elapsed,
        avgMs: latencyMs / started,
        cpuMsPerQuery: (cpu.user + cpu.system) / 1000 / started,
      });
    }
    return rows;
  } finally {
    await doq.close();
    await proc.stop();
    await rm(certs.dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === "--serve") {
    await serve(process.argv[3] ?? ".", Number(process.argv[4]));
  } else {
    const seconds = Number(process.argv[2] ?? 3);
    const rows = await benchDoq({ seconds, concurrency: [1, 20, 50] });
    process.stdout.write("| in flight | q/s | avg ms | relay CPU ms/query |\n|---|---|---|---|\n");
    for (const row of rows) {
      process.stdout.write(
        `| ${row.concurrency} | ${row.qps.toFixed(0)} | ${row.avgMs.toFixed(2)} | ${row.cpuMsPerQuery.toFixed(3)} |\n`,
      );
    }
  }
}
