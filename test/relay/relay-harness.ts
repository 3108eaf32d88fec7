// Shared setup for relay tests: test zone data, an in-process relay on
// ephemeral ports, and small wire clients (UDP from a chosen source address,
// pipelined TCP, dig/kdig).

import { execFile } from "node:child_process";
import { connect } from "node:net";
import { promisify } from "node:util";
import { createLogger } from "../../relay/src/log.ts";
import { type Relay, type RelayOptions, startRelay } from "../../relay/src/relay.ts";
import { parseRelayConfig, type RelayConfig } from "../../shared/config/schema.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { udpExchange } from "../support/processes.ts";

export const run = promisify(execFile);

const txt = (n: number) => `"${String(n).repeat(200).slice(0, 200)}"`;

export const ZONE = `$ORIGIN relay.test.
$TTL 300
@    IN SOA ns.relay.test. admin.relay.test. 1 3600 600 86400 300
@    IN NS  ns.relay.test.
ns   IN A   127.0.0.1
www  IN A   192.0.2.10
www  IN AAAA 2001:db8::10
big  IN TXT ${txt(1)}
big  IN TXT ${txt(2)}
big  IN TXT ${txt(3)}
big  IN TXT ${txt(4)}
`;

/**
 * Parses `input` (with the cache off unless it sets one), then moves every
 * listener not in `keep` to port 0 (the schema needs a real port).
 */
export function ephemeralConfig(
  input: Record<string, unknown>,
  keep: readonly string[] = [],
): RelayConfig {
  // Relay tests exercise transports and listeners: no cache unless a test asks for one.
  const config = parseRelayConfig({ cache: { size: 0 }, ...input }).config;
  const listen = config.listen as Record<string, { addr: { port: number } } | undefined>;
  for (const key of Object.keys(listen)) {
    const l = listen[key];
    if (l && !keep.includes(key)) l.addr = { ...l.addr, port: 0 };
  }
  return config;
}

export async function startTestRelay(
  input: Record<string, unknown>,
  keep: readonly string[] = [],
  options: RelayOptions = {},
): Promise<Relay> {
  return startRelay(
    ephemeralConfig(input, keep),
    createLogger("error", () => {}),
    options,
  );
}

export function portOf(relay: Relay, name: string): number {
  const listener = relay.listeners.find((l) => l.name === name);
  if (!listener) throw new Error(`no ${name} listener`);
  return listener.port;
}

/** One UDP exchange from a chosen local address. */
export const udpFrom = (source: string, port: number, query: Uint8Array, ms = 2000) =>
  udpExchange(port, query, ms, source);

/**
 * Writes every query on one TCP connection at once and collects answers in
 * arrival order until `expected` arrived or `ms` passed.
 */
export function tcpPipeline(
  port: number,
  queries: Uint8Array[],
  expected = queries.length,
  ms = 5000,
): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const answers: Uint8Array[] = [];
    const reader = createFrameReader();
    const socket = connect(port, "127.0.0.1");
    const timer = setTimeout(() => done(), ms);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answers);
    };
    socket.on("connect", () => {
      const all = Buffer.concat(queries.map((q) => frameMessage(q)));
      socket.write(all);
    });
    socket.on("data", (chunk) => {
      answers.push(...reader.push(new Uint8Array(chunk)));
      if (answers.length >= expected) done();
    });
    socket.on("close", () => done());
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

export async function dig(port: number, args: string[]): Promise<string> {
  const { stdout } = await run("dig", [
    "@127.0.0.1",
    "-p",
    String(port),
    "+tries=1",
    "+time=3",
    ...args,
  ]);
  return stdout;
}

export async function httpGet(
  port: number,
  path: string,
): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}
