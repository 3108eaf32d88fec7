// The test suite's own DoH server (HTTP/1.1, what workerd's fetch speaks to
// origins), in front of real DNS servers, plus fault paths:
//   /<backend>/dns-query   forward to a named backend port over UDP
//   /fault/status-500      HTTP 500
//   /fault/wrong-type      200 with text/plain
//   /fault/truncated       promises 300 bytes, sends 20, closes
//   /fault/hang            never answers
//   /fault/servfail        a SERVFAIL answer with the query's ID
//   /fault/wrong-id        an answer with another message ID
//   /lists/<any>           a small hosts-format block list; compiled*.bin and
//                          corrupt*.bin: a compiled one, sound or corrupt
//   /origin/<name>         a relay origin endpoint stand-in: forwards to backend "origin"
// Every request is recorded (path, method, authorization) for assertions.

import { createServer, type IncomingMessage, type Server } from "node:http";
import { buildErrorResponse, Rcode, readId, withId } from "../../shared/dns/wire.ts";
import { decodeBase64Url } from "../../shared/doh/base64url.ts";
import { buildCompiledList } from "../../shared/policy/compiled-list.ts";
import { udpExchange } from "./processes.ts";

export interface RecordedRequest {
  path: string;
  method: string;
  authorization: string | undefined;
}

export interface DohTestServer {
  readonly port: number;
  readonly requests: RecordedRequest[];
  stop(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

export async function startDohTestServer(backends: Record<string, number>): Promise<DohTestServer> {
  const requests: RecordedRequest[] = [];
  const hanging = new Set<() => void>();
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    requests.push({
      path: url.pathname,
      method: req.method ?? "",
      authorization: req.headers.authorization,
    });
    const query =
      req.method === "POST" ? await body(req) : decodeBase64Url(url.searchParams.get("dns") ?? "");
    const [, first, second] = url.pathname.split("/");
    const send = (bytes: Uint8Array) => {
      res.writeHead(200, {
        "content-type": "application/dns-message",
        "content-length": bytes.length,
      });
      res.end(bytes);
    };
    if (first === "lists") {
      // Block lists for the worker's blocklists.url: hosts format, or
      // compiled (/lists/compiled*.bin; /lists/corrupt*.bin has one bit flipped).
      const compiled = second?.startsWith("compiled") || second?.startsWith("corrupt");
      res.writeHead(200, {
        "content-type": compiled ? "application/octet-stream" : "text/plain",
      });
      if (!compiled) {
        res.end("# test list\n0.0.0.0 blocked.example.test\n0.0.0.0 listed.corp.test\n");
        return;
      }
      const bytes = buildCompiledList(["compiled-blocked.example.test"]).bytes;
      if (second?.startsWith("corrupt")) bytes[bytes.length - 1]! ^= 0x01;
      res.end(bytes);
      return;
    }
    if (first === "fault") {
      switch (second) {
        case "status-500":
          res.writeHead(500, { "content-type": "text/plain" }).end("boom");
          return;
        case "wrong-type":
          res.writeHead(200, { "content-type": "text/plain" }).end("not dns");
          return;
        case "truncated":
          res.writeHead(200, { "content-type": "application/dns-message", "content-length": 300 });
          res.write(new Uint8Array(20));
          res.socket?.destroy();
          return;
        case "hang":
          hanging.add(() => res.socket?.destroy());
          return;
        case "servfail":
          if (query) send(buildErrorResponse(query, Rcode.SERVFAIL));
          return;
        case "wrong-id":
          // A well-formed answer to the question, under another message ID.
          if (query)
            send(withId(buildErrorResponse(query, Rcode.NXDOMAIN), (readId(query) + 1) & 0xffff));
          return;
      }
    }
    const backend =
      first === "origin" ? backends.origin : first === undefined ? undefined : backends[first];
    if (backend === undefined || (first !== "origin" && second !== "dns-query") || !query) {
      res.writeHead(404).end();
      return;
    }
    const answer = await udpExchange(backend, query, 2000);
    if (!answer) res.writeHead(504).end();
    else send(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    requests,
    async stop() {
      for (const drop of hanging) drop();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
