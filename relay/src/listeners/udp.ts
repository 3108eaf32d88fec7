// The UDP listener: each datagram goes through the query handler; answers
// larger than the client's EDNS UDP size (512 without EDNS) are truncated
// with TC=1 so the client retries over TCP.

import { createSocket, type Socket } from "node:dgram";
import { formatHostPort } from "../../../shared/config/ip.ts";
import type { UdpListenerConfig } from "../../../shared/config/schema.ts";
import { findOpt, truncateResponse } from "../../../shared/dns/wire.ts";
import type { Logger } from "../log.ts";
import type { QueryHandler } from "../query-handler.ts";
import { createPending } from "./pending.ts";

export interface Listener {
  readonly name: string;
  /** Bound address, e.g. "127.0.0.1:5053". */
  readonly address: string;
  readonly port: number;
  /** Stops accepting new queries; answers to queries in flight still go out. */
  stop(): void;
  /** Closes everything. */
  close(): Promise<void>;
}

/** The client's UDP payload limit: its EDNS size (at least 512), else 512. */
export function clientUdpSize(query: Uint8Array): number {
  try {
    const { opt } = findOpt(query);
    return opt ? Math.max(512, opt.class) : 512;
  } catch {
    return 512;
  }
}

export async function startUdpListener(
  config: UdpListenerConfig,
  handler: QueryHandler,
  logger: Logger,
): Promise<Listener> {
  const family = config.addr.hostKind === "ipv6" ? "udp6" : "udp4";
  const socket: Socket = createSocket({ type: family, reusePort: config.reuse_port });
  let stopped = false;
  let closed = false;
  const pending = createPending();
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(config.addr.port, config.addr.host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  if (config.udp_buffer_size !== undefined) {
    socket.setRecvBufferSize(config.udp_buffer_size);
    socket.setSendBufferSize(config.udp_buffer_size);
  }
  socket.on("error", (error) => logger.error("udp listener error", { error }));
  const sent = () => pending.done();
  socket.on("message", (msg, rinfo) => {
    if (stopped) return;
    const query = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
    pending.add();
    handler.handle(query, { address: rinfo.address, protocol: "udp" }).then(
      (answer) => {
        if (!answer || closed) {
          pending.done();
          return;
        }
        // 512 bytes always fit: the client's limit is never lower.
        const fitted =
          answer.length <= 512 ? answer : truncateResponse(answer, clientUdpSize(query));
        try {
          socket.send(fitted, rinfo.port, rinfo.address, sent);
        } catch (error) {
          pending.done();
          logger.error("udp send failed", { error });
        }
      },
      (error: unknown) => {
        pending.done();
        logger.error("udp query failed", { error });
      },
    );
  });
  const bound = socket.address();
  return {
    name: "udp",
    address: formatHostPort({ host: bound.address, port: bound.port }),
    port: bound.port,
    stop() {
      stopped = true;
    },
    async close() {
      if (closed) return;
      stopped = true;
      await pending.idle();
      closed = true;
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}
