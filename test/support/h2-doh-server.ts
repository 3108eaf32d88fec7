// An HTTP/2 DoH server (RFC 8484 POST and GET over TLS) for relay tests: it
// forwards each query to a DNS backend over UDP and counts TLS connections
// and requests, so tests can prove the relay reuses one session, and keeps
// the queries as they arrived. Node only.

import { readFile } from "node:fs/promises";
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from "node:http2";
import type { TLSSocket } from "node:tls";
import { udpExchange } from "./processes.ts";

export interface H2DohServer {
  readonly port: number;
  /** TLS connections accepted so far. */
  readonly connections: number;
  readonly requests: number;
  /** The DNS queries received, in order. */
  readonly queries: readonly Uint8Array[];
  /** Sends GOAWAY on every open session and closes it (a server restart, say). */
  closeSessions(): void;
  /** The next request's session is destroyed without an answer (a connection dying mid-query). */
  killNextSession(): void;
  stop(): Promise<void>;
}

export async function startH2DohServer(options: {
  backendPort: number;
  certFile: string;
  keyFile: string;
}): Promise<H2DohServer> {
  let connections = 0;
  let requests = 0;
  let killNext = false;
  const queries: Uint8Array[] = [];
  const sockets = new Set<TLSSocket>();
  const sessions = new Set<ServerHttp2Session>();
  const server: Http2SecureServer = createSecureServer({
    cert: await readFile(options.certFile),
    key: await readFile(options.keyFile),
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  server.on("stream", async (stream, headers) => {
    requests++;
    if (killNext) {
      killNext = false;
      stream.session?.destroy();
      return;
    }
    stream.on("error", () => {});
    const url = new URL(String(headers[":path"]), "https://localhost");
    let query: Uint8Array;
    if (headers[":method"] === "GET") {
      query = new Uint8Array(Buffer.from(url.searchParams.get("dns") ?? "", "base64url"));
    } else {
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      query = new Uint8Array(Buffer.concat(chunks));
    }
    if (url.pathname !== "/dns-query" || query.length < 12) {
      stream.respond({ ":status": 400 });
      stream.end();
      return;
    }
    queries.push(query);
    const answer = await udpExchange(options.backendPort, query, 2000);
    if (stream.destroyed) return;
    if (!answer) {
      stream.respond({ ":status": 502 });
      stream.end();
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/dns-message" });
    stream.end(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    get connections() {
      return connections;
    },
    get requests() {
      return requests;
    },
    queries,
    killNextSession() {
      killNext = true;
    },
    closeSessions() {
      for (const session of sessions) session.close();
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
