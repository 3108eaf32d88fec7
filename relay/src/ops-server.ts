// The operations HTTP server (listen.metrics): /metrics (Prometheus text),
// /healthz (running), /readyz (listeners bound and at least one upstream up
// per route), /statusz (JSON: routes with upstream health, listeners). With
// workers, the supervisor serves it and the source asks every worker.

import { createServer, type Server } from "node:http";
import type { HostPort } from "../../shared/config/upstream-url.ts";

export interface OpsSource {
  metrics(): string | Promise<string>;
  ready(): boolean | Promise<boolean>;
  status(): unknown;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startOpsServer(addr: HostPort, source: OpsSource): Promise<OpsServer> {
  const server: Server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    try {
      switch (path) {
        case "/metrics":
          send(200, "text/plain; version=0.0.4; charset=utf-8", await source.metrics());
          return;
        case "/healthz":
          send(200, "text/plain; charset=utf-8", "ok\n");
          return;
        case "/readyz": {
          const ready = await source.ready();
          send(ready ? 200 : 503, "text/plain; charset=utf-8", ready ? "ready\n" : "not ready\n");
          return;
        }
        case "/statusz":
          send(200, "application/json", `${JSON.stringify(await source.status(), null, 2)}\n`);
          return;
        default:
          send(404, "text/plain; charset=utf-8", "not found\n");
      }
    } catch (error) {
      if (!res.headersSent) send(500, "text/plain; charset=utf-8", `${(error as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(addr.port, addr.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
