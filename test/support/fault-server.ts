// A DNS server that misbehaves on demand, for the fault matrix: UDP and TCP
// on one port, DoT on another (test certificates), and the mode switchable
// while it runs. Answers (when it answers) are delayAnswer's A records.
// Loopback only. Node only.

import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { readId } from "../../shared/dns/wire.ts";
import { delayAnswer } from "./delay-dns-server.ts";
import { freePort, type TestCertificates } from "./dns-servers.ts";

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

export async function startFaultServer(certs: TestCertificates): Promise<FaultServer> {
  const port = await freePort();
  const tlsPort = await freePort();
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

  /** What to send back for a query on a stream; undefined = nothing. */
  function streamReply(query: Uint8Array, socket: Socket) {
    state.queries++;
    const ok = delayAnswer(query);
    if (!ok) return;
    const send = (bytes: Uint8Array) => {
      if (!socket.destroyed) socket.write(frameMessage(bytes));
    };
    switch (state.mode) {
      case "blackhole":
        return;
      case "slow":
        later(state.slowMs, () => send(ok.answer));
        return;
      case "servfail":
        send(servfail(query));
        return;
      case "wrong_id": {
        const wrong = ok.answer.slice();
        wrong[0] = (readId(query) + 1) >> 8;
        wrong[1] = (readId(query) + 1) & 0xff;
        send(wrong);
        later(20, () => send(ok.answer));
        return;
      }
      case "malformed":
        send(garbage(query));
        return;
      case "partial_close": {
        const framed = frameMessage(ok.answer);
        socket.end(framed.subarray(0, framed.length >> 1));
        return;
      }
      case "close_after_answer":
        socket.end(frameMessage(ok.answer));
        return;
      default:
        send(ok.answer);
    }
  }

  function serveStream(socket: Socket) {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const reader = createFrameReader();
    socket.on("data", (chunk: Buffer) => {
      for (const query of reader.push(new Uint8Array(chunk))) streamReply(query, socket);
    });
  }

  const udp = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    state.queries++;
    const query = new Uint8Array(msg);
    const ok = delayAnswer(query);
    if (!ok) return;
    const send = (bytes: Uint8Array) => udp.send(bytes, rinfo.port, rinfo.address);
    switch (state.mode) {
      case "blackhole":
        return;
      case "slow":
        later(state.slowMs, () => send(ok.answer));
        return;
      case "servfail":
        send(servfail(query));
        return;
      case "wrong_id": {
        const wrong = ok.answer.slice();
        wrong[1] = (wrong[1]! + 1) & 0xff;
        send(wrong);
        later(20, () => send(ok.answer));
        return;
      }
      case "malformed":
        send(garbage(query));
        return;
      case "truncated": {
        const tc = servfail(query);
        tc[2] = tc[2]! | 0x02; // TC
        tc[3] = tc[3]! & 0xf0; // NOERROR
        send(tc);
        return;
      }
      default:
        send(ok.answer);
    }
  });
  await new Promise<void>((resolve) => udp.bind(port, "127.0.0.1", resolve));

  const tcp = createServer(serveStream);
  await new Promise<void>((resolve) => tcp.listen(port, "127.0.0.1", resolve));

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
  await new Promise<void>((resolve) => front.listen(tlsPort, "127.0.0.1", resolve));

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
