// A DNS server that misbehaves on demand, for the fault matrix: UDP and TCP
// on one port, DoT on another (test certificates), and the mode switchable
// while it runs. Answers (when it answers) are delayAnswer's A records.
// Loopback only. Node only.

import { createSocket, type Socket as DgramSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { readId, withId } from "../../shared/dns/wire.ts";
import { delayAnswer } from "./delay-dns-server.ts";
import type { TestCertificates } from "./dns-servers.ts";

export const FAULT_MODES = [
  "ok", // answer at once
  "blackhole", // UDP: drop; TCP/TLS: accept and read, never answer
  "slow", // answer after slowMs
  "servfail", // answer SERVFAIL
  "wrong_id", // a response with another ID first, then the right one
  "malformed", // the query's ID with QR set, then garbage
  "partial_close", // TCP/TLS: half of the framed answer, then close
  "truncated", // UDP: an empty TC=1 answer (TCP answers normally)
  "close_after_answer", // TCP/TLS: answer, then close the connection
  "tls_stall", // TLS port: accept TCP, never speak TLS (TCP/UDP answer normally)
] as const;

export type FaultMode = (typeof FAULT_MODES)[number];

interface Step {
  bytes: Uint8Array;
  delayMs?: number;
  /** Streams: end the connection after these bytes, or after half of them. */
  end?: "after" | "half";
}

export interface FaultServer {
  /** UDP and TCP. */
  readonly port: number;
  /** DoT. */
  readonly tlsPort: number;
  mode: FaultMode;
  slowMs: number;
  /** Queries received on any transport. */
  readonly queries: number;
  stop(): Promise<void>;
}

function servfail(query: Uint8Array): Uint8Array {
  const answer = delayAnswer(query)!.answer;
  answer[3] = (answer[3]! & 0xf0) | 2;
  answer[7] = 0; // ANCOUNT 0
  return answer.subarray(0, answer.length - 16);
}

function garbage(query: Uint8Array): Uint8Array {
  const out = new Uint8Array(40).fill(0xee);
  out.set(query.subarray(0, 2));
  out[2] = 0x81;
  out[3] = 0x80;
  out.set([0, 1, 0, 1, 0, 0, 0, 0], 4);
  return out;
}

/**
 * Binds `udp` to a free port and `tcp` to the same one. Another process may
 * hold that TCP port (only the UDP one was free), so a taken port means
 * another try rather than a test failing on EADDRINUSE.
 */
async function bindSamePort(
  udpSocket: () => DgramSocket,
  tcp: Server,
): Promise<{ udp: DgramSocket; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const udp = udpSocket();
    await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
    const { port } = udp.address();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, "127.0.0.1", () => {
          tcp.off("error", reject);
          resolve();
        });
      });
      return { udp, port };
    } catch (error) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if (attempt >= 5) throw error;
    }
  }
}

export async function startFaultServer(certs: TestCertificates): Promise<FaultServer> {
  const [cert, key] = await Promise.all([
    readFile(certs.certFile, "utf8"),
    readFile(certs.keyFile, "utf8"),
  ]);
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const sockets = new Set<Socket>();
  const state = { mode: "ok" as FaultMode, slowMs: 2000, queries: 0 };
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  /**
   * What the current mode answers to `query`, as steps: bytes to send after
   * a delay, and for streams whether to end the connection after them (or
   * after half of them). Modes that only apply to one transport answer
   * normally on the other.
   */
  function stepsFor(query: Uint8Array, stream: boolean): Step[] {
    const ok = delayAnswer(query);
    if (!ok) return [];
    switch (state.mode) {
      case "blackhole":
        return [];
      case "slow":
        return [{ bytes: ok.answer, delayMs: state.slowMs }];
      case "servfail":
        return [{ bytes: servfail(query) }];
      case "wrong_id":
        return [
          { bytes: withId(ok.answer, (readId(query) + 1) & 0xffff) },
          { bytes: ok.answer, delayMs: 20 },
        ];
      case "malformed":
        return [{ bytes: garbage(query) }];
      case "partial_close":
        return stream ? [{ bytes: ok.answer, end: "half" }] : [{ bytes: ok.answer }];
      case "close_after_answer":
        return stream ? [{ bytes: ok.answer, end: "after" }] : [{ bytes: ok.answer }];
      case "truncated": {
        if (stream) return [{ bytes: ok.answer }];
        const tc = servfail(query);
        tc[2] = tc[2]! | 0x02; // TC
        tc[3] = tc[3]! & 0xf0; // NOERROR
        return [{ bytes: tc }];
      }
      default:
        return [{ bytes: ok.answer }];
    }
  }

  function run(steps: Step[], send: (step: Step) => void) {
    for (const step of steps) {
      if (step.delayMs === undefined) send(step);
      else later(step.delayMs, () => send(step));
    }
  }

  function serveStream(socket: Socket) {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const reader = createFrameReader();
    socket.on("data", (chunk: Buffer) => {
      for (const query of reader.push(new Uint8Array(chunk))) {
        state.queries++;
        run(stepsFor(query, true), (step) => {
          if (socket.destroyed) return;
          const framed = frameMessage(step.bytes);
          if (step.end === "half") socket.end(framed.subarray(0, framed.length >> 1));
          else if (step.end === "after") socket.end(framed);
          else socket.write(framed);
        });
      }
    });
  }

  const udpSocket = () => {
    const socket = createSocket("udp4");
    socket.on("message", (msg, rinfo) => {
      state.queries++;
      run(stepsFor(new Uint8Array(msg), false), (step) =>
        socket.send(step.bytes, rinfo.port, rinfo.address),
      );
    });
    return socket;
  };
  const tcp = createServer(serveStream);
  const { udp, port } = await bindSamePort(udpSocket, tcp);

  const tls = createTlsServer({ cert, key }, (socket: TLSSocket) => serveStream(socket));
  tls.on("tlsClientError", () => {});
  // tls_stall: take the TCP connection away from the TLS server before it speaks.
  const front = createServer((socket) => {
    if (state.mode === "tls_stall") {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      return;
    }
    tls.emit("connection", socket);
  });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  const tlsPort = (front.address() as AddressInfo).port;

  return {
    port,
    tlsPort,
    get mode() {
      return state.mode;
    },
    set mode(next: FaultMode) {
      state.mode = next;
    },
    get slowMs() {
      return state.slowMs;
    },
    set slowMs(ms: number) {
      state.slowMs = ms;
    },
    get queries() {
      return state.queries;
    },
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise((resolve) => tcp.close(resolve)),
        new Promise((resolve) => front.close(resolve)),
        new Promise((resolve) => tls.close(resolve)),
      ]);
    },
  };
}
