// A forwarding DNS server that records what reaches it: UDP and DoT (test
// certificates) in front of a UDP backend (nsd, unbound). Every query is kept
// as it arrived; `decorate` may rewrite each answer before it goes back (to
// play an upstream that adds options). Loopback only. Node only.

import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { freePort, type TestCertificates } from "./dns-servers.ts";
import { udpExchange } from "./processes.ts";

export interface RecordedQuery {
  transport: "udp" | "dot";
  bytes: Uint8Array;
}

export interface RecordingServer {
  readonly port: number;
  readonly tlsPort: number;
  readonly queries: readonly RecordedQuery[];
  stop(): Promise<void>;
}

export async function startRecordingServer(options: {
  backendPort: number;
  certs: TestCertificates;
  decorate?: (answer: Uint8Array) => Uint8Array;
}): Promise<RecordingServer> {
  const [cert, key] = await Promise.all([
    readFile(options.certs.certFile, "utf8"),
    readFile(options.certs.keyFile, "utf8"),
  ]);
  const port = await freePort();
  const tlsPort = await freePort();
  const queries: RecordedQuery[] = [];
  const sockets = new Set<Socket>();

  async function answer(query: Uint8Array, transport: RecordedQuery["transport"]) {
    queries.push({ transport, bytes: query.slice() });
    const reply = await udpExchange(options.backendPort, query, 2000);
    if (!reply) return undefined;
    return options.decorate ? options.decorate(reply) : reply;
  }

  const udp = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    void answer(new Uint8Array(msg), "udp").then((reply) => {
      if (reply) udp.send(reply, rinfo.port, rinfo.address);
    });
  });
  await new Promise<void>((resolve) => udp.bind(port, "127.0.0.1", resolve));

  const tls = createTlsServer({ cert, key }, (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const reader = createFrameReader();
    socket.on("data", (chunk: Buffer) => {
      for (const query of reader.push(new Uint8Array(chunk))) {
        void answer(query, "dot").then((reply) => {
          if (reply && !socket.destroyed) socket.write(frameMessage(reply));
        });
      }
    });
  });
  tls.on("tlsClientError", () => {});
  await new Promise<void>((resolve) => tls.listen(tlsPort, "127.0.0.1", resolve));

  return {
    port,
    tlsPort,
    queries,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise((resolve) => tls.close(resolve)),
      ]);
    },
  };
}
