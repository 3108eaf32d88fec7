// DoT (RFC 7858) from the Worker over cloudflare:sockets. A socket cannot
// outlive the request that opened it, so each query opens its own TLS
// connection; the relay is the pooled path for DoT-heavy setups.

import { connect as socketConnect } from "cloudflare:sockets";
import { padQuery } from "../../shared/dns/edns-options.ts";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { readId } from "../../shared/dns/wire.ts";
import { abortedBy, UpstreamError } from "../../shared/engine/errors.ts";
import { type Upstream, unsendable } from "../../shared/engine/upstream.ts";

export interface SocketDotOptions {
  name: string;
  host: string;
  port: number;
  /** Name the certificate must carry (SNI); defaults to host. */
  servername?: string;
  connect?: typeof socketConnect;
}

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));
const looksLikeTls = (error: unknown) => /tls|ssl|certificate|handshake/i.test(describe(error));

export function createSocketDotUpstream(options: SocketDotOptions): Upstream {
  const { name } = options;
  const open = options.connect ?? socketConnect;
  let closed = false;

  return {
    name,
    async query(message, signal) {
      if (closed) throw new UpstreamError("closed", name);
      const bad = unsendable(message, name);
      if (bad) throw bad;
      if (signal.aborted) throw abortedBy(signal, name);
      // starttls lets us name the expected server even when host is an IP.
      const plain = open(
        { hostname: options.host, port: options.port },
        { secureTransport: "starttls", allowHalfOpen: false },
      );
      const socket = plain.startTls({ expectedServerHostname: options.servername ?? options.host });
      // Failures surface through opened/read/write; keep these from going unhandled.
      for (const settled of [plain.opened, plain.closed, socket.closed]) settled.catch(() => {});
      const abort = () => {
        socket.close().catch(() => {});
      };
      signal.addEventListener("abort", abort, { once: true });
      let phase: "connect" | "send" | "read" = "connect";
      try {
        await socket.opened;
        phase = "send";
        const writer = socket.writable.getWriter();
        await writer.write(frameMessage(padQuery(message)));
        writer.releaseLock();
        phase = "read";
        const reader = socket.readable.getReader();
        const frames = createFrameReader();
        const id = readId(message);
        for (;;) {
          const { done, value } = await reader.read();
          if (done)
            throw new UpstreamError("read", name, `${name}: connection closed before the answer`);
          for (const answer of frames.push(value)) {
            if (answer.length >= 12 && readId(answer) === id) return answer;
          }
        }
      } catch (error) {
        if (signal.aborted) throw abortedBy(signal, name);
        if (error instanceof UpstreamError) throw error;
        const code = looksLikeTls(error) ? "tls" : phase;
        throw new UpstreamError(code, name, `${name}: ${describe(error)}`, { cause: error });
      } finally {
        signal.removeEventListener("abort", abort);
        socket.close().catch(() => {});
      }
    },
    async close() {
      closed = true;
    },
  };
}
