// A DNS-over-QUIC server for tests and the bench (RFC 9250, ALPN "doq"), on
// the same quiche driver as the relay's client: no Debian package serves DoQ.
// Each stream's length-prefixed query goes to `answer` (or over UDP to
// `backendPort`) and the framed answer is written back with the FIN. Counts
// connections, records the queries it saw, and can drop every connection.
// Strict like quic-go's server (AdGuard dnsproxy): a query carrying an
// edns-tcp-keepalive option closes the connection with DOQ_PROTOCOL_ERROR
// (RFC 9250 §5.5.2). Loopback only.

import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { DOQ_ERROR } from "../../relay/src/transports/doq.ts";
import {
  buildQuicheConfig,
  loadQuiche,
  QuicheLink,
} from "../../relay/src/transports/quiche-link.ts";
import { EdnsOptionCode } from "../../shared/dns/edns-options.ts";
import { createFrameReader, type FrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { readEdns, readId, withId } from "../../shared/dns/wire.ts";
import { udpExchange } from "./processes.ts";

export interface DoqServerOptions {
  /** Certificate chain and key, PEM text. */
  cert: string;
  key: string;
  /** Answers a query (ID 0 as received); or give `backendPort`. */
  answer?: (query: Uint8Array) => Promise<Uint8Array> | Uint8Array;
  /** A UDP DNS server on 127.0.0.1 to forward each query to. */
  backendPort?: number;
  /** Sends `answer`'s reply as is instead of under the query's ID (to test clients). */
  keepAnswerId?: boolean;
  /** 0 (default) picks a free port. */
  port?: number;
}

export interface DoqServer {
  readonly port: number;
  readonly connectionsAccepted: number;
  /** Message IDs of the queries received, in order. */
  readonly ids: readonly number[];
  /** The queries received, as they arrived, in order. */
  readonly queries: readonly Uint8Array[];
  /** Application error codes of connections the clients closed, in order. */
  readonly clientCloses: readonly number[];
  /** Closes every open connection with DOQ_NO_ERROR, as a server going idle would. */
  closeConnections(): Promise<void>;
  stop(): Promise<void>;
}

const hex = (id: Uint8Array) => Buffer.from(id).toString("hex");

function hasKeepalive(query: Uint8Array): boolean {
  try {
    return readEdns(query)?.options.some((o) => o.code === EdnsOptionCode.TCP_KEEPALIVE) ?? false;
  } catch {
    return false;
  }
}

export async function startDoqServer(options: DoqServerOptions): Promise<DoqServer> {
  const { backendPort } = options;
  const answer =
    options.answer ??
    (async (query: Uint8Array) => {
      if (backendPort === undefined) throw new Error("startDoqServer needs answer or backendPort");
      const reply = await udpExchange(backendPort, query, 2000);
      if (!reply) throw new Error("the UDP backend did not answer");
      return reply;
    });
  const quiche = await loadQuiche();
  const config = buildQuicheConfig(quiche, {
    verifyPeer: false,
    cert: options.cert,
    key: options.key,
    alpn: ["doq"],
    maxIdleTimeoutMs: 30_000,
    peerBidiStreams: 100,
  });
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(options.port ?? 0, "127.0.0.1", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  const local = { host: "127.0.0.1", port: socket.address().port };
  let accepted = 0;
  const ids: number[] = [];
  const queries: Uint8Array[] = [];
  const clientCloses: number[] = [];
  /** Connections by every ID a client may address them with (its first pick, then ours). */
  const byId = new Map<string, QuicheLink>();
  const links = new Set<QuicheLink>();
  const send = (packet: Uint8Array, to: { host: string; port: number }) =>
    socket.send(packet, to.port, to.host);

  function accept(dcid: Uint8Array, from: { host: string; port: number }): QuicheLink {
    const scid = randomBytes(quiche.MAX_CONN_ID_LEN);
    const conn = quiche.Connection.accept(scid, null, local, from, config);
    const streams = new Map<number, FrameReader>();
    const keys = [hex(dcid), hex(scid)];
    const link: QuicheLink = new QuicheLink(conn, local, quiche.MAX_DATAGRAM_SIZE, send, {
      onStreamData(streamId, data) {
        // A bare FIN after the query (or after we answered) carries nothing to read.
        if (data.length === 0) return;
        const frames = streams.get(streamId) ?? createFrameReader();
        streams.set(streamId, frames);
        const [query] = frames.push(data);
        if (!query) return;
        streams.delete(streamId);
        ids.push(readId(query));
        queries.push(query.slice());
        if (hasKeepalive(query)) {
          link.close(DOQ_ERROR.protocolError);
          return;
        }
        // A throwing `answer` resets the stream like a rejecting one.
        new Promise<Uint8Array>((resolve) => resolve(answer(query))).then(
          (reply) => {
            if (link.isEnded) return;
            // The reply goes out under the query's ID: 0 from an RFC 9250 client.
            const out =
              options.keepAnswerId || reply.length < 12 ? reply : withId(reply, readId(query));
            try {
              link.write(streamId, frameMessage(out), true);
            } catch {
              // The client gave up on the stream: quiche has retired it.
            }
          },
          () => link.cancelStream(streamId, DOQ_ERROR.internalError),
        );
      },
      onStreamReset(streamId) {
        streams.delete(streamId);
      },
      onClosed() {
        const peer = conn.peerError();
        if (peer?.isApp) clientCloses.push(peer.errorCode);
        links.delete(link);
        for (const key of keys) byId.delete(key);
      },
    });
    for (const key of keys) byId.set(key, link);
    links.add(link);
    accepted++;
    return link;
  }

  socket.on("message", (packet, rinfo) => {
    const from = { host: rinfo.address, port: rinfo.port };
    let header: ReturnType<typeof quiche.Header.fromSlice>;
    try {
      header = quiche.Header.fromSlice(packet, quiche.MAX_CONN_ID_LEN);
    } catch {
      return; // Not QUIC.
    }
    let link = byId.get(hex(header.dcid));
    if (!link) {
      if (header.ty !== quiche.Type.Initial) return;
      if (!quiche.versionIsSupported(header.version)) {
        const out = Buffer.allocUnsafe(quiche.MAX_DATAGRAM_SIZE);
        const length = quiche.negotiateVersion(header.scid, header.dcid, out);
        send(out.subarray(0, length), from);
        return;
      }
      link = accept(header.dcid, from);
    }
    link.receive(packet, from);
  });

  async function closeConnections() {
    for (const link of [...links]) link.close(DOQ_ERROR.noError);
  }

  return {
    port: local.port,
    get connectionsAccepted() {
      return accepted;
    },
    ids,
    queries,
    clientCloses,
    closeConnections,
    async stop() {
      await closeConnections();
      await new Promise<void>((resolve) => setImmediate(() => socket.close(() => resolve())));
    },
  };
}
