// The relay's per-query JavaScript alone, in this process: the query handler,
// rules, resolver and race (as relay.ts builds them, cache off, no rate
// limit) over an upstream that answers at once (`fake`: in a microtask) or
// the stream pool over loopback TCP to a server in this process (`tcp`: its
// CPU counted too), or the UDP upstream to a UDP server in this process
// (`udp`, likewise). --layers measures the same queries entering at each
// layer in turn (the upstream alone, the routing resolver and race, the
// policy and cache layers, the query handler), so the differences are
// each layer's own cost. 50 queries in flight; CPU µs per query, per round. No
// dnsperf, no other process: steadier than bench:profile on a shared
// machine, for before/after checks of the engine (--root: another checkout).
//
//   node bench/engine-cpu.ts [--upstream fake|tcp|udp] [--rounds 5] [--layers]
//     [--root /path/to/checkout]

import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    upstream: { type: "string", default: "fake" },
    rounds: { type: "string", default: "5" },
    layers: { type: "boolean", default: false },
    root: { type: "string", default: fileURLToPath(new URL("..", import.meta.url)) },
  },
});
const IN_FLIGHT = 50;
const PER_ROUND = args.upstream === "fake" ? 200_000 : 100_000;

// The modules of the checkout under test, typed as this checkout's.
async function load<T>(path: string): Promise<T> {
  return (await import(pathToFileURL(resolve(args.root, path)).href)) as T;
}
const { parseRelayConfig } =
  await load<typeof import("../shared/config/schema.ts")>("shared/config/schema.ts");
const { createPolicy } =
  await load<typeof import("../shared/policy/rules.ts")>("shared/policy/rules.ts");
const { createCachedResolver } = await load<typeof import("../shared/resolver/cached-resolver.ts")>(
  "shared/resolver/cached-resolver.ts",
);
const { createResolver } = await load<typeof import("../shared/resolver/create-resolver.ts")>(
  "shared/resolver/create-resolver.ts",
);
const { createPolicyResolver } = await load<typeof import("../shared/resolver/policy-resolver.ts")>(
  "shared/resolver/policy-resolver.ts",
);
const { createClientLimits } = await load<typeof import("../relay/src/client-limits.ts")>(
  "relay/src/client-limits.ts",
);
const { createRelayMetrics } =
  await load<typeof import("../relay/src/metrics.ts")>("relay/src/metrics.ts");
const { createLogger } = await load<typeof import("../relay/src/log.ts")>("relay/src/log.ts");
const { createQueryHandler } = await load<typeof import("../relay/src/query-handler.ts")>(
  "relay/src/query-handler.ts",
);
const { relayClock } = await load<typeof import("../relay/src/transports/relay-clock.ts")>(
  "relay/src/transports/relay-clock.ts",
);
const { createUdpUpstream } = await load<typeof import("../relay/src/transports/udp.ts")>(
  "relay/src/transports/udp.ts",
);
const { createStreamPool } = await load<typeof import("../relay/src/transports/stream-pool.ts")>(
  "relay/src/transports/stream-pool.ts",
);
const { createFrameReader, frameMessage } =
  await load<typeof import("../shared/dns/framing.ts")>("shared/dns/framing.ts");
const { buildQuery } = await load<typeof import("../shared/dns/query.ts")>("shared/dns/query.ts");
type Upstream = import("../shared/engine/upstream.ts").Upstream;

/** The query's bytes as a NOERROR answer (QR, RA set; nothing else changed). */
function answerFor(query: Uint8Array): Uint8Array {
  const answer = new Uint8Array(query.length);
  answer.set(query);
  answer[2] = 0x81;
  answer[3] = 0x80;
  return answer;
}

const fake: Upstream = {
  name: "upstream",
  query: (message, signal) =>
    new Promise((done, fail) => {
      const onAbort = () => fail(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      queueMicrotask(() => {
        signal.removeEventListener("abort", onAbort);
        done(answerFor(message));
      });
    }),
  close: async () => {},
};

/** The stream pool to a TCP server in this process answering every frame. */
async function tcpUpstream(): Promise<Upstream> {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const frames = createFrameReader();
    socket.on("data", (chunk: Buffer) => {
      const out = frames.push(chunk).map((query) => {
        const answer = answerFor(query);
        return frameMessage(answer, (answer[0]! << 8) | answer[1]!, Buffer.allocUnsafe);
      });
      socket.write(Buffer.concat(out));
    });
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
  server.unref();
  const { port } = server.address() as { port: number };
  return createStreamPool({
    name: "upstream",
    host: "127.0.0.1",
    port,
    size: 1,
    maxInFlight: 100,
    idleTimeoutMs: 5000,
    connectTimeoutMs: 2000,
    handshakeTimeoutMs: 2000,
    maxRetries: 1,
  });
}

/** The UDP upstream to a UDP server in this process answering every datagram. */
async function udpUpstream(): Promise<Upstream> {
  const server = createSocket("udp4");
  server.on("message", (query, from) => server.send(answerFor(query), from.port, from.address));
  await new Promise<void>((ready) => server.bind(0, "127.0.0.1", ready));
  server.unref();
  const { port } = server.address();
  return createUdpUpstream({ name: "upstream", host: "127.0.0.1", port, connectTimeoutMs: 2000 });
}

const { config } = parseRelayConfig({
  listen: { udp: "127.0.0.1:5353" },
  upstreams: [{ name: "upstream", url: "udp://127.0.0.1:53" }],
  routes: [{ zones: ["."], upstreams: ["upstream"] }],
  cache: { size: 0 },
  rate_limit: { qps: 0, max_in_flight: 0 },
});
const upstream =
  args.upstream === "tcp"
    ? await tcpUpstream()
    : args.upstream === "udp"
      ? await udpUpstream()
      : fake;
const routing = createResolver({
  upstreams: config.upstreams,
  routes: config.routes,
  transports: new Map([["upstream", upstream]]),
  clock: relayClock,
});
const cached = createCachedResolver(routing, config.cache, () => relayClock.now(), undefined, {
  clock: relayClock,
});
const resolver = createPolicyResolver(
  cached,
  createPolicy({ rules: config.rules, allowlist: config.allowlist }),
);
const limits = createClientLimits({ qps: 0, burst: 0, maxInFlight: 0 });
const handler = createQueryHandler({
  allow: () => config.allow,
  limits: () => limits,
  resolver: () => resolver,
  metrics: createRelayMetrics(),
  logger: createLogger("warn"),
  shutdown: new AbortController().signal,
});
const queries = Array.from({ length: 400 }, (_, i) =>
  buildQuery(`h${i >> 1}.bench.test.`, i & 1 ? 28 : 1, { id: i }),
);
const client = { address: "127.0.0.1", protocol: "udp" } as const;

/** Where a query enters: a function from the query to its answer. */
type Entry = (query: Uint8Array) => Promise<Uint8Array | undefined>;

const shutdown = new AbortController().signal;
const entries: [name: string, entry: Entry][] = [
  ["query handler (ACL, limits, metrics) and all below", (q) => handler.handle(q, client)],
];
if (args.layers) {
  entries.push(
    [
      "policy and cache layers (cache off) and all below",
      (q) => resolver.resolve(q, shutdown).then((o) => o.answer),
    ],
    [
      "routing resolver (question read, route, EDNS rewrite, race, answer check) and the upstream",
      (q) => routing.resolve(q, shutdown).then((o) => o.answer),
    ],
    // As the race calls it: a signal of its own per attempt.
    [
      "the upstream alone, with a signal per query as the race gives it",
      (q) => upstream.query(q, new AbortController().signal),
    ],
  );
}

/** One asker: `count` queries one after another. */
async function asker(entry: Entry, count: number, offset: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const answer = await entry(queries[(i + offset) % queries.length]!.slice());
    if (!answer || (answer[3]! & 0x0f) !== 0) throw new Error("engine-cpu: no NOERROR answer");
  }
}

async function round(entry: Entry, total: number): Promise<number> {
  const before = process.cpuUsage();
  const askers = Array.from({ length: IN_FLIGHT }, (_, k) =>
    asker(entry, total / IN_FLIGHT, k * 7),
  );
  await Promise.all(askers);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / total;
}

const median = (values: number[]) => values.toSorted((a, b) => a - b)[values.length >> 1]!;
for (const [, entry] of entries) await round(entry, PER_ROUND / 4); // warm-up
// Rounds of every entry in turn, so drift touches each alike.
const perQuery = entries.map((): number[] => []);
for (let r = 0; r < Number(args.rounds); r++) {
  for (const [i, [, entry]] of entries.entries()) perQuery[i]!.push(await round(entry, PER_ROUND));
}
if (!args.layers) {
  process.stdout.write(
    `engine-cpu (${args.upstream}, ${args.root}): CPU µs per query by round ${perQuery[0]!.map((us) => us.toFixed(2)).join(" ")}; median ${median(perQuery[0]!).toFixed(2)}\n`,
  );
} else {
  // A markdown table: bench/profile.ts puts it in its report.
  const lines = [
    `| entering at (${args.upstream} upstream, ${IN_FLIGHT} in flight) | CPU µs / query | of it, this layer |`,
    "|---|---|---|",
  ];
  entries.forEach(([name], i) => {
    const us = median(perQuery[i]!);
    const below = i + 1 < entries.length ? median(perQuery[i + 1]!) : 0;
    lines.push(`| ${name} | ${us.toFixed(2)} | ${(us - below).toFixed(2)} |`);
  });
  process.stdout.write(`${lines.join("\n")}\n`);
}
await upstream.close();
