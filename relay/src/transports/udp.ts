// Plain DNS over UDP: one socket per query (a fresh random source port) and a
// random message ID, restored to the caller's ID on the way back. An answer
// with TC=1 is retried over TCP (RFC 7766 §5).

import { randomInt } from "node:crypto";
import { createSocket } from "node:dgram";
import { readHeader, readId, withId } from "../../../shared/dns/wire.ts";
import { UpstreamError } from "../../../shared/engine/errors.ts";
import type { Upstream } from "../../../shared/engine/upstream.ts";
import { type TcpUpstreamOptions, tcpExchange } from "./tcp.ts";

export interface UdpUpstreamOptions extends TcpUpstreamOptions {}

export function createUdpUpstream(options: UdpUpstreamOptions): Upstream {
  const { name } = options;
  let closed = false;
  return {
    name,
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      const clientId = readId(message);
      const id = randomInt(0x10000);
      const answer = await udpExchange(options, withId(message, id), id, signal);
      if (readHeader(answer).tc) {
        const full = await tcpExchange(options, message, signal);
        return full;
      }
      return withId(answer, clientId);
    },
    async close() {
      closed = true;
    },
  };
}

function udpExchange(
  options: UdpUpstreamOptions,
  message: Uint8Array,
  id: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const { name, host, port } = options;
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
      return;
    }
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
    const finish = (error: UpstreamError | undefined, answer?: Uint8Array) => {
      signal.removeEventListener("abort", onAbort);
      socket.close();
      if (error) reject(error);
      else resolve(answer as Uint8Array);
    };
    const onAbort = () =>
      finish(new UpstreamError("aborted", name, undefined, { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("error", (error) =>
      finish(new UpstreamError("send", name, undefined, { cause: error })),
    );
    socket.on("message", (msg, rinfo) => {
      // Only the server's address and our ID count; anything else is noise.
      if (rinfo.port !== port || msg.length < 12) return;
      const answer = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
      if (readId(answer) !== id) return;
      finish(undefined, answer);
    });
    socket.connect(port, host, () => {
      socket.send(message, (error) => {
        if (error) finish(new UpstreamError("send", name, undefined, { cause: error }));
      });
    });
  });
}
