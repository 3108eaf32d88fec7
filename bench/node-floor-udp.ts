// The bench's reference for what Node itself costs on the UDP → UDP path:
// UDP in, one connected UDP socket out, its own message IDs to match answers
// to askers, and nothing else (no engine, limits, metrics, timeouts or
// retries). A floor, not a product: the relay can approach it, not beat it.
//
//   node bench/node-floor-udp.ts <udp port> <upstream udp port>

import { createSocket } from "node:dgram";

const [listenPort, upstreamPort] = process.argv.slice(2);
if (!listenPort || !upstreamPort) {
  process.stderr.write("usage: node bench/node-floor-udp.ts <udp port> <upstream udp port>\n");
  process.exit(2);
}

interface Asker {
  id: number;
  port: number;
  address: string;
}

const askers = new Map<number, Asker>();
const listener = createSocket("udp4");
const upstream = createSocket("udp4");
let nextId = 0;

upstream.on("message", (answer) => {
  if (answer.length < 12) return;
  const asker = askers.get((answer[0]! << 8) | answer[1]!);
  if (!asker) return;
  askers.delete((answer[0]! << 8) | answer[1]!);
  answer[0] = asker.id >> 8;
  answer[1] = asker.id & 0xff;
  listener.send(answer, asker.port, asker.address);
});

listener.on("message", (query, from) => {
  if (query.length < 12 || askers.size >= 0xffff) return;
  let id = nextId;
  while (askers.has(id)) id = (id + 1) & 0xffff;
  nextId = (id + 1) & 0xffff;
  askers.set(id, { id: (query[0]! << 8) | query[1]!, port: from.port, address: from.address });
  // The datagram is ours: its ID is rewritten in place.
  query[0] = id >> 8;
  query[1] = id & 0xff;
  upstream.send(query);
});

upstream.connect(Number(upstreamPort), "127.0.0.1", () =>
  listener.bind(Number(listenPort), "127.0.0.1"),
);
process.on("SIGTERM", () => process.exit(0));
