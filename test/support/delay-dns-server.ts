// A tiny in-test DNS server (UDP and TCP on one port) whose answer time is
// chosen by the query: "<ms>.<anything>" waits <ms> milliseconds, then
// answers A 127.0.0.<ms % 256> with the query's ID. Counts queries and
// records their message IDs. Node only.

import { createSocket } from "node:dgram";
import { createServer, type Socket } from "node:net";
import { createFrameReader, frameMessage } from "../../shared/dns/framing.ts";
import { readQuestion } from "../../shared/dns/wire.ts";
import { freePort } from "./dns-servers.ts";

export interface DelayDnsServer {
  readonly port: number;
  readonly queries: number;
  /** Message IDs of the queries received (UDP and TCP), in order. */
  readonly ids: readonly number[];
  stop(): Promise<void>;
}

/** The A answer to `query` (question kept, EDNS dropped), or undefined if unreadable. */
export function delayAnswer(
  query: Uint8Array,
): { answer: Uint8Array; delayMs: number } | undefined {
  let question: ReturnType<typeof readQuestion>;
  try {
    question = readQuestion(query);
  } catch {
    return undefined;
  }
  const delayMs = Number.parseInt(question.name.split(".")[0] ?? "", 10) || 0;
  const answer = new Uint8Array(question.end + 16);
  answer.set(query.subarray(0, question.end));
  answer[2] = (query[2]! & 0x79) | 0x80; // QR, keep opcode and RD
  answer[3] = 0x80; // RA, NOERROR
  answer.set([0, 1, 0, 1, 0, 0, 0, 0], 4); // QD 1, AN 1, NS 0, AR 0
  answer.set([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, delayMs % 256], question.end);
  return { answer, delayMs };
}

export async function startDelayDnsServer(): Promise<DelayDnsServer> {
  const port = await freePort();
  let queries = 0;
  const ids: number[] = [];
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  const udp = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    queries++;
    if (msg.length >= 2) ids.push(msg.readUInt16BE(0));
    const result = delayAnswer(new Uint8Array(msg));
    if (result) later(result.delayMs, () => udp.send(result.answer, rinfo.port, rinfo.address));
  });
  await new Promise<void>((resolve) => udp.bind(port, "127.0.0.1", resolve));
  const sockets = new Set<Socket>();
  const tcp = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    const reader = createFrameReader();
    socket.on("data", (chunk) => {
      for (const query of reader.push(new Uint8Array(chunk))) {
        queries++;
        if (query.length >= 2) ids.push((query[0]! << 8) | query[1]!);
        const result = delayAnswer(query);
        if (result) {
          later(result.delayMs, () => {
            if (!socket.destroyed) socket.write(frameMessage(result.answer));
          });
        }
      }
    });
  });
  await new Promise<void>((resolve) => tcp.listen(port, "127.0.0.1", resolve));
  return {
    port,
    get queries() {
      return queries;
    },
    ids,
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}
