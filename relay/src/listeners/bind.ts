// Binds a TCP-family server (plain, TLS or HTTP) to its configured address
// and reports where it ended up (port 0 picks one).

import type { Server } from "node:net";
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
  const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
  return { address: `${host}:${bound.port}`, port: bound.port };
}
