// The bench's reference for what Node itself costs on the UDP → DoT path: a
// forwarder with nothing but the I/O the relay also does (UDP in and out,
// one pipelined TLS connection with a verified certificate, its own message
// IDs, writes corked per event-loop turn). No engine, no limits, no metrics,
// no timeouts: not a product, a floor. The relay can approach it, not beat it.
//
//   node bench/node-floor.ts <udp port> <dot port> <ca file> <tls name>

import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { connect } from "node:tls";
import { createFrameReader, frameMessage } from "../shared/dns/framing.ts";

const [listenPort, dotPort, caFile, servername] = process.argv.slice(2);
if (!listenPort || !dotPort || !caFile || !servername) {
  process.stderr.write(
    "usage: node bench/node-floor.ts <udp port> <dot port> <ca file> <tls name>\n",
  );
  process.exit(2);
}

interface Asker {
  id: number;
  port: number;
  address: string;
}

const askers = new Map<number, Asker>();
let nextId = 0;
let corked = false;
const udp = createSocket("udp4");
const tls = connect({
  host: "127.0.0.1",
  port: Number(dotPort),
  servername,
  ca: readFileSync(caFile, "utf8"),
  minVersion: "TLSv1.2",
});
tls.setNoDelay(true);
const frames = createFrameReader();

tls.on("data", (chunk: Buffer) => {
  for (const answer of frames.push(chunk)) {
    if (answer.length < 12) continue;
    const wireId = (answer[0]! << 8) | answer[1]!;
    const asker = askers.get(wireId);
    if (!asker) continue;
    askers.delete(wireId);
    answer[0] = asker.id >> 8;
    answer[1] = asker.id & 0xff;
    udp.send(answer, asker.port, asker.address);
  }
});

udp.on("message", (query, from) => {
  if (query.length < 12 || askers.size >= 0xffff) return;
  let id = nextId;
  while (askers.has(id)) id = (id + 1) & 0xffff;
  nextId = (id + 1) & 0xffff;
  askers.set(id, { id: (query[0]! << 8) | query[1]!, port: from.port, address: from.address });
  if (!corked) {
    corked = true;
    tls.cork();
    setImmediate(() => {
      corked = false;
      tls.uncork();
    });
  }
  tls.write(frameMessage(query, id, Buffer.allocUnsafe));
});

tls.once("secureConnect", () => udp.bind(Number(listenPort), "127.0.0.1"));
tls.on("error", (error) => {
  process.stderr.write(`node-floor: ${error.message}\n`);
  process.exit(1);
});
tls.on("close", () => process.exit(1));
process.on("SIGTERM", () => process.exit(0));
