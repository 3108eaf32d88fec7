// The bench's reference for what Node itself costs on the UDP → DoT path: a
// forwarder with nothing but the I/O the relay also does (UDP in and out,
// one pipelined TLS connection with a verified certificate, its own message
// IDs, writes corked per event-loop turn). No engine, no limits, no metrics,
// no timeouts, no retries: not a product, a floor. The relay can approach
// it, not beat it.
//
//   node bench/node-floor.ts <udp port> <dot port> <ca file> <tls name>

import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { connect, type TLSSocket } from "node:tls";
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
const udp = createSocket("udp4");
const ca = readFileSync(caFile, "utf8");
let nextId = 0;
let corked = false;
let tls: TLSSocket | undefined;

/** The DoT connection, opened again after the server closed an idle one. */
function upstream(): TLSSocket {
  if (tls && !tls.destroyed) return tls;
  const socket = connect({
    host: "127.0.0.1",
    port: Number(dotPort),
    servername,
    ca,
    minVersion: "TLSv1.2",
  });
  socket.setNoDelay(true);
  const frames = createFrameReader();
  socket.on("data", (chunk: Buffer) => {
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
  socket.on("error", (error) => process.stderr.write(`node-floor: ${error.message}\n`));
  // Queries on a closed connection are lost: the floor does not retry.
  socket.on("close", () => askers.clear());
  tls = socket;
  return socket;
}

udp.on("message", (query, from) => {
  if (query.length < 12 || askers.size >= 0xffff) return;
  let id = nextId;
  while (askers.has(id)) id = (id + 1) & 0xffff;
  nextId = (id + 1) & 0xffff;
  askers.set(id, { id: (query[0]! << 8) | query[1]!, port: from.port, address: from.address });
  const socket = upstream();
  if (!corked) {
    corked = true;
    socket.cork();
    setImmediate(() => {
      corked = false;
      socket.uncork();
    });
  }
  socket.write(frameMessage(query, id, Buffer.allocUnsafe));
});

upstream().once("secureConnect", () => udp.bind(Number(listenPort), "127.0.0.1"));
process.on("SIGTERM", () => process.exit(0));
