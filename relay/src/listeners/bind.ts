// Binds a TCP-family server (plain, TLS or HTTP) to its configured address
// and reports where it ended up (port 0 picks one); and whether this Node can
// set SO_REUSEPORT at all (22.12 / 23.1 and later, on Linux and the BSDs).

import { createSocket, type Socket } from "node:dgram";
import type { Server } from "node:net";
import { formatHostPort } from "../../../shared/config/ip.ts";
import type { HostPort } from "../../../shared/config/upstream-url.ts";

export async function listenOn(
  server: Server,
  addr: HostPort,
  reusePort: boolean,
): Promise<{ address: string; port: number }> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: addr.port, host: addr.host, reusePort }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as { address: string; port: number; family: string };
  return { address: formatHostPort({ host: bound.address, port: bound.port }), port: bound.port };
}

let probe: Promise<boolean> | undefined;

/**
 * True when two sockets with `reusePort` can share a port here. Older Nodes
 * ignore the option (the second bind fails), some platforms refuse it: both
 * are false. Node gates reusePort the same way for dgram and net.
 */
export function reusePortSupported(): Promise<boolean> {
  probe ??= (async () => {
    const bind = (port: number) =>
      new Promise<Socket>((resolve, reject) => {
        const socket = createSocket({ type: "udp4", reusePort: true });
        socket.once("error", (error) => {
          socket.close();
          reject(error);
        });
        socket.bind(port, "127.0.0.1", () => resolve(socket));
      });
    let first: Socket | undefined;
    try {
      first = await bind(0);
      const second = await bind(first.address().port);
      second.close();
      return true;
    } catch {
      return false;
    } finally {
      first?.close();
    }
  })();
  return probe;
}
